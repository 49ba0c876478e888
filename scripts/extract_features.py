"""Per-word hidden states of one model for every story of a dataset."""

from lmbrain.config import validate_config
from lmbrain.datasets import open_dataset
from lmbrain.features import FeatureWriter, extract_word_features
from lmbrain.models import load_model
from lmbrain.scripting import start

log = start(snakemake)
import torch  # noqa: E402 - after the thread caps

torch.set_num_threads(int(snakemake.threads))
run = validate_config(snakemake.config)["features"]  # execution settings, not tracked
params = snakemake.params
dataset = open_dataset(params.root, params.format)
model, tokenizer, info = load_model(
    params.entry,
    params.cache,
    device=run["device"],
    dtype=run["dtype"],
    device_map=run["device_map"],
)
info.update(
    {
        "context_tokens": params.context_tokens,
        "stride_tokens": params.stride_tokens,
        "layers": list(params.layers),
    }
)
log.info("model %s: %s", snakemake.wildcards.model, info)
with FeatureWriter(snakemake.output[0], info, storage_dtype=params.storage_dtype) as writer:
    for story in dataset.stories:
        words = dataset.words(story)
        feats = extract_word_features(
            model,
            tokenizer,
            words.words,
            params.layers,
            context_tokens=params.context_tokens,
            stride_tokens=params.stride_tokens,
            batch_size=run["batch_size"],
            device=str(next(model.parameters()).device),
        )
        for layer, array in feats.items():
            writer.add(story, layer, array)
        log.info("%s: %d words", story, len(words))
