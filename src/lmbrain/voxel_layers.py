"""Per-voxel best layer: each voxel's layer chosen by its cross-validated score.

Bonnasse-Gahot & Pallier (2024) pick, for every voxel, the layer of a model whose features
predict it best, and map the layer's relative depth. The choice here uses the per-voxel
``cv_score`` of every layer's fit (inner cross-validation on the training stories, never the
test story), so the reported test ``r`` at the chosen layers is not selected on itself. The
whole-brain alternative (one best layer per model, :func:`lmbrain.aggregate.best_layers`)
uses the mean of the same scores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

_FIT_NAME = re.compile(r"^layer-(?P<layer>\d+)_frac-(?P<fraction>[^/]+)$")


def parse_fit_name(name: str) -> tuple[int, str] | None:
    """``(layer, fraction)`` of a fit named ``layer-<L>_frac-<f>``, else None."""
    m = _FIT_NAME.match(name)
    return None if m is None else (int(m["layer"]), m["fraction"])


def voxel_best_layer(
    layers: Sequence[int],
    cv_scores: np.ndarray,
    test_r: np.ndarray,
    n_layers: int,
) -> dict[str, np.ndarray]:
    """Each voxel's best layer by CV score, its relative depth and its test r there.

    Parameters
    ----------
    layers : sequence of int
        The layer of each row of ``cv_scores`` / ``test_r``.
    cv_scores, test_r : array_like of shape (n_fit_layers, n_voxels)
        Per-voxel cross-validated score (training stories) and test correlation of each
        layer's fit.
    n_layers : int
        The model's number of blocks (depth = layer / n_layers, 0 = embeddings).

    Returns
    -------
    dict of numpy.ndarray (n_voxels,)
        ``r`` (test r at the chosen layer), ``best_layer``, ``best_depth``, ``cv_score`` (the
        winning CV score). A voxel without a finite CV score at any layer gets NaN
        everywhere; ties go to the shallower layer.
    """
    cv = np.asarray(cv_scores, dtype=np.float64)
    r = np.asarray(test_r, dtype=np.float64)
    layer_arr = np.asarray(layers, dtype=np.float64)
    if cv.ndim != 2 or cv.shape != r.shape or cv.shape[0] != layer_arr.size:
        raise ValueError(
            f"cv_scores {cv.shape} and test_r {r.shape} must be (n_layers={layer_arr.size}, "
            "n_voxels)"
        )
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    order = np.argsort(layer_arr, kind="stable")
    cv, r, layer_arr = cv[order], r[order], layer_arr[order]
    ok = np.isfinite(cv).any(axis=0)
    best = np.argmax(np.where(np.isfinite(cv), cv, -np.inf), axis=0)
    cols = np.arange(cv.shape[1])
    nan = np.full(cv.shape[1], np.nan)
    return {
        "r": np.where(ok, r[best, cols], nan),
        "best_layer": np.where(ok, layer_arr[best], nan),
        "best_depth": np.where(ok, layer_arr[best] / n_layers, nan),
        "cv_score": np.where(ok, cv[best, cols], nan),
    }


def voxel_best_layer_summary(arrays: Mapping[str, np.ndarray], hemisphere) -> dict:
    """Summary row of :func:`voxel_best_layer`'s arrays.

    Returns
    -------
    dict
        ``mean_r_voxel_best`` (mean test r at each voxel's own layer), ``mean_best_depth``,
        ``median_best_depth``, ``mean_best_depth_left`` / ``_right``, ``n_voxels``.
    """
    hemi = np.char.upper(np.asarray(hemisphere).astype(str))
    depth = np.asarray(arrays["best_depth"], dtype=np.float64)
    r = np.asarray(arrays["r"], dtype=np.float64)

    def mean(v, mask=None):
        v = v if mask is None else v[mask]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")

    finite = depth[np.isfinite(depth)]
    return {
        "mean_r_voxel_best": mean(r),
        "mean_best_depth": mean(depth),
        "median_best_depth": float(np.median(finite)) if finite.size else float("nan"),
        "mean_best_depth_left": mean(depth, hemi == "L"),
        "mean_best_depth_right": mean(depth, hemi == "R"),
        "n_voxels": int(depth.size),
    }


def write_voxel_best_layer_maps(fits: Sequence[str | Path], geometry, folder: str | Path) -> list:
    """Write the per-voxel best-layer map and summary of each train fraction of one model.

    Parameters
    ----------
    fits : sequence of str or Path
        A (subject, model)'s fit files ``.../layer-<L>_frac-<f>.npz`` (with ``r``,
        ``cv_score``, ``hemisphere``), each beside its summary row ``.json`` (``n_layers``).
    geometry : VolumeGeometry, SurfaceGeometry or None
        The subject's geometry (:func:`lmbrain.brainmaps.write_voxels_map`).
    folder : str or Path
        The model's map folder; writes ``voxel-best-layer_frac-<f>.*`` (measures ``r``,
        ``best_layer``, ``best_depth``, ``cv_score``) and ``voxel-best-layer_frac-<f>.tsv``
        (one row: subject-free :func:`voxel_best_layer_summary` plus ``train_fraction``,
        ``n_layers``, ``layers``) for every fraction with two or more layers.

    Returns
    -------
    list of dict
        The summary rows written.
    """
    import json

    import pandas as pd

    from lmbrain.brainmaps import write_voxels_map
    from lmbrain.io import atomic_path

    by_fraction: dict[str, list] = {}
    for fit in fits:
        parsed = parse_fit_name(Path(fit).name.removesuffix(".npz"))
        if parsed is not None:
            by_fraction.setdefault(parsed[1], []).append((parsed[0], str(fit)))
    rows = []
    for fraction, entries in sorted(by_fraction.items()):
        if len({layer for layer, _ in entries}) < 2:
            continue
        layers, cv, r, hemi = [], [], [], None
        for layer, fit in sorted(entries):
            with np.load(fit, allow_pickle=False) as npz:
                layers.append(layer)
                cv.append(npz["cv_score"])
                r.append(npz["r"])
                hemi = npz["hemisphere"]
        row_file = Path(entries[0][1]).with_suffix(".json")
        n_layers = int(json.loads(row_file.read_text())["n_layers"])
        arrays = voxel_best_layer(layers, np.stack(cv), np.stack(r), n_layers)
        prefix = Path(folder) / f"voxel-best-layer_frac-{fraction}"
        write_voxels_map({**arrays, "hemisphere": hemi}, geometry, prefix, source=str(folder))
        row = {
            "train_fraction": float(fraction),
            "n_layers": n_layers,
            "layers": ",".join(map(str, sorted(layers))),
            **voxel_best_layer_summary(arrays, hemi),
        }
        with atomic_path(f"{prefix}.tsv") as tmp:
            pd.DataFrame([row]).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        rows.append(row)
    return rows
