"""The GPU path at the paper's scale: extraction throughput and voxelwise ridge (issue 15).

Run on a machine with one CUDA GPU (figures go to ``--out``/gpu_bench.json, a table is printed
last)::

    PYTHONPATH=src python benchmarks/bench_gpu.py --out /tmp/gpu --tokenizer DIR
    PYTHONPATH=src python benchmarks/bench_gpu.py --small --out /tmp/gpu_small   # CPU check

Sections, each with its own time budget and ``try``/``except`` (a failure or an exhausted
budget in one still leaves the others' figures in the JSON, which is rewritten after every
step):

``env``
    torch, GPU, and the measured bf16 matrix-product ceiling (8192^3, median of 10).
``extraction``
    Llama-shaped models of ~125M, ~1.3B, ~7B and ~32B parameters with random weights, built
    in memory from a config directly on the GPU in bfloat16 (``AutoModel.from_config`` under
    ``torch.device("cuda")``: the same base class ``lmbrain.models.load_model`` loads; saving
    and reloading 65 GB would not fit the lease). Per size, on the demo stories (repeated to
    ``--words`` words, story by story as the workflow runs them; ``--big-words`` for the
    largest model), context 256 tokens, every hidden state:

    - ``ours``: :func:`lmbrain.features.extract_word_features` (stride ``C // 2``, the
      default), the features gathered into host float32 arrays (the workflow writes the same
      rows into HDF5; the disk is left out here);
    - ``ours_s256``: the same with stride ``= C``;
    - ``plain_same``: a bare ``model(...)`` over the very same padded window batches (no hooks,
      no copies): lmbrain's own overhead is ``ours`` against this;
    - ``plain_once``: every token computed once (each story in ``C + C // 2``-token chunks,
      ``--batch`` chunks per pass): the hardware floor for the text;
    - model FLOPs (``2 N T`` for the non-embedding parameters plus ``2 L d T^2`` of causal
      attention per sequence of ``T`` tokens, padding excluded) over the time, as a fraction
      of the measured bf16 ceiling and of 790 TFLOP/s;
    - peak GPU memory of each block (``torch.cuda.max_memory_allocated``);
    - fidelity: the same extraction in float32 (the same weights, upcast in place) on a
      ``--ref-words`` prefix story, per-layer median and 1st-percentile cosine of the bf16
      features against it (skipped where the float32 copy would not fit the GPU).
``ridge``
    Synthetic story-grouped data made on the GPU (X: a 512-factor planted structure plus
    noise; Y: a planted signal of per-voxel strength plus noise; both z-scored per 200-TR
    story) at ``--trs`` x ``--features`` x ``--voxels``, 10 alphas ``logspace(0, 6)``, 5 story
    folds:

    - ``eigh``: the full primal Gram ``X^T X`` decomposed in float64 and in float32 on the GPU
      (time, failures, eigenvalue drift, and the drift of the ridge weights of 256 voxels at
      the smallest and largest alpha);
    - ``fit``: :func:`lmbrain.fitting.fit_ridge_cv` with ``backend="torch_cuda"`` at full size
      (wall time, peak GPU memory, peak RSS), voxels cut when the eigh timing says the budget
      cannot hold the full fit (recorded);
    - ``himalaya``: lmbrain against ``himalaya.ridge.RidgeCV`` (through
      :func:`lmbrain.fitting.himalaya_ridge_cv`) on the same backend, folds and alphas, on a
      slice (``--slice``: TRs x features x voxels): identical alphas and test-r differences on
      held-out stories.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import reset_peak, status  # noqa: E402  (benchmarks/procstat.py)

GIB = 2.0**30
PEAK_BF16 = 790e12  # the lent H200's measured dense bf16 rate (KINDS.md); a lead, re-measured

SIZES = {  # Llama shapes: hidden, layers, heads, intermediate
    "125M": (768, 12, 12, 3072),
    "1.3B": (2048, 24, 16, 5504),
    "7B": (4096, 32, 32, 11008),
    "30B": (6656, 60, 52, 17920),
}
SMALL_SIZES = {"tiny-a": (64, 2, 4, 128), "tiny-b": (96, 3, 4, 192)}


class Budget:
    """Seconds left in a section; ``ok(need)`` says whether a step of ``need`` s still fits."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def ok(self, need: float = 0.0) -> bool:
        return self.left() > need


class Report:
    """The JSON result, rewritten after every step so that a killed run keeps what it had."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {"argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def put(self, *keys_and_value):
        *keys, value = keys_and_value
        node = self.data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        self.save()

    def save(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_json))
        os.replace(tmp, self.path)


def _json(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def gpu_reset(device):
    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak(device) -> float | None:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / GIB
    return None


def timed(device, fn):
    """``(seconds, peak GPU GiB, result)`` of ``fn()``, synchronised on both ends."""
    gpu_reset(device)
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, gpu_peak(device), out


# --------------------------------------------------------------------------------------------
# env
def section_env(rep: Report, device: str, small: bool):
    import torch

    info = {"torch": torch.__version__, "device": device, "python": sys.version.split()[0]}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_mem_gib=p.total_memory / GIB, sms=p.multi_processor_count)
        n = 2048 if small else 8192
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        times = []
        for i in range(13):
            start, stop = torch.cuda.Event(True), torch.cuda.Event(True)
            start.record()
            a @ b
            stop.record()
            torch.cuda.synchronize()
            if i >= 3:
                times.append(start.elapsed_time(stop) / 1e3)
        info["bf16_matmul_tflops"] = 2 * n**3 / float(np.median(times)) / 1e12
        del a, b
    rep.put("env", info)
    log("env", info)


# --------------------------------------------------------------------------------------------
# extraction
def load_tokenizer(path: str | None, small: bool):
    """The SmolLM2 tokenizer saved with ``save_pretrained`` (``--tokenizer``), or a tiny one."""
    if path:
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        except Exception as err:  # another transformers version: rebuild from tokenizer.json
            log("AutoTokenizer failed, using tokenizer.json directly:", repr(err))
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast(tokenizer_file=str(Path(path) / "tokenizer.json"))
    from lmbrain.testing import make_tiny_tokenizer

    assert small, "--tokenizer is needed outside --small"
    return make_tiny_tokenizer("llama", vocab_size=300)


def demo_text(n_words: int) -> dict[str, list[str]]:
    """The demo stories in order, repeated (``name#k``) until ``n_words`` words, story by story."""
    from lmbrain.demo import load_stories

    stories = load_stories()
    out, left, k = {}, n_words, 0
    while left > 0:
        for name, words in stories.items():
            if left <= 0:
                break
            out[f"{name}#{k}"] = words[:left]
            left -= len(out[f"{name}#{k}"])
        k += 1
    return out


def build_model(shape, vocab: int, device: str, dtype):
    """A Llama base model with random weights, made directly on ``device`` in ``dtype``."""
    import torch
    from transformers import AutoModel, LlamaConfig

    hidden, layers, heads, inter = shape
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        try:
            model = AutoModel.from_config(config, dtype=dtype, trust_remote_code=False)
        except TypeError:
            model = AutoModel.from_config(config, torch_dtype=dtype, trust_remote_code=False)
    return model.eval()


def model_flops(model, seq_lens) -> float:
    """``2 N T + 2 L d T^2`` summed over sequences (N: non-embedding parameters)."""
    cfg = model.config
    n_emb = model.get_input_embeddings().weight.numel()
    n = sum(p.numel() for p in model.parameters()) - n_emb
    d, L = cfg.hidden_size, cfg.num_hidden_layers
    return float(sum(2 * n * t + 2 * L * d * t * t for t in seq_lens))


def story_windows(tokenizer, model, stories, context, stride):
    """Per story: the padded-batch inputs lmbrain would run (for the plain-forward floor)."""
    from lmbrain import features as F

    out = []
    for words in stories.values():
        story = F.tokenize_story(tokenizer, words)
        windows = F.plan_windows(len(story.ids), context, stride)
        out.append((story, [F._window_job(story, w, False)[0] for w in windows]))
    return out


def run_ours(model, tokenizer, stories, layers, context, stride, batch):
    from lmbrain.features import extract_word_features

    feats = {}
    for name, words in stories.items():
        feats[name] = extract_word_features(
            model,
            tokenizer,
            words,
            layers,
            context_tokens=context,
            stride_tokens=stride,
            batch_size=batch,
            progress=False,
        )
    return feats


def run_multi(model, tokenizer, stories, layers, context, batch):
    """:func:`lmbrain.features.extract_stories_features`: windows of all stories batched."""
    from lmbrain.features import extract_stories_features

    return extract_stories_features(
        model,
        tokenizer,
        stories,
        layers,
        context_tokens=context,
        batch_size=batch,
        progress=False,
    )


def run_plain(model, seq_groups, batch, device):
    """A bare forward over each group's sequences in batches (outputs dropped)."""
    import torch

    from lmbrain import features as F

    kwargs = F._forward_kwargs(model)
    with torch.inference_mode():
        for story, seqs in seq_groups:
            pad = F._pad_id(model, story)
            for i in range(0, len(seqs), batch):
                ids, mask = F._pad_batch(seqs[i : i + batch], pad, device)
                model(input_ids=ids, attention_mask=mask, **kwargs)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a.astype(np.float64) * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    keep = den > 0
    return num[keep] / den[keep]


def extraction_size(rep, key, shape, args, tokenizer, device, budget):
    import torch

    bf16 = torch.bfloat16
    n_words = args.big_words if key == "30B" else args.words
    stories = demo_text(n_words)
    n_words = sum(len(w) for w in stories.values())
    t0 = time.perf_counter()
    gpu_reset(device)
    model = build_model(shape, len(tokenizer), device, bf16)
    sync(device)
    n_par = sum(p.numel() for p in model.parameters())
    res = {
        "shape": dict(zip(("hidden", "layers", "heads", "intermediate"), shape, strict=True)),
        "params": n_par,
        "param_gib": n_par * 2 / GIB,
        "dtype": str(bf16),
        "build_s": time.perf_counter() - t0,
        "words": n_words,
        "stories": len(stories),
        "batch": args.batch,
        "context": args.context,
    }
    rep.put("extraction", key, res)
    log(key, f"{n_par / 1e9:.2f}B params built in {res['build_s']:.1f}s")
    from lmbrain.features import is_causal

    res["causal_probe"] = is_causal(model)  # what the workflow's extraction would decide
    layers = list(range(model.config.num_hidden_layers + 1))
    C = args.context
    warm = {"warm": next(iter(stories.values()))[:200]}
    run_ours(model, tokenizer, warm, layers, C, None, args.batch)  # kernels, probe, handles
    n_tokens = sum(len(s.ids) for s, _ in story_windows(tokenizer, model, stories, C, C))
    res["tokens"] = n_tokens

    def record(name, seconds, peak, seq_lens):
        flops = model_flops(model, seq_lens)
        ceiling = rep.data.get("env", {}).get("bf16_matmul_tflops")
        res[name] = {
            "seconds": seconds,
            "words_per_s": n_words / seconds,
            "tokens_per_s": n_tokens / seconds,
            "tokens_run": int(sum(seq_lens)),
            "gpu_peak_gib": peak,
            "tflops": flops / seconds / 1e12,
            "mfu_790": flops / seconds / PEAK_BF16,
            "mfu_measured": flops / seconds / (ceiling * 1e12) if ceiling else None,
        }
        rep.put("extraction", key, res)
        log(
            key, name, {k: round(v, 4) if isinstance(v, float) else v for k, v in res[name].items()}
        )

    for name, stride in (("ours", C // 2), ("ours_s256", C)):
        if not budget.ok(10):
            res[name] = "skipped: section budget"
            continue
        groups = story_windows(tokenizer, model, stories, C, stride)
        lens = [len(s) for _, seqs in groups for s in seqs]
        seconds, peak, feats = timed(
            device, lambda s=stride: run_ours(model, tokenizer, stories, layers, C, s, args.batch)
        )
        record(name, seconds, peak, lens)
        if name == "ours":
            first = next(iter(stories))
            first_feats = {layer: feats[first][layer][: args.ref_words] for layer in layers}
        del feats
        if name == "ours" and budget.ok(10):
            seconds, peak, _ = timed(
                device, lambda g=groups: run_plain(model, g, args.batch, device)
            )
            record("plain_same", seconds, peak, lens)
            res["ours_vs_plain_same"] = res["plain_same"]["seconds"] / res["ours"]["seconds"]
        if name == "ours" and budget.ok(10):  # every story's windows in shared passes
            seconds, peak, multi = timed(
                device, lambda: run_multi(model, tokenizer, stories, layers, C, args.batch)
            )
            record("ours_multi", seconds, peak, lens)
            res["multi_max_abs_diff"] = float(
                max(
                    np.abs(multi[k][layer][: args.ref_words] - first_feats[layer]).max()
                    for k in [next(iter(stories))]
                    for layer in layers
                )
            )
            del multi
            merged = [(groups[0][0], [q for _, seqs in groups for q in seqs])]
            seconds, peak, _ = timed(
                device, lambda m=merged: run_plain(model, m, args.batch, device)
            )
            record("plain_multi", seconds, peak, lens)
            res["multi_vs_plain_multi"] = (
                res["plain_multi"]["seconds"] / res["ours_multi"]["seconds"]
            )
            res["multi_vs_plain_same"] = res["plain_same"]["seconds"] / res["ours_multi"]["seconds"]
    if budget.ok(10):
        once = []
        for story, _ in story_windows(tokenizer, model, stories, C, C):
            ids, step = story.ids.tolist(), C + C // 2
            once += [list(story.prefix) + ids[i : i + step] for i in range(0, len(ids), step)]
        once_groups = [(story, once)]
        seconds, peak, _ = timed(device, lambda: run_plain(model, once_groups, args.batch, device))
        record("plain_once", seconds, peak, [len(s) for s in once])
        for name in ("ours", "ours_s256"):
            if isinstance(res.get(name), dict):
                res[f"{name}_vs_plain_once"] = res["plain_once"]["seconds"] / res[name]["seconds"]
    rep.put("extraction", key, res)
    # fidelity: the same weights in float32, same code path, on a prefix story
    free = torch.cuda.mem_get_info()[0] / GIB if device.startswith("cuda") else float("inf")
    need = n_par * 2 / GIB * 1.15 + 4  # upcast in place: 2 more bytes per parameter, + work
    if "first_feats" not in locals():
        res["fidelity"] = "skipped: no bf16 features"
    elif need > free:
        res["fidelity"] = f"skipped: float32 copy needs {need:.0f} GiB, {free:.0f} GiB free"
    elif not budget.ok(15):
        res["fidelity"] = "skipped: section budget"
    else:
        first = next(iter(stories))
        prefix = {first: stories[first][: args.ref_words]}
        bf = run_ours(model, tokenizer, prefix, layers, C, None, args.batch)[first]
        model.float()
        ref = run_ours(model, tokenizer, prefix, layers, C, None, args.batch)[first]
        med, p1, med_full = [], [], []
        for layer in layers:
            c = cosines(bf[layer], ref[layer])
            med.append(float(np.median(c)))
            p1.append(float(np.percentile(c, 1)))
            med_full.append(float(np.median(cosines(first_feats[layer], ref[layer]))))
        res["fidelity"] = {
            "words": len(prefix[first]),
            "median_cos_per_layer": med,
            "p1_cos_per_layer": p1,
            "min_median_cos": min(med),
            "min_p1_cos": min(p1),
            "min_median_cos_full_run": min(med_full),
        }
        log(key, "fidelity min median cos", min(med), "min p1", min(p1))
        if key != "30B" and budget.ok(20):  # float32 compute: the price of that fidelity
            sub = demo_text(args.fp32_words)
            sub_words = sum(len(w) for w in sub.values())
            groups = story_windows(tokenizer, model, sub, C, C // 2)
            lens = [len(q) for _, seqs in groups for q in seqs]
            seconds, peak, _ = timed(
                device, lambda: run_ours(model, tokenizer, sub, layers, C, None, args.batch)
            )
            res["ours_fp32"] = {
                "words": sub_words,
                "seconds": seconds,
                "words_per_s": sub_words / seconds,
                "gpu_peak_gib": peak,
                "tflops": model_flops(model, lens) / seconds / 1e12,
            }
            log(key, "ours_fp32", res["ours_fp32"])
    if key == next(iter(args.sizes or (SMALL_SIZES if args.small else SIZES))) and budget.ok(15):
        try:
            res["load_path"] = load_path_check(model, tokenizer, stories, layers, C, args, device)
        except Exception:
            res["load_path"] = {"error": traceback.format_exc()}
        log(key, "load path", res["load_path"])
    res["total_s"] = time.perf_counter() - t0
    rep.put("extraction", key, res)
    model = None  # frees the weights (the closures above are done)
    gpu_reset(device)


def load_path_check(model, tokenizer, stories, layers, C, args, device):
    """The workflow's loading path on this device: ``save_pretrained`` then
    :func:`lmbrain.models.load_model` (bf16, and the untrained twin), same features?"""
    import tempfile

    import torch

    from lmbrain.models import load_model

    first = next(iter(stories))
    words = {first: stories[first][:300]}
    model.to(torch.bfloat16)
    want = run_ours(model, tokenizer, words, layers, C, None, args.batch)[first]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        for name, entry in (("trained", {}), ("untrained", {"untrained": True, "seed": 1})):
            t0 = time.perf_counter()
            m, tok, info = load_model(
                {"model": str(folder), **entry},
                Path(tmp) / "cache",
                device=device,
                dtype="bfloat16",
            )
            dtypes = sorted({str(p.dtype) for p in m.parameters()})
            devices = sorted({str(p.device) for p in m.parameters()})
            got = run_ours(m, tok, words, layers, C, None, args.batch)[first]
            out[name] = {
                "load_s": time.perf_counter() - t0,
                "info_device": info["device"],
                "info_dtype": info["dtype"],
                "param_dtypes": dtypes,
                "param_devices": devices,
                "attn": getattr(m.config, "_attn_implementation", None),
            }
            if name == "trained":  # the same weights: the same features up to bf16 kernels
                out[name]["max_rel_diff_vs_in_memory"] = float(
                    max(
                        np.abs(got[layer] - want[layer]).max() / np.abs(want[layer]).max()
                        for layer in layers
                    )
                )
                out[name]["min_cos_vs_in_memory"] = float(
                    min(cosines(got[layer], want[layer]).min() for layer in layers)
                )
                out[name]["attn_in_memory"] = getattr(model.config, "_attn_implementation", None)
            del m
            gpu_reset(device)
    return out


def section_extraction(rep, args, device, budget):
    tokenizer = load_tokenizer(args.tokenizer, args.small)
    rep.put("extraction_setup", {"vocab": len(tokenizer), "tokenizer": args.tokenizer or "tiny"})
    sizes = SMALL_SIZES if args.small else SIZES
    for key in args.sizes or list(sizes):
        if not budget.ok(20):
            rep.put("extraction", key, "skipped: section budget")
            continue
        try:
            extraction_size(rep, key, sizes[key], args, tokenizer, device, budget)
        except Exception:
            rep.put("extraction", key, {"error": traceback.format_exc()})
            log(key, "FAILED", traceback.format_exc())
            gpu_reset(device)


# --------------------------------------------------------------------------------------------
# ridge
def make_ridge_data(n_trs, n_feat, n_vox, story_len, device, seed=0):
    """Planted story-grouped data, made on ``device`` and returned as host float32 arrays.

    ``X = F L + E`` (512 latent factors, noise 1), ``Y = F B s + N`` with a per-voxel signal
    scale ``s`` log-uniform in [0.03, 3]; both z-scored within each ``story_len``-TR story.
    """
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    k = min(512, n_feat)

    def zscore(a):
        a = a.view(-1, story_len, a.shape[1])
        a -= a.mean(1, keepdim=True)
        a /= a.std(1, keepdim=True) + 1e-6
        return a.view(-1, a.shape[2])

    F = torch.randn(n_trs, k, device=device, generator=g)
    L = torch.randn(k, n_feat, device=device, generator=g) / math.sqrt(k)
    X = zscore(F @ L + torch.randn(n_trs, n_feat, device=device, generator=g)).cpu().numpy()
    del L
    Y = np.empty((n_trs, n_vox), dtype=np.float32)
    step = 8192
    for j in range(0, n_vox, step):
        v = min(step, n_vox - j)
        B = torch.randn(k, v, device=device, generator=g) / math.sqrt(k)
        s = torch.exp(
            torch.empty(v, device=device).uniform_(math.log(0.03), math.log(3), generator=g)
        )
        block = (F @ B) * s + torch.randn(n_trs, v, device=device, generator=g)
        Y[:, j : j + v] = zscore(block).cpu().numpy()
        del B, block
    groups = np.repeat(np.arange(n_trs // story_len), story_len)
    return X, Y, groups


def eigh_check(rep, X, Y, alphas, device, budget):
    """Full-Gram eigendecomposition in float64 and float32 on the GPU: time and drift."""
    import torch

    res = {}
    Xg = torch.as_tensor(X, device=device)
    G64 = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64, device=device)
    for i in range(0, X.shape[0], 4096):
        b = Xg[i : i + 4096].double()
        G64 += b.T @ b
    XtY = Xg.double().T @ torch.as_tensor(Y[:, :256], device=device).double()
    del Xg
    out = {}
    for name, G in (("float64", G64), ("float32", None)):
        if not budget.ok(30):
            res[name] = "skipped: section budget"
            continue
        A = G64.float() if G is None else G64.clone()
        try:
            seconds, peak, (lam, V) = timed(device, lambda A=A: torch.linalg.eigh(A))
        except Exception as err:
            res[name] = {"error": repr(err)}
            log("eigh", name, "FAILED", repr(err))
            continue
        ok = bool(torch.isfinite(lam).all() and torch.isfinite(V).all())
        res[name] = {"seconds": seconds, "gpu_peak_gib": peak, "finite": ok}
        out[name] = (lam.double(), V.double())
        log("eigh", name, res[name])
        del A
        rep.put("ridge", "eigh", res)
    if "float64" in out and "float32" in out:
        lam64, V64 = out["float64"]
        lam32, V32 = out["float32"]
        res["lam_max"] = float(lam64[-1])
        res["lam_min"] = float(lam64[0])
        res["max_abs_lam_err_over_lam_max"] = float((lam32 - lam64).abs().max() / lam64[-1])
        drift = {}
        for a in (float(alphas[0]), float(alphas[-1])):
            w64 = V64 @ ((V64.T @ XtY) / (lam64.clamp_min(0) + a)[:, None])
            w32 = V32 @ ((V32.T @ XtY) / (lam32.clamp_min(0) + a)[:, None])
            drift[str(a)] = float((w32 - w64).norm() / w64.norm())
        res["weights_rel_err"] = drift
        log("eigh drift", drift, "lam err", res["max_abs_lam_err_over_lam_max"])
    del G64, out
    gpu_reset(device)
    rep.put("ridge", "eigh", res)
    return res


def ridge_fit(rep, X, Y, groups, alphas, device, budget, eigh_s, name="fit"):
    from lmbrain.fitting import fit_ridge_cv

    backend = "torch_cuda" if device.startswith("cuda") else "torch"
    n_vox = Y.shape[1]
    # time model: 6 float64 eigendecompositions plus products that scale with the voxels
    # (about 1 s per 1,000 voxels at the full shape is a lead; measured figures replace it)
    est = 6 * eigh_s + 1.5e-3 * n_vox * (X.shape[0] / 30000) * (X.shape[1] / 16384)
    if est > budget.left() - 10:
        room = max(0.0, budget.left() - 10 - 6 * eigh_s)
        n_vox = max(1000, int(room / (1.5e-3 * (X.shape[0] / 30000) * (X.shape[1] / 16384))))
        n_vox = min(n_vox, Y.shape[1])
        log(f"ridge: budget {budget.left():.0f}s, estimate {est:.0f}s: {n_vox} voxels")
    Yf = Y if n_vox == Y.shape[1] else np.ascontiguousarray(Y[:, :n_vox])
    reset_peak()
    rss0 = status()["VmRSS"]
    seconds, peak, fit = timed(
        device, lambda: fit_ridge_cv(X, Yf, groups, alphas, n_folds=5, backend=backend)
    )
    res = {
        "trs": X.shape[0],
        "features": X.shape[1],
        "voxels": n_vox,
        "alphas": len(alphas),
        "folds": 5,
        "backend": fit.backend,
        "solver": fit.solver,
        "seconds": seconds,
        "gpu_peak_gib": peak,
        "rss_peak_above_start_gib": (status()["VmHWM"] - rss0) / GIB,
        "x_plus_y_gib": (X.nbytes + Yf.nbytes) / GIB,
        "coef_gib": fit.coef.nbytes / GIB,
        "alpha_counts": {
            str(a): int(c)
            for a, c in zip(*np.unique(fit.best_alphas, return_counts=True), strict=True)
        },
        "mean_cv_r2": float(np.mean(fit.cv_scores)),
    }
    rep.put("ridge", name, res)
    log("ridge", name, res)
    del fit
    gpu_reset(device)


def pearson_cols(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), 0.0)


def himalaya_compare(rep, X, Y, groups, test_X, test_Y, alphas, device, sl):
    from himalaya.backend import set_backend

    from lmbrain.fitting import himalaya_ridge_cv, solve_ridge_cv_gram, story_folds

    n, p, v = sl
    Xs, Ys, gs = np.ascontiguousarray(X[:n, :p]), np.ascontiguousarray(Y[:n, :v]), groups[:n]
    folds = story_folds(gs, 5)
    set_backend("torch_cuda" if device.startswith("cuda") else "torch", on_error="raise")
    dual = n < p
    s_l, peak_l, (coef_l, a_l, _) = timed(
        device, lambda: solve_ridge_cv_gram(Xs, Ys, folds, alphas, dual)
    )
    s_h, peak_h, (coef_h, a_h, _) = timed(
        device, lambda: himalaya_ridge_cv(Xs, Ys, folds, alphas, dual, cv_scores=False)
    )
    tx, ty = np.ascontiguousarray(test_X[:, :p]), test_Y[:, :v]
    r_l = pearson_cols(tx @ coef_l, ty)
    r_h = pearson_cols(tx @ coef_h, ty)
    res = {
        "slice": {"trs": n, "features": p, "voxels": v, "test_trs": tx.shape[0]},
        "estimator": "KernelRidgeCV" if dual else "RidgeCV",
        "lmbrain_s": s_l,
        "himalaya_s": s_h,
        "lmbrain_gpu_peak_gib": peak_l,
        "himalaya_gpu_peak_gib": peak_h,
        "alphas_equal": float(np.mean(a_l == a_h)),
        "max_abs_dr": float(np.max(np.abs(r_l - r_h))),
        "mean_test_r": float(np.mean(r_l)),
    }
    rep.put("ridge", "himalaya", res)
    log("himalaya", res)


def section_ridge(rep, args, device, budget):
    import torch

    alphas = np.logspace(0, 6, 10)
    story = 200
    n_test = 5 * story
    t0 = time.perf_counter()
    X_all, Y_all, g_all = make_ridge_data(
        args.trs + n_test, args.features, args.voxels, story, device
    )
    X, Y, groups = X_all[: args.trs], Y_all[: args.trs], g_all[: args.trs]
    test_X, test_Y = X_all[args.trs :], Y_all[args.trs :]
    rep.put("ridge", "data_s", time.perf_counter() - t0)
    log(f"ridge data {X.shape} {Y.shape} in {time.perf_counter() - t0:.1f}s")
    gpu_reset(device)
    eigh_s = 30.0
    try:
        sl = args.slice
        himalaya_compare(rep, X, Y, groups, test_X, test_Y, alphas, device, sl)
    except Exception:
        rep.put("ridge", "himalaya", {"error": traceback.format_exc()})
        log("himalaya FAILED", traceback.format_exc())
    gpu_reset(device)
    try:
        res = eigh_check(rep, X, Y, alphas, device, budget)
        if isinstance(res.get("float64"), dict):
            eigh_s = res["float64"]["seconds"]
    except Exception:
        rep.put("ridge", "eigh", {"error": traceback.format_exc()})
        log("eigh FAILED", traceback.format_exc())
    gpu_reset(device)
    torch.cuda.empty_cache() if device.startswith("cuda") else None
    if budget.ok(6 * eigh_s + 20):
        try:
            # contiguous copies: the benchmark's X and Y are views of the data with the test rows
            ridge_fit(
                rep,
                np.ascontiguousarray(X),
                np.ascontiguousarray(Y),
                groups,
                alphas,
                device,
                budget,
                eigh_s,
            )
        except Exception:
            rep.put("ridge", "fit", {"error": traceback.format_exc()})
            log("ridge fit FAILED", traceback.format_exc())
    else:
        rep.put("ridge", "fit", f"skipped: {budget.left():.0f}s left, eigh {eigh_s:.0f}s")
    for frac in args.fractions:  # smaller train fractions: nested story subsets, all voxels
        n = int(frac * args.trs) // story * story
        key = f"fit_f{frac}"
        if not budget.ok(6 * eigh_s * (min(n, args.features) / args.features) ** 3 + 40):
            rep.put("ridge", key, "skipped: section budget")
            continue
        try:
            ridge_fit(rep, X[:n], Y[:n], groups[:n], alphas, device, budget, eigh_s, key)
        except Exception:
            rep.put("ridge", key, {"error": traceback.format_exc()})
            log("ridge", key, "FAILED", traceback.format_exc())
        gpu_reset(device)


# --------------------------------------------------------------------------------------------
def table(rep):
    """A short text table of the main figures (printed last)."""
    lines = []
    for key, r in rep.data.get("extraction", {}).items():
        if not isinstance(r, dict) or "ours" not in r or not isinstance(r["ours"], dict):
            lines.append(f"extraction {key}: {str(r)[:200]}")
            continue
        o = r["ours"]
        fid = r.get("fidelity")
        fid = (
            f"{fid['min_median_cos']:.5f}/{fid['min_p1_cos']:.5f}" if isinstance(fid, dict) else fid
        )
        lines.append(
            f"extraction {key}: {r['params'] / 1e9:.2f}B, {r['words']} words, ours "
            f"{o['words_per_s']:.0f} w/s {o['tokens_per_s']:.0f} tok/s MFU {o['mfu_790']:.3f} "
            f"peak {o['gpu_peak_gib']} GiB; ours/plain_same "
            f"{r.get('ours_vs_plain_same', float('nan')):.3f}; ours/plain_once "
            f"{r.get('ours_vs_plain_once', float('nan')):.3f}; s256/plain_once "
            f"{r.get('ours_s256_vs_plain_once', float('nan')):.3f}; multi/plain_multi "
            f"{r.get('multi_vs_plain_multi', float('nan')):.3f}; multi/plain_same "
            f"{r.get('multi_vs_plain_same', float('nan')):.3f}; cos {fid}"
        )
    for key, r in rep.data.get("ridge", {}).items():
        lines.append(f"ridge {key}: {json.dumps(r, default=_json)[:400]}")
    return "\n".join(lines)


#: The paper-scale study priced by :func:`cost_table`: model mix (count, size key of SIZES),
#: subjects, train fractions, stimulus words (30,000 TRs x 2 s x 2.5 words/s) and FIR delays.
STUDY = {
    "models": [(8, "125M"), (8, "1.3B"), (8, "7B"), (6, "30B")],
    "subjects": 8,
    "fractions": [0.2, 0.4, 0.6, 0.8, 1.0],
    "words": 150_000,
    "delays": 4,
}


def fit_seconds(fits: dict, trs: int, n_features: int, fraction: float) -> float:
    """Seconds of one GPU fit, from the fits measured at ``--features`` (an estimate).

    Linear interpolation in the train fraction between the measured fits (and 0 s at 0),
    then scaled by ``min(n, p) / min(n, p_measured)`` (the response products, the bulk of a
    fit, cost ``n min(n, p) v``), plus the extra cost of six larger primal eigendecompositions
    (cubic in ``p``) when ``p`` exceeds the measured width and ``n > p``.
    """
    pts = sorted((f["trs"] / trs, f["seconds"], f["features"], f) for f in fits.values())
    xs = [0.0] + [p[0] for p in pts]
    ys = [0.0] + [p[1] for p in pts]
    t = float(np.interp(fraction, xs, ys))
    p0 = pts[-1][2]
    n = fraction * trs
    t *= min(n, n_features) / min(n, p0)
    eigh = pts[-1][3].get("eigh_s")
    if eigh and n > n_features > p0:
        t += 6 * eigh * ((n_features / p0) ** 3 - 1)
    return t


def cost_table(data: dict) -> str:
    """GPU-hours of the paper-scale study (:data:`STUDY`) from a run's JSON, as markdown."""
    ridge, ext = data["ridge"], data["extraction"]
    fits = {k: v for k, v in ridge.items() if k.startswith("fit") and isinstance(v, dict)}
    eigh = ridge.get("eigh", {}).get("float64", {})
    for f in fits.values():
        f["eigh_s"] = eigh.get("seconds") if isinstance(eigh, dict) else None
    trs = max(f["trs"] for f in fits.values())
    rows = [
        "| models | states x hidden | extraction s / model | feature file GB / model (float32) "
        "| fit jobs | s per fit job (5 fractions) | GPU-h extraction | GPU-h fits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    tot_e = tot_f = jobs_all = 0.0
    for count, key in STUDY["models"]:
        hidden, layers = SIZES[key][0], SIZES[key][1]
        states = layers + 1
        ext_s = STUDY["words"] / ext[key]["ours"]["words_per_s"]
        gb = STUDY["words"] * states * hidden * 4 / 1e9
        p = STUDY["delays"] * hidden
        job = sum(fit_seconds(fits, trs, p, f) for f in STUDY["fractions"])
        jobs = count * states * STUDY["subjects"]
        e_h, f_h = count * ext_s / 3600, jobs * job / 3600
        tot_e, tot_f, jobs_all = tot_e + e_h, tot_f + f_h, jobs_all + jobs
        rows.append(
            f"| {count} x {key} | {states} x {hidden:,} | {ext_s:,.0f} | {gb:,.0f} | "
            f"{jobs:,.0f} | {job:,.0f} | {e_h:.2f} | {f_h:,.1f} |"
        )
    rows.append(
        f"| **30 models** | | | | **{jobs_all:,.0f}** | | **{tot_e:.1f}** | **{tot_f:,.0f}** |"
    )
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="folder for gpu_bench.json")
    ap.add_argument("--cost", metavar="JSON", help="print the study's cost from a run's JSON")
    ap.add_argument("--small", action="store_true", help="tiny shapes (CPU check of every path)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sections", default="env,extraction,ridge")
    ap.add_argument("--tokenizer", help="folder of a saved tokenizer (SmolLM2's)")
    ap.add_argument("--sizes", nargs="*", help="subset of the model sizes")
    ap.add_argument("--words", type=int, default=20000)
    ap.add_argument("--big-words", type=int, default=5000, help="words for the 30B model")
    ap.add_argument("--ref-words", type=int, default=600, help="prefix for the fp32 reference")
    ap.add_argument("--fp32-words", type=int, default=2000, help="words for the fp32 timing")
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32, help="windows per pass")
    ap.add_argument("--trs", type=int, default=30000)
    ap.add_argument("--features", type=int, default=16384)
    ap.add_argument("--voxels", type=int, default=95000)
    ap.add_argument("--slice", type=int, nargs=3, default=[6000, 4096, 4000])
    ap.add_argument("--fractions", type=float, nargs="*", default=[0.2, 0.5])
    ap.add_argument("--budget-extraction", type=float, default=120)
    ap.add_argument("--budget-ridge", type=float, default=300)
    args = ap.parse_args(argv)
    if args.cost:
        print(cost_table(json.loads(Path(args.cost).read_text())))
        return
    if not args.out:
        ap.error("--out is required")
    if args.small:
        args.words, args.big_words, args.ref_words, args.context = 400, 200, 100, 32
        args.fp32_words = 150
        args.trs, args.features, args.voxels, args.batch = 2000, 384, 1500, 4
        args.slice = [1000, 256, 300]
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(out / "gpu_bench.json")
    sections = args.sections.split(",")
    for name, fn, seconds in (
        ("env", lambda b: section_env(rep, device, args.small), 60),
        ("extraction", lambda b: section_extraction(rep, args, device, b), args.budget_extraction),
        ("ridge", lambda b: section_ridge(rep, args, device, b), args.budget_ridge),
    ):
        if name not in sections:
            continue
        t0 = time.perf_counter()
        try:
            fn(Budget(seconds))
        except Exception:
            rep.put(name + "_error", traceback.format_exc())
            log(name, "FAILED", traceback.format_exc())
        rep.put("section_seconds", name, time.perf_counter() - t0)
        gpu_reset(device)
    rep.put("finished", time.strftime("%Y-%m-%d %H:%M:%S"))
    print(table(rep), flush=True)


if __name__ == "__main__":
    main()
