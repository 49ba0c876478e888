"""Hidden states (every layer, or the fitted ones) of one model for every story: per word or window.

A language model's windows of all stories share its forward passes
(:func:`lmbrain.features.extract_stories_features`); a speech model runs story by story.
"""

import time

from lmbrain.audio import is_audio_config
from lmbrain.config import validate_config
from lmbrain.datasets import open_dataset
from lmbrain.features import FeatureWriter, extract_stories_features, extract_story_features
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
# every hidden state: 0 (embeddings) .. n_layers, so a new layer choice needs no extraction;
# with features.store_layers: fitted, only the spec's (the fitted ones)
layers = spec.get("layers") or list(range(int(info["n_layers"]) + 1))
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
text = not is_audio_config(model.config)
with FeatureWriter(snakemake.output[0], info, storage_dtype=spec["storage_dtype"]) as writer:
    if text:
        # every story's windows in one queue: passes are filled across story ends, the model's
        # causality is probed once (same vectors as story by story: tests/test_features.py)
        tic = time.perf_counter()
        words = {story: dataset.words(story).words for story in dataset.stories}
        hidden = model.get_input_embeddings().weight.shape[1]
        outs = {
            story: {layer: writer.empty(story, layer, (len(w), hidden)) for layer in layers}
            for story, w in words.items()
        }
        extract_stories_features(
            model,
            processor,
            words,
            layers,
            context_tokens=spec.get("context_tokens"),
            stride_tokens=spec.get("stride_tokens"),
            batch_size=run["batch_size"],
            device=str(next(model.parameters()).device),
            outs=outs,
        )
        n_words, seconds = sum(map(len, words.values())), time.perf_counter() - tic
        progress.info(
            "%d stories: %d words in %.1f s (%.0f/s)",
            len(words),
            n_words,
            seconds,
            n_words / max(seconds, 1e-9),
        )
    for i, story in enumerate([] if text else dataset.stories, 1):
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
            "story %d/%d %s: %d time windows in %.1f s (%.0f/s)",
            i,
            len(dataset.stories),
            story,
            rows,
            seconds,
            rows / max(seconds, 1e-9),
        )
        del feats
