"""Caption embeddings of one model, every requested layer, averaged per image."""

from lmbrain.config import validate_config
from lmbrain.datasets import open_dataset
from lmbrain.models import load_model
from lmbrain.scripting import start
from lmbrain.sentence_features import resolve_pooling, stimulus_embeddings, write_stimulus_features

log = start(snakemake)
import torch  # noqa: E402 - after the thread caps

torch.set_num_threads(int(snakemake.threads))
run = validate_config(snakemake.config)["features"]  # execution settings, not tracked
params = snakemake.params
dataset = open_dataset(params.root, params.format)
model, tokenizer, info = load_model(
    params.entry, params.cache, device=run["device"], dtype=run["dtype"]
)
pooling = resolve_pooling(params.pooling, model)
info.update({"pooling": pooling, "layers": list(params.layers)})
log.info("model %s: %s", snakemake.wildcards.model, info)
feats = stimulus_embeddings(
    model,
    tokenizer,
    dataset.captions,
    dataset.stimuli,
    params.layers,
    pooling,
    batch_size=run["batch_size"],
)
write_stimulus_features(
    snakemake.output[0], dataset.stimuli, feats, info, storage_dtype=params.storage_dtype
)
log.info("%d stimuli, layers %s", len(dataset.stimuli), list(params.layers))
