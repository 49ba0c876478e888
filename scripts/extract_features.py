"""Hidden states (every layer) of one model for every story: per word, or per audio window."""

import time

from lmbrain.config import validate_config
from lmbrain.datasets import open_dataset
from lmbrain.features import FeatureWriter, extract_story_features
from lmbrain.models import load_model
from lmbrain.scripting import fix_mmap_threshold, progress_logger, start

log = start(snakemake)
run = validate_config(snakemake.config)["features"]  # execution settings, not tracked
if run["fixed_mmap_threshold"]:
    fix_mmap_threshold()  # freed activations go back to the system at once (lower peak memory)
import torch  # noqa: E402 - after the thread caps

torch.set_num_threads(int(snakemake.threads))
params = snakemake.params
spec = params.spec  # what determines the features (lmbrain.features.feature_spec)
dataset = open_dataset(params.root, params.format, params.options)
model, processor, info = load_model(
    spec,
    params.cache,
    device=run["device"],
    dtype=run["dtype"],
    device_map=run["device_map"],
)
# every hidden state: 0 (embeddings) .. n_layers, so a new layer choice needs no extraction
layers = list(range(int(info["n_layers"]) + 1))
info.update(
    {
        "feature_id": snakemake.wildcards.feature,
        "feature_spec": dict(spec),
        "layers": layers,
        **{key: value for key, value in spec.items() if key.endswith(("_tokens", "_s"))},
    }
)
log.info("features %s: %s", snakemake.wildcards.feature, info)
# word features go to disk window batch by window batch, speech features story by story
progress = progress_logger()
with FeatureWriter(snakemake.output[0], info, storage_dtype=spec["storage_dtype"]) as writer:
    for i, story in enumerate(dataset.stories, 1):
        tic = time.perf_counter()
        _, feats = extract_story_features(
            dataset,
            story,
            model,
            processor,
            layers,
            context_tokens=spec.get("context_tokens"),
            stride_tokens=spec.get("stride_tokens"),
            batch_size=run["batch_size"],
            audio_context_s=spec.get("audio_context_s", 16.0),
            audio_stride_s=spec.get("audio_stride_s", 0.1),
            device=str(next(model.parameters()).device),
            writer=writer,
        )
        rows = len(next(iter(feats.values())))
        seconds = time.perf_counter() - tic
        progress.info(
            "story %d/%d %s: %d %s in %.1f s (%.0f/s)",
            i,
            len(dataset.stories),
            story,
            rows,
            "time windows" if info.get("modality") == "audio" else "words",
            seconds,
            rows / max(seconds, 1e-9),
        )
        del feats
