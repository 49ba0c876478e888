"""Time the voxel significance test (lmbrain.significance) at demo and real-data sizes.

Usage::

    PYTHONPATH=src python benchmarks/bench_significance.py [--trs 300] [--voxels 300 20000]

Prints, per (method, voxels), the wall and CPU seconds of ``permutation_pvalues`` with 1000
surrogates on random AR(1) held-out series of ``--trs`` TRs (one fold), and the proportion
of null voxels with p < 0.05 (calibration check on the same data).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.signal import lfilter

from lmbrain.significance import permutation_pvalues


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trs", type=int, default=300)
    parser.add_argument("--voxels", type=int, nargs="+", default=[300, 20000])
    parser.add_argument("--permutations", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("method\tvoxels\ttrs\tpermutations\twall_s\tcpu_s\tfrac_p_below_0.05")
    for n_vox in args.voxels:
        y = lfilter([1.0], [1.0, -0.8], rng.standard_normal((args.trs, n_vox)), axis=0)
        pred = lfilter([1.0], [1.0, -0.9], rng.standard_normal((args.trs, n_vox)), axis=0)
        for method in ("phase_randomization", "block_permutation"):
            wall, cpu = time.perf_counter(), time.process_time()
            p, _ = permutation_pvalues(
                [(y, pred)], method, args.permutations, 10, np.random.default_rng(1)
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"{method}\t{n_vox}\t{args.trs}\t{args.permutations}\t{wall:.2f}\t{cpu:.2f}\t"
                f"{np.mean(p < 0.05):.4f}"
            )


if __name__ == "__main__":
    main()
