"""Time the per-ROI scaling fits and extrapolation (lmbrain.roi_scaling) against the whole brain.

Usage::

    PYTHONPATH=src python benchmarks/bench_roi_scaling.py [--subjects 8] [--models 8]
        [--voxels 5000] [--rois 6] [--roi-fraction 0.6] [--n-boot 1000]

Synthetic best-layer fits (one layer, one train fraction, two families): per subject
``--voxels`` voxels, half per hemisphere, ``--roi-fraction`` of them split evenly over
``--rois`` ROIs. Prints the wall and CPU seconds of the whole-brain ``scaling_fits`` (metric
r) and ``scaling_extrapolations``, of their per-ROI versions, and the ratio ROI / whole brain.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from lmbrain.aggregate import scaling_fits
from lmbrain.extrapolation import scaling_extrapolations
from lmbrain.roi import roi_table
from lmbrain.roi_scaling import roi_extrapolations, roi_scaling_fits


def simulate(args):
    rng = np.random.default_rng(0)
    n = args.voxels
    hemi = np.where(np.arange(n) < n // 2, "L", "R")
    labels = np.full(n, "", dtype=object)
    inside = rng.permutation(n)[: int(args.roi_fraction * n)]
    labels[inside] = [f"roi{i % args.rois}" for i in range(inside.size)]
    membership = {f"roi{i}": labels == f"roi{i}" for i in range(args.rois)}
    rows, arrays, rois = [], {}, {}
    for s in range(args.subjects):
        subject = f"sub-{s:02d}"
        rois[subject] = membership
        base = rng.normal(0.1, 0.03, n)
        for m in range(args.models):
            n_params = int(10 ** (7 + 3 * m / max(args.models - 1, 1)))
            r = (base + 0.01 * np.log10(n_params) + rng.normal(0, 0.02, n)).astype(np.float32)
            path = f"{subject}/m{m}"
            arrays[path] = {"r": r, "r_norm": r / 0.5, "hemisphere": hemi}
            rows.append(
                {
                    "dataset": "bench",
                    "subject": subject,
                    "model": f"m{m}",
                    "family": f"fam{m % 2}",
                    "untrained": False,
                    "n_params": n_params,
                    "layer": 1,
                    "depth": 1.0,
                    "train_fraction": 1.0,
                    "n_train_stories": 10,
                    "n_train_trs": 3000,
                    "n_test_stories": 1,
                    "n_voxels": n,
                    "mean_r": float(r.mean()),
                    "mean_r_left": float(r[hemi == "L"].mean()),
                    "mean_r_right": float(r[hemi == "R"].mean()),
                    "mean_r_norm": float(r.mean() / 0.5),
                    "mean_cv_score": 0.1,
                    "fit_path": path,
                }
            )
    return pd.DataFrame(rows), arrays, rois


def timed(label, func):
    wall, cpu = time.perf_counter(), time.process_time()
    out = func()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label}\t{len(out)}\t{wall:.2f}\t{cpu:.2f}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--voxels", type=int, default=5000)
    parser.add_argument("--rois", type=int, default=6)
    parser.add_argument("--roi-fraction", type=float, default=0.6)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    scores, arrays, rois = simulate(args)
    load = arrays.__getitem__
    table = roi_table(scores, rois, load_voxels=load)
    boot = {"n_boot": args.n_boot, "seed": 0}
    print(f"# {vars(args)}")
    print("step\trows\twall_s\tcpu_s")
    brain = timed("scaling_fits (whole brain)", lambda: scaling_fits(scores, load, **boot))
    roi = timed("roi_scaling_fits", lambda: roi_scaling_fits(scores, table, rois, load, **boot))
    brain_x = timed(
        "scaling_extrapolations (whole brain)",
        lambda: scaling_extrapolations(scores, load, **boot),
    )
    roi_x = timed(
        "roi_extrapolations", lambda: roi_extrapolations(scores, table, rois, load, **boot)
    )
    print(f"ratio fits ROI / whole brain\t\t{roi / brain:.2f}")
    print(f"ratio extrapolation ROI / whole brain\t\t{roi_x / brain_x:.2f}")


if __name__ == "__main__":
    main()
