"""Hidden states of one model for every story of a dataset (per word, or per audio window)."""

from lmbrain.config import validate_config
from lmbrain.datasets import open_dataset
from lmbrain.features import FeatureWriter, extract_story_features
from lmbrain.models import load_model
from lmbrain.scripting import start

log = start(snakemake)
import torch  # noqa: E402 - after the thread caps

torch.set_num_threads(int(snakemake.threads))
run = validate_config(snakemake.config)["features"]  # execution settings, not tracked
params = snakemake.params
dataset = open_dataset(params.root, params.format, params.options)
model, processor, info = load_model(
    params.entry, params.cache, device=run["device"], dtype=run["dtype"]
)
info.update(
    {
        "context_tokens": params.context_tokens,
        "stride_tokens": params.stride_tokens,
        "audio_context_s": params.audio_context_s,
        "audio_stride_s": params.audio_stride_s,
        "layers": list(params.layers),
    }
)
log.info("model %s: %s", snakemake.wildcards.model, info)
with FeatureWriter(snakemake.output[0], info, storage_dtype=params.storage_dtype) as writer:
    for story in dataset.stories:
        times, feats = extract_story_features(
            dataset,
            story,
            model,
            processor,
            params.layers,
            context_tokens=params.context_tokens,
            stride_tokens=params.stride_tokens,
            batch_size=run["batch_size"],
            audio_context_s=params.audio_context_s,
            audio_stride_s=params.audio_stride_s,
            device=str(next(model.parameters()).device),
        )
        for layer, array in feats.items():
            writer.add(story, layer, array)
        if times is not None:
            writer.add_times(story, times)
        log.info("%s: %d rows", story, len(next(iter(feats.values()))))
