"""Speed and memory of the voxelwise ridge fit: a scikit-learn loop, himalaya and lmbrain.

Three methods fit the same synthetic data (planted linear signal, seeded) with the same
story-grouped folds (:func:`lmbrain.fitting.story_folds`) and the same alpha grid:

(a) ``sklearn``  : one ``Ridge(alpha, fit_intercept=False)`` fit per alpha per fold, per-voxel
                   validation R^2 averaged over folds, best alpha per voxel, one refit per
                   alpha on all training rows for the voxels that chose it (the loop several
                   published pipelines use);
(b) ``himalaya`` : ``himalaya.ridge.RidgeCV(alphas=..., cv=folds)`` with default settings;
(c) ``lmbrain``  : :func:`lmbrain.fitting.fit_ridge_cv`.

Each method runs in a fresh child process that builds the data itself (same seed), so its
peak resident memory (``VmHWM``, which sees BLAS buffers that ``tracemalloc`` misses) is its
own. The high-water mark is reset (``/proc/self/clear_refs``) once the data are built.

Run ``python benchmarks/bench_ridge.py`` (target shape), ``--small`` (seconds) or ``--scale``
(95,000 voxels x 16,384 features, lmbrain only). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from procstat import reset_peak, status  # benchmarks/procstat.py, next to this script

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sklearn", "himalaya", "himalaya_kr", "lmbrain")
MIB = 2.0**20

SHAPES = {
    "default": dict(
        n_stories=15, story_trs=200, test_trs=300, n_delays=4, n_features=768, n_voxels=10_000
    ),
    "small": dict(
        n_stories=8, story_trs=100, test_trs=100, n_delays=4, n_features=64, n_voxels=500
    ),
    "scale": dict(
        n_stories=15, story_trs=200, test_trs=300, n_delays=4, n_features=4096, n_voxels=95_000
    ),
}


# --------------------------------------------------------------------------------------------
# synthetic data
def _zscore(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    sd = a.std(0)
    sd[sd == 0] = 1.0
    return (a / sd).astype(np.float32)


def _story_design(rng, n_trs: int, n_features: int, n_delays: int) -> np.ndarray:
    """Smooth (AR(1)) features, z-scored, then FIR-delayed by 1..n_delays TRs (zero-padded)."""
    base = rng.standard_normal((n_trs, n_features), dtype=np.float32)
    for t in range(1, n_trs):
        base[t] = 0.7 * base[t - 1] + base[t]
    base = _zscore(base)
    X = np.zeros((n_trs, n_features * n_delays), dtype=np.float32)
    for d in range(1, n_delays + 1):
        X[d:, (d - 1) * n_features : d * n_features] = base[:-d]
    return X


def make_data(args) -> dict:
    """Training / test design and responses with a planted low-rank linear signal.

    ``Y = (X @ A) @ B * snr + noise``, with 32 latent dimensions, a per-voxel signal-to-noise
    ratio drawn log-uniformly in [0.03, 3] (10% pure-noise voxels), so the best alpha varies
    across voxels. X and Y are z-scored per story, as the pipeline does before fitting.
    """
    rng = np.random.default_rng(args.seed)
    n_feat = args.n_features * args.n_delays
    lengths = [args.story_trs] * args.n_stories + [args.test_trs]
    X_parts = [_story_design(rng, n, args.n_features, args.n_delays) for n in lengths]
    k = 32
    A = (rng.standard_normal((n_feat, k)) / np.sqrt(n_feat)).astype(np.float32)
    B = rng.standard_normal((k, args.n_voxels)).astype(np.float32)
    snr = np.exp(rng.uniform(np.log(0.03), np.log(3.0), args.n_voxels)).astype(np.float32)
    snr[rng.random(args.n_voxels) < 0.1] = 0.0
    Y_parts = []
    for X in X_parts:
        Y = (X @ A) @ B
        Y *= snr / np.maximum(Y.std(0), 1e-6)
        Y += rng.standard_normal(Y.shape, dtype=np.float32)
        Y_parts.append(_zscore_inplace(Y))
    n_train = args.n_stories * args.story_trs
    groups = np.repeat([f"story{i:02d}" for i in range(args.n_stories)], args.story_trs)
    X_train = np.concatenate(X_parts[:-1])
    del X_parts[:-1]
    Y_train = np.concatenate(Y_parts[:-1])
    del Y_parts[:-1]
    assert X_train.shape[0] == n_train
    return dict(X=X_train, Y=Y_train, X_test=X_parts[-1], Y_test=Y_parts[-1], groups=groups)


def _zscore_inplace(Y: np.ndarray) -> np.ndarray:
    Y -= Y.mean(0)
    sd = Y.std(0)
    sd[sd == 0] = 1.0
    Y /= sd
    return Y


def alpha_values(args) -> np.ndarray:
    return np.logspace(args.alpha_min, args.alpha_max, args.n_alphas)


def column_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``a`` with the same column of ``b`` (float64)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    num = (a * b).sum(0, dtype=np.float64)
    den = np.sqrt((a * a).sum(0, dtype=np.float64) * (b * b).sum(0, dtype=np.float64))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def snap(values, grid) -> np.ndarray:
    """Nearest grid value in log space (himalaya returns alphas with float32 round-off)."""
    v = np.log(np.asarray(values, dtype=np.float64).ravel())
    g = np.log(np.asarray(grid, dtype=np.float64))
    return np.asarray(grid)[np.argmin(np.abs(v[:, None] - g[None]), axis=1)]


# --------------------------------------------------------------------------------------------
# memory


def _busy_seconds() -> float:
    """CPU seconds spent by the whole machine so far (all processes, from /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# methods (run in a child process)
def run_sklearn(data, folds, alphas):
    from sklearn.linear_model import Ridge

    X, Y = data["X"], data["Y"]
    scores = np.zeros((len(folds), len(alphas), Y.shape[1]))
    for k, (tr, va) in enumerate(folds):
        Xtr, Ytr, Xva, Yva = X[tr], Y[tr], X[va], Y[va]
        sst = ((Yva - Yva.mean(0)) ** 2).sum(0)
        for i, alpha in enumerate(alphas):
            pred = Ridge(alpha=alpha, fit_intercept=False).fit(Xtr, Ytr).predict(Xva)
            scores[k, i] = 1.0 - ((Yva - pred) ** 2).sum(0) / sst
        del Xtr, Ytr
    best = np.argmax(scores.mean(0), axis=0)
    coef = np.zeros((X.shape[1], Y.shape[1]), dtype=np.float32)
    for i, alpha in enumerate(alphas):
        voxels = np.flatnonzero(best == i)
        if voxels.size:
            model = Ridge(alpha=alpha, fit_intercept=False).fit(X, Y[:, voxels])
            coef[:, voxels] = model.coef_.T
    return np.asarray(alphas)[best], data["X_test"] @ coef


def run_himalaya(data, folds, alphas):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    set_backend("numpy")
    model = RidgeCV(alphas=np.asarray(alphas, dtype=np.float32), cv=folds)
    model.fit(data["X"], data["Y"])
    return np.asarray(model.best_alphas_), np.asarray(model.predict(data["X_test"]))


def run_himalaya_kr(data, folds, alphas):
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV

    set_backend("numpy")
    model = KernelRidgeCV(alphas=np.asarray(alphas, dtype=np.float32), kernel="linear", cv=folds)
    model.fit(data["X"], data["Y"])
    return np.asarray(model.best_alphas_), np.asarray(model.predict(data["X_test"]))


def run_lmbrain(data, folds, alphas):
    from lmbrain.fitting import fit_ridge_cv, predict

    fit = fit_ridge_cv(
        data["X"], data["Y"], data["groups"], alphas, n_folds=len(folds), backend="numpy"
    )
    return fit.best_alphas, predict(fit, data["X_test"])


RUNNERS = {
    "sklearn": run_sklearn,
    "himalaya": run_himalaya,
    "himalaya_kr": run_himalaya_kr,
    "lmbrain": run_lmbrain,
}


def worker(args) -> None:
    """Child process: build the data, run one method, write its figures to ``args.out``."""
    if args.worker == "sklearn":
        import sklearn.linear_model  # noqa: F401  (import cost is not the method's memory)
    else:
        import himalaya.ridge  # noqa: F401
    from lmbrain.fitting import story_folds

    rss_libs = status()["VmRSS"]
    data = make_data(args)
    folds = story_folds(data["groups"], args.n_folds)
    alphas = alpha_values(args)
    rss_data = status()["VmRSS"]
    reset = reset_peak()
    t0, c0, b0 = time.perf_counter(), time.process_time(), _busy_seconds()
    best_alphas, pred = RUNNERS[args.worker](data, folds, alphas)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    others = _busy_seconds() - b0 - cpu
    peak = status()["VmHWM"]
    r = column_r(np.asarray(pred, dtype=np.float32), data["Y_test"])
    np.savez(args.out, best_alphas=snap(best_alphas, alphas), test_r=r)
    info = dict(
        seconds=seconds,
        cpu_seconds=cpu,
        other_cpu_seconds=others,
        rss_libs=rss_libs,
        rss_data=rss_data,
        peak=peak,
        peak_reset=reset,
        data_bytes=int(data["X"].nbytes + data["Y"].nbytes),
    )
    Path(args.out).with_suffix(".json").write_text(json.dumps(info))


# --------------------------------------------------------------------------------------------
# float64 reference for voxels whose alphas differ
def reference_scores(X, Y, folds, alphas):
    """Exact float64 CV curves: (mean negative MSE, mean R^2), each (n_alphas, n_voxels)."""
    X = X.astype(np.float64)
    Y = Y.astype(np.float64)
    neg_mse = np.zeros((len(alphas), Y.shape[1]))
    r2 = np.zeros_like(neg_mse)
    for tr, va in folds:
        K_tr = X[tr] @ X[tr].T
        lam, V = np.linalg.eigh(K_tr)
        A = (X[va] @ X[tr].T) @ V
        Z = V.T @ Y[tr]
        Yva = Y[va]
        sst = ((Yva - Yva.mean(0)) ** 2).sum(0)
        for i, alpha in enumerate(alphas):
            sse = ((Yva - A @ (Z / (np.maximum(lam, 0) + alpha)[:, None])) ** 2).sum(0)
            neg_mse[i] -= sse / len(va) / len(folds)
            r2[i] += (1.0 - sse / sst) / len(folds)
    return neg_mse, r2


# --------------------------------------------------------------------------------------------
# parent
def spawn(method: str, args, workdir: Path) -> dict:
    out = workdir / f"{method}.npz"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--out", str(out)]
    cmd += _shape_argv(args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    print(f"running {method} ...", flush=True)
    subprocess.run(cmd, check=True, env=env)
    res = dict(np.load(out))
    res.update(json.loads(out.with_suffix(".json").read_text()))
    return res


def _shape_argv(args) -> list[str]:
    keys = ["n_stories", "story_trs", "test_trs", "n_delays", "n_features", "n_voxels"]
    keys += ["n_alphas", "alpha_min", "alpha_max", "n_folds", "seed"]
    argv = []
    for key in keys:
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return argv


def _reference(results: dict) -> str | None:
    """The himalaya estimator the alphas and test r are compared with (RidgeCV if it ran)."""
    return next((name for name in ("himalaya", "himalaya_kr") if name in results), None)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args, results: dict) -> None:
    n_train = args.n_stories * args.story_trs
    n_feat = args.n_features * args.n_delays
    data_bytes = next(iter(results.values()))["data_bytes"]
    print()
    print(
        f"shape: {n_train} training TRs ({args.n_stories} stories x {args.story_trs}), "
        f"{args.test_trs} test TRs, {args.n_delays} delays x {args.n_features} features = "
        f"{n_feat} columns, {args.n_voxels} voxels, {args.n_alphas} alphas "
        f"logspace({args.alpha_min:g}, {args.alpha_max:g}), {args.n_folds} story folds, float32"
    )
    print(f"size of X + Y (training): {data_bytes / MIB:.1f} MiB")
    head = (
        f"{'method':<11} {'time s':>8} {'cpu s':>7} {'other':>6} {'vs sklearn':>10} "
        f"{'peak MiB':>9} {'extra MiB':>9} "
        f"{'peak/(X+Y)':>10} {'alpha==b':>9} {'max|r-r_b|':>11}"
    )
    print(head)
    print("-" * len(head))
    ref = results.get(_reference(results))
    base = results.get("sklearn")
    for name, res in results.items():
        total = res["peak"] - res["rss_libs"]
        extra = res["peak"] - res["rss_data"]
        speed = f"{base['seconds'] / res['seconds']:9.1f}x" if base else f"{'-':>10}"
        same = f"{np.mean(res['best_alphas'] == ref['best_alphas']):9.4f}" if ref else "-"
        dr = f"{np.max(np.abs(res['test_r'] - ref['test_r'])):11.2e}" if ref else "-"
        print(
            f"{name:<11} {res['seconds']:8.1f} {res['cpu_seconds']:7.1f} "
            f"{res['other_cpu_seconds']:6.1f} "
            f"{speed} {total / MIB:9.0f} {extra / MIB:9.0f} "
            f"{total / data_bytes:10.2f} {same:>9} {dr:>11}"
        )
    print(
        "cpu s = CPU seconds of the method (all threads); other = CPU seconds used by every "
        "other process on the machine meanwhile (near 0 when the timing is clean)."
    )
    if ref is not None:
        values, counts = np.unique(ref["best_alphas"], return_counts=True)
        spread = ", ".join(f"{v:g}: {c}" for v, c in zip(values, counts, strict=True))
        print(f"alphas chosen by himalaya (value: voxels): {spread}")
    print(
        "peak MiB = peak RSS minus the RSS of the interpreter and libraries (so X, Y and the "
        "test data count); extra MiB = peak RSS minus the RSS with the data already built."
    )
    if "lmbrain" in results:
        _targets(results, data_bytes)


def _targets(results: dict, data_bytes: int) -> None:
    ours = results["lmbrain"]
    print()
    if "sklearn" in results:
        ratio = results["sklearn"]["seconds"] / ours["seconds"]
        print(f"target: >= 10x faster than sklearn loop: {ratio:.1f}x  {_verdict(ratio >= 10)}")
    if "sklearn" in results:
        ratio = results["sklearn"]["cpu_seconds"] / ours["cpu_seconds"]
        print(f"  (in CPU seconds, robust to other jobs on the machine: {ratio:.1f}x)")
    for name in ("himalaya", "himalaya_kr"):
        if name not in results:
            continue
        ratio = results[name]["seconds"] / ours["seconds"]
        cpu = results[name]["cpu_seconds"] / ours["cpu_seconds"]
        print(
            f"target: no slower than {name} (5% noise): {ratio:.2f}x (CPU seconds {cpu:.2f}x)  "
            f"{_verdict(ours['seconds'] <= 1.05 * results[name]['seconds'])}"
        )
    name = _reference(results)
    if name is not None:
        ref = results[name]
        same = float(np.mean(ours["best_alphas"] == ref["best_alphas"]))
        print(f"target: alphas identical to {name}: {same:.4%} of voxels  {_verdict(same == 1)}")
        dr = float(np.max(np.abs(ours["test_r"] - ref["test_r"])))
        print(f"target: test r within 1e-4 of {name}: max |dr| = {dr:.2e}  {_verdict(dr < 1e-4)}")
    total = (ours["peak"] - ours["rss_libs"]) / data_bytes
    print(f"target: peak memory < 3 x (X + Y): {total:.2f}x  {_verdict(total < 3)}")
    if not ours["peak_reset"]:
        print("note: VmHWM could not be reset; peaks include building the data")


def investigate_alphas(args, results: dict, max_voxels: int = 400) -> None:
    """Float64 CV curves for voxels where lmbrain and himalaya disagree, plus a random sample.

    Prints how far apart (in the exact CV score) the two chosen alphas are, and how often the
    negative-MSE rule (himalaya's default) and the mean-R^2 rule pick different alphas.
    """
    from lmbrain.fitting import story_folds

    ours, ref = results["lmbrain"], results[_reference(results)]
    alphas = alpha_values(args)
    differ = np.flatnonzero(ours["best_alphas"] != ref["best_alphas"])
    rng = np.random.default_rng(args.seed + 1)
    sample = rng.choice(args.n_voxels, size=min(max_voxels, args.n_voxels), replace=False)
    voxels = np.unique(np.concatenate([differ[:max_voxels], sample]))
    data = make_data(args)
    folds = story_folds(data["groups"], args.n_folds)
    neg_mse, r2 = reference_scores(data["X"], data["Y"][:, voxels], folds, alphas)
    exact_mse = alphas[np.argmax(neg_mse, axis=0)]
    exact_r2 = alphas[np.argmax(r2, axis=0)]
    in_sample = np.isin(voxels, sample)
    print()
    print(f"alpha check (float64 exact CV on {voxels.size} voxels: {in_sample.sum()} random):")
    for name in ("himalaya", "himalaya_kr", "lmbrain", "sklearn"):
        if name in results:
            got = results[name]["best_alphas"][voxels][in_sample]
            print(
                f"  {name:<11} agrees with exact neg-MSE rule on {np.mean(got == exact_mse[in_sample]):.4f}, "
                f"exact mean-R^2 rule on {np.mean(got == exact_r2[in_sample]):.4f} of the sample"
            )
    print(
        f"  exact rules agree with each other on {np.mean(exact_mse == exact_r2):.4f} "
        "(Y is z-scored per story, so a fold's SST equals its row count and the rules coincide)"
    )
    if differ.size:
        pos = np.searchsorted(voxels, differ[:max_voxels])
        i_ours = np.searchsorted(alphas, ours["best_alphas"][differ[:max_voxels]])
        i_ref = np.searchsorted(alphas, ref["best_alphas"][differ[:max_voxels]])
        gap = np.abs(neg_mse[i_ours, pos] - neg_mse[i_ref, pos])
        rel = gap / np.abs(neg_mse[:, pos]).max(0)
        print(
            f"  {differ.size} voxel(s) differ; exact |score gap| between the two alphas: "
            f"max {gap.max():.2e} (relative {rel.max():.2e}), median {np.median(gap):.2e}"
        )


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--small", action="store_true", help="tiny shape, seconds")
    mode.add_argument(
        "--scale",
        action="store_true",
        help="95,000 voxels x 4 x 4,096 features x 3,000 TRs, lmbrain only",
    )
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {METHODS}")
    for key, value in SHAPES["default"].items():
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"({value})")
    p.add_argument("--n-alphas", type=int, default=10)
    p.add_argument("--alpha-min", type=float, default=0.0, help="log10 of the smallest alpha")
    p.add_argument("--alpha-max", type=float, default=6.0, help="log10 of the largest alpha")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true", help="skip the float64 alpha check")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shape = SHAPES["small" if args.small else "scale" if args.scale else "default"]
    for key, value in shape.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.methods is None:
        args.methods = "lmbrain" if args.scale else ",".join(METHODS)
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.worker:
        worker(args)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; use {METHODS}")
    with tempfile.TemporaryDirectory(prefix="bench_ridge_") as tmp:
        results = {m: spawn(m, args, Path(tmp)) for m in methods}
    report(args, results)
    if "lmbrain" in results and _reference(results) and not args.no_check:
        investigate_alphas(args, results)


if __name__ == "__main__":
    main()
