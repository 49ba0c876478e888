"""Time of the searchlight RSA (lmbrain.searchlight) on a synthetic NSD-sized volume.

Usage::

    PYTHONPATH=src python benchmarks/bench_searchlight.py [--voxels 20000] [--stimuli 100]

A brain-shaped (ellipsoid) mask of about ``--voxels`` voxels on NSD's 1.8 mm grid, random
patterns over ``--stimuli`` images and one model RDM. Prints, per radius, the sphere size,
the seconds of :func:`lmbrain.searchlight.searchlight_rsa` over every voxel, and the seconds
per centre of a plain per-centre loop (brute-force distances, :func:`lmbrain.rsa.rdm`,
:func:`scipy.stats.pearsonr`) timed on ``--loop-centres`` centres, with the maximum difference
between the two on those centres (BENCHMARKS.md, *Searchlight RSA*).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import pearsonr

from lmbrain.geometry import VolumeGeometry
from lmbrain.rsa import rdm
from lmbrain.searchlight import TOLERANCE_MM, searchlight_rsa, sphere_size


def ellipsoid_mask(n_voxels: int) -> np.ndarray:
    """A 3:4:3 ellipsoid with about ``n_voxels`` voxels."""
    scale = (n_voxels / (4 / 3 * np.pi * 3 * 4 * 3)) ** (1 / 3)
    axes = np.array([3, 4, 3]) * scale
    shape = tuple(int(np.ceil(2 * a)) + 2 for a in axes)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    centre = (np.array(shape) - 1) / 2
    return (((grid - centre) / axes) ** 2).sum(-1) <= 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=20000)
    parser.add_argument("--stimuli", type=int, default=100)
    parser.add_argument("--radii", type=float, nargs="+", default=[6.0, 10.7])
    parser.add_argument("--loop-centres", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    geometry = VolumeGeometry(mask=ellipsoid_mask(args.voxels), affine=affine)
    coords = geometry.world_coordinates()
    patterns = rng.standard_normal((args.stimuli, len(coords))).astype(np.float32)
    model = {"m": rdm(rng.standard_normal((args.stimuli, 32)))}
    print(f"{len(coords)} voxels, {args.stimuli} stimuli")
    for radius in args.radii:
        start = time.perf_counter()
        got = searchlight_rsa(patterns, coords, model, radius)["m"]
        fast = time.perf_counter() - start
        picks = rng.choice(len(coords), args.loop_centres, replace=False)
        start = time.perf_counter()
        ref = []
        for c in picks:
            members = np.flatnonzero(
                np.linalg.norm(coords - coords[c], axis=1) <= radius + TOLERANCE_MM
            )
            ref.append(pearsonr(rdm(patterns[:, members]), model["m"])[0])
        loop = (time.perf_counter() - start) / len(picks)
        print(
            f"radius {radius} mm: sphere {sphere_size(affine, radius)} voxels; "
            f"searchlight_rsa {fast:.1f} s ({fast / len(coords) * 1e3:.2f} ms/centre); "
            f"per-centre loop {loop * 1e3:.2f} ms/centre (x{loop * len(coords) / fast:.1f} "
            f"slower, {loop * len(coords):.0f} s extrapolated); "
            f"max |diff| {np.nanmax(np.abs(got[picks] - np.asarray(ref))):.1e}"
        )


if __name__ == "__main__":
    main()
