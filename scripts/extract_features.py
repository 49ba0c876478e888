"""Per-word hidden states (every layer) of one model for every story of a dataset."""

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
spec = params.spec  # what determines the features (lmbrain.features.feature_spec)
dataset = open_dataset(params.root, params.format)
model, tokenizer, info = load_model(spec, params.cache, device=run["device"], dtype=run["dtype"])
# every hidden state: 0 (embeddings) .. n_layers, so a new layer choice needs no extraction
layers = list(range(int(info["n_layers"]) + 1))
info.update(
    {
        "feature_id": snakemake.wildcards.feature,
        "feature_spec": dict(spec),
        "context_tokens": spec["context_tokens"],
        "stride_tokens": spec["stride_tokens"],
        "layers": layers,
    }
)
log.info("features %s: %s", snakemake.wildcards.feature, info)
with FeatureWriter(snakemake.output[0], info, storage_dtype=spec["storage_dtype"]) as writer:
    for story in dataset.stories:
        words = dataset.words(story)
        feats = extract_word_features(
            model,
            tokenizer,
            words.words,
            layers,
            context_tokens=spec["context_tokens"],
            stride_tokens=spec["stride_tokens"],
            batch_size=run["batch_size"],
            device=str(next(model.parameters()).device),
        )
        for layer, array in feats.items():
            writer.add(story, layer, array)
        log.info("%s: %d words", story, len(words))
