"""Peak memory of fit jobs at several shapes, a fitted model of it, and the request's ratio.

Usage::

    PYTHONPATH=src python benchmarks/bench_memory.py            # the default shapes (~5 min)
    PYTHONPATH=src python benchmarks/bench_memory.py --quick    # three small shapes
    PYTHONPATH=src python benchmarks/bench_memory.py --shape 3000 16384 20000

Each shape ``(TRs, features, voxels)`` runs in its own child process, which does what a fit
job's arrays do (:func:`lmbrain.encoding.fit_encoding_model`): float32 design blocks per
story (the job's cache of design matrices) and their concatenation, float32 responses, a
test story, :func:`lmbrain.fitting.fit_ridge_cv` with the test rows (predictions batch by
batch, 5 folds, ``--alphas`` values: the demo's 13 by default; memory does not grow with them), Pearson r and the significance test
(:func:`lmbrain.significance.voxel_significance`, phase randomisation, ``--permutations``).
The child measures its peak RSS (``VmHWM`` from ``/proc``, which sees BLAS/LAPACK buffers
that ``tracemalloc`` misses) and its RSS with the libraries imported and a tiny fit run.

Printed per shape: the peak RSS, the peak above the libraries, the terms of the memory model
(:func:`lmbrain.resources.fit_bytes`), the job's request (``fit_mem_mb``) and the ratio
request / measured peak, which should lie in [1.0, 1.5]; then a non-negative least-squares
fit of the peak above the libraries on the model's terms (to check the coefficients), and
the request at the paper's shape (9,000 TRs x 32,768 features x 80,000 voxels).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (TRs, features, voxels): both solvers (dual when features > TRs), each term dominant once.
SHAPES = [
    (1000, 1536, 5000),
    (2000, 1536, 5000),  # primal
    (4000, 1536, 5000),  # primal
    (1000, 8192, 5000),
    (1000, 1536, 25000),
    (2000, 4096, 10000),
]
QUICK = [(1000, 1536, 5000), (2000, 4096, 10000), (4000, 1536, 5000)]
PAPER = (9000, 32768, 80000)
STORY_TRS = 250  # TRs per story (LeBel et al. stories: 150-400)


def child(n: int, p: int, v: int, permutations: int, n_alphas: int) -> dict:
    """One fit job's arrays at ``(n, p, v)``; peak RSS and RSS of the libraries (bytes)."""
    import procstat

    from lmbrain.fitting import alpha_grid, fit_ridge_cv
    from lmbrain.scoring import pearson_r
    from lmbrain.significance import voxel_significance

    alphas = alpha_grid({"logspace": [0, 6, n_alphas]})
    sig = {"method": "phase_randomization", "n_permutations": permutations, "alpha": 0.05}
    rng = np.random.default_rng(0)

    def job(n, p, v, n_perm):
        n_story = max(2, n // STORY_TRS)
        rows = np.array_split(np.arange(n), n_story)
        # the job's cache of design matrices (one per story) and the concatenation
        designs = [rng.standard_normal((len(r), p), dtype=np.float32) for r in rows]
        X = np.concatenate(designs)
        Y = np.concatenate([rng.standard_normal((len(r), v), dtype=np.float32) for r in rows])
        groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])
        n_test = min(STORY_TRS, max(20, n // 10))
        designs.append(rng.standard_normal((n_test, p), dtype=np.float32))
        Xt = designs[-1]
        Yt = rng.standard_normal((n_test, v), dtype=np.float32)
        fit = fit_ridge_cv(X, Y, groups, alphas, n_folds=5, backend="numpy", X_test=Xt)
        r = pearson_r(Yt, fit.predictions)
        voxel_significance([(Yt, fit.predictions)], {**sig, "n_permutations": n_perm}, 0, "b")
        return float(np.nanmean(r))

    job(60, 16, 8, 10)  # imports and BLAS/LAPACK set up, outside the measure
    libraries = procstat.status()["VmRSS"]
    procstat.reset_peak()
    job(n, p, v, permutations)
    return {"libraries": libraries, "peak": procstat.status()["VmHWM"]}


def terms(n: int, p: int, v: int) -> dict:
    """The memory model's terms in bytes (:func:`lmbrain.resources.fit_terms`)."""
    from lmbrain.resources import fit_terms

    return fit_terms(n, p, v)


def measure(shape, permutations: int, n_alphas: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        *map(str, shape),
        "--permutations",
        str(permutations),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, action="append", metavar=("N", "P", "V"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--permutations", type=int, default=1000, help="significance test")
    parser.add_argument(
        "--alphas", type=int, default=13, help="grid size (the demo's 13; memory does not grow)"
    )
    parser.add_argument("--child", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.permutations, args.alphas)))
        return
    from lmbrain.resources import BASE_FIT_MB, fit_mem_mb

    shapes = args.shape or (QUICK if args.quick else SHAPES)
    rows = []
    print("TRs\tfeatures\tvoxels\tpeak MB\tabove libs MB\tlibs MB\trequest MB\trequest/peak")
    for shape in shapes:
        got = measure(shape, args.permutations, args.alphas)
        peak, libs = got["peak"] / 1e6, got["libraries"] / 1e6
        request = fit_mem_mb(*shape)
        rows.append((shape, got))
        print(
            f"{shape[0]}\t{shape[1]}\t{shape[2]}\t{peak:.0f}\t{peak - libs:.0f}\t{libs:.0f}"
            f"\t{request}\t{request / peak:.2f}",
            flush=True,
        )
    # non-negative least squares of the peak above the libraries on the model's terms
    names = list(terms(*shapes[0]))
    A = np.array([[terms(*s)[k] for k in names] for s, _ in rows], dtype=float)
    b = np.array([g["peak"] - g["libraries"] for _, g in rows], dtype=float)
    if len(rows) >= len(names):
        from scipy.optimize import nnls

        scale = A.max(0)
        coef, _ = nnls(A / scale, b)
        coef /= scale
        print("\nNNLS of the peak above the libraries on the terms (1.0 = the model's own):")
        for name, c in zip(names, coef, strict=True):
            print(f"  {name}\t{c:.2f}")
        pred = A @ coef
        print("  fitted / measured:", " ".join(f"{x:.2f}" for x in pred / b))
    libs = max(g["libraries"] for _, g in rows) / 1e6
    print(f"\nlibraries (largest): {libs:.0f} MB; BASE_FIT_MB: {BASE_FIT_MB}")
    paper = terms(*PAPER)
    print(f"paper shape {PAPER}: request {fit_mem_mb(*PAPER)} MB; terms (MB):")
    for name, value in paper.items():
        print(f"  {name}\t{value / 1e6:.0f}")


if __name__ == "__main__":
    main()
