"""Voxelwise scaling maps: where in the brain does a larger model predict better?

Bonnasse-Gahot & Pallier (2024, arXiv:2405.17992) fit brain score = a + b * log10(n_params)
across 28 models on the whole brain and per hemisphere; :func:`lmbrain.aggregate.scaling_fits`
does that on mean scores. This module fits the same line **in every voxel**: for one
subject, the test ``r`` of each trained, non-baseline model (its best layer by the
cross-validated score, :func:`lmbrain.aggregate.best_layers`, at the largest train fraction)
against log10(``n_params``). The slope map reads "change of the voxel's test r per decade
(10x) of parameters"; its intercept and the fit's r² are written beside it. The asymmetry
fit (left - right) is a whole-brain quantity and has no voxelwise counterpart: the slope map
itself shows where the slope is larger.

Maps go through the map writers of :mod:`lmbrain.brainmaps` (NIfTI for volume data, a GIfTI
per hemisphere for surface data, ``.npz`` without geometry), measures :data:`SLOPE_MEASURES`.
Where the subjects share a space (one surface mesh, or one volume grid: same shape and
affine), :func:`write_group_mean_map` writes their voxelwise mean.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lmbrain.aggregate import at_largest_fraction, best_layers, load_fit_voxels
from lmbrain.brainmaps import (
    map_kind,
    map_paths,
    read_surface_map,
    read_volume_map,
    write_surface_map,
    write_vector_map,
    write_volume_map,
)
from lmbrain.errors import InputError
from lmbrain.geometry import HEMISPHERES, SurfaceGeometry, VolumeGeometry

log = logging.getLogger("lmbrain")

#: Measures of a slope map, in this order: the slope of r per decade of parameters, the
#: intercept (r at 1 parameter), the per-voxel fit's r² and the number of models that voxel
#: has a finite r for.
SLOPE_MEASURES = ("slope", "intercept", "r2", "n_models")
#: Measure added to a group map: the number of subjects averaged at each voxel.
N_SUBJECTS = "n_subjects"


def voxel_loglinear_fits(log_x: Sequence[float], values: np.ndarray) -> dict[str, np.ndarray]:
    """Least-squares line ``y = a + b * log_x`` in every voxel (column) at once.

    Parameters
    ----------
    log_x : array_like of shape (n_points,)
        The predictor of each point (log10 of the parameter count), finite.
    values : array_like of shape (n_points, n_voxels)
        ``y`` of each point in each voxel; non-finite entries are left out of that voxel's
        fit only.

    Returns
    -------
    dict of numpy.ndarray (n_voxels,)
        ``slope``, ``intercept``, ``r2`` (1 - SS_res / SS_tot) and ``n_models`` (points
        used). A voxel with fewer than two distinct ``log_x`` among its finite points gets
        NaN slope, intercept and r²; r² is NaN where y is constant.
    """
    lx = np.asarray(log_x, dtype=np.float64).ravel()
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != lx.size:
        raise ValueError(f"values {y.shape} must be (n_points={lx.size}, n_voxels)")
    if not np.isfinite(lx).all():
        raise ValueError("log_x must be finite")
    w = np.isfinite(y)
    n = w.sum(axis=0)
    lxw = np.where(w, lx[:, None], 0.0)
    yw = np.where(w, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = lxw.sum(axis=0) / n
        my = yw.sum(axis=0) / n
        dx = np.where(w, lx[:, None] - mx, 0.0)
        dy = np.where(w, y - my, 0.0)
        sxx = (dx * dx).sum(axis=0)
        sxy = (dx * dy).sum(axis=0)
        syy = (dy * dy).sum(axis=0)
        ok = sxx > 1e-12  # two or more distinct x among the voxel's finite points
        slope = np.where(ok, sxy / sxx, np.nan)
        intercept = np.where(ok, my - slope * mx, np.nan)
        ss_res = ((dy - slope * dx) ** 2).sum(axis=0)
        flat = syy <= 1e-20 * np.maximum((yw * yw).sum(axis=0), 1e-300)
        r2 = np.where(ok & ~flat, 1.0 - ss_res / syy, np.nan)
    return {"slope": slope, "intercept": intercept, "r2": r2, "n_models": n.astype(np.float64)}


def scaling_rows(scores: pd.DataFrame, subject: str) -> pd.DataFrame:
    """The fits behind a subject's slope map: one row per trained, non-baseline model.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (:func:`lmbrain.aggregate.read_score_rows`) of any models and subjects.
    subject : str

    Returns
    -------
    pandas.DataFrame
        The subject's rows of models that are neither untrained nor baselines (``untrained``
        false and ``n_params > 0``: baselines are marked untrained with ``n_params = 0``,
        :mod:`lmbrain.baselines`), at each model's best layer by ``mean_cv_score``
        (:func:`~lmbrain.aggregate.best_layers`) and at the largest train fraction of those
        rows; sorted by ``n_params`` then model.
    """
    rows = scores[scores["subject"] == subject]
    n_params = pd.to_numeric(rows["n_params"], errors="coerce")
    rows = rows[~rows["untrained"].astype(bool) & (n_params > 0)]
    if rows.empty:
        return rows.reset_index(drop=True)
    best = at_largest_fraction(best_layers(rows))
    return best.sort_values(["n_params", "model"], kind="mergesort").reset_index(drop=True)


def n_model_sizes(rows: pd.DataFrame) -> int:
    """Distinct finite, positive ``n_params`` among ``rows``."""
    n = pd.to_numeric(rows["n_params"], errors="coerce")
    return int(n[np.isfinite(n) & (n > 0)].nunique())


def subject_slope_arrays(
    rows: pd.DataFrame, load_voxels: Callable[[str], Mapping] = load_fit_voxels
) -> dict[str, np.ndarray]:
    """Per-voxel scaling fit of one subject from the fits of :func:`scaling_rows`.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per model with ``n_params`` and ``fit_path``.
    load_voxels : callable
        ``fit_path -> {"r": ..., "hemisphere": ...}``.

    Returns
    -------
    dict of numpy.ndarray (n_voxels,)
        :func:`voxel_loglinear_fits` of the models' per-voxel test ``r`` against
        log10(``n_params``), plus ``hemisphere``.

    Raises
    ------
    InputError
        If two fits have different voxel counts.
    """
    r, hemi, first = [], None, None
    for path in rows["fit_path"]:
        arrays = load_voxels(str(path))
        values = np.asarray(arrays["r"], dtype=np.float64).ravel()
        if r and values.size != r[0].size:
            raise InputError(
                path,
                f"has {values.size} voxels but {first} has {r[0].size}; a voxelwise "
                "fit needs every model's fit on the same voxels",
            )
        first = first or path
        r.append(values)
        if hemi is None and "hemisphere" in arrays:
            hemi = np.asarray(arrays["hemisphere"]).astype(str)
    lx = np.log10(rows["n_params"].to_numpy(dtype=np.float64))
    out = voxel_loglinear_fits(lx, np.stack(r))
    out["hemisphere"] = hemi if hemi is not None else np.full(r[0].size, "")
    return out


def write_measures(values: Mapping[str, np.ndarray], geometry, prefix, hemisphere, **info):
    """Write per-voxel measures with the writer the geometry calls for (:mod:`brainmaps`).

    ``info`` goes into a volume map's sidecar. Returns the files (:func:`map_paths`).
    """
    values = {k: np.asarray(v, dtype=np.float32) for k, v in values.items()}
    kind = map_kind(geometry)
    n = len(next(iter(values.values())))
    if geometry is not None and geometry.n_voxels != n:
        raise InputError(
            info.get("source", str(prefix)),
            f"has {n} voxels but the subject's {kind} geometry has {geometry.n_voxels}",
        )
    if kind == "volume":
        return write_volume_map(values, geometry, prefix, **info)
    if kind == "surface":
        return write_surface_map(values, geometry, prefix)
    return write_vector_map(values, hemisphere, prefix)


def write_subject_slope_map(
    scores: pd.DataFrame,
    subject: str,
    geometry,
    prefix: str | Path,
    load_voxels: Callable[[str], Mapping] = load_fit_voxels,
) -> dict:
    """Fit and write a subject's slope map; a map of NaN when fewer than two model sizes.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows of the subject's fits (:func:`scaling_rows` picks the models).
    subject : str
    geometry : VolumeGeometry, SurfaceGeometry or None
    prefix : str or Path
        Output path without extension (e.g. ``maps/sub-01/scaling-slope``).
    load_voxels : callable

    Returns
    -------
    dict
        What was fitted: ``models``, ``n_params``, ``layers``, ``train_fraction``,
        ``n_voxels``, ``mean_slope`` / ``median_slope`` (over voxels with a finite slope),
        ``note`` (empty, or why the map is all NaN) and ``files``.
    """
    rows = scaling_rows(scores, subject)
    note = ""
    if n_model_sizes(rows) < 2:
        note = (
            f"{n_model_sizes(rows)} trained model size(s) for {subject}: a slope needs two or "
            "more (the map is all NaN)"
        )
        n = geometry.n_voxels if geometry is not None else _n_voxels(rows, load_voxels)
        arrays = {m: np.full(n, np.nan) for m in SLOPE_MEASURES}
        arrays["n_models"] = np.zeros(n)
        hemi = geometry.hemispheres() if geometry is not None else _hemi(rows, load_voxels, n)
    else:
        arrays = subject_slope_arrays(rows, load_voxels)
        hemi = arrays.pop("hemisphere")
    slope = arrays["slope"][np.isfinite(arrays["slope"])]
    info = {
        "subject": subject,
        "models": rows["model"].tolist(),
        "n_params": [int(v) for v in rows["n_params"]],
        "layers": [int(v) for v in rows["layer"]],
        "train_fraction": float(rows["train_fraction"].max()) if len(rows) else float("nan"),
        "x_variable": "log10(n_params)",
        "y_variable": "r",
        "n_voxels": int(arrays["slope"].size),
        "mean_slope": float(slope.mean()) if slope.size else float("nan"),
        "median_slope": float(np.median(slope)) if slope.size else float("nan"),
        "note": note,
    }
    files = write_measures(
        {m: arrays[m] for m in SLOPE_MEASURES},
        geometry,
        prefix,
        hemi,
        source="lmbrain.voxel_scaling",
        **{k: v for k, v in info.items() if k != "n_voxels"},
    )
    return {**info, "files": files}


def _n_voxels(rows, load_voxels) -> int:
    if rows.empty:
        raise ValueError("no fit to take the voxel count from and no geometry")
    return int(np.asarray(load_voxels(str(rows["fit_path"].iloc[0]))["r"]).size)


def _hemi(rows, load_voxels, n):
    if rows.empty:
        return np.full(n, "")
    arrays = load_voxels(str(rows["fit_path"].iloc[0]))
    return np.asarray(arrays.get("hemisphere", np.full(n, ""))).astype(str)


# --------------------------------------------------------------------------- group mean


def same_space(geometries: Sequence) -> bool:
    """Whether subjects' maps can be averaged voxel by voxel.

    True for surface geometries on one mesh (same vertex counts), and for volume
    geometries on one grid (same mask shape and affine: the adapters that give such
    volumes register them to a template, e.g. MNI152 or Colin27); False for maps without
    geometry, for a mix of kinds, and for fewer than two subjects.
    """
    if len(geometries) < 2:
        return False
    kinds = {map_kind(g) for g in geometries}
    if len(kinds) != 1:
        return False
    first = geometries[0]
    if isinstance(first, SurfaceGeometry):
        return all(
            g.mesh == first.mesh and dict(g.n_vertices) == dict(first.n_vertices)
            for g in geometries
        )
    if isinstance(first, VolumeGeometry):
        return all(
            np.shape(g.mask) == np.shape(first.mask)
            and np.allclose(np.asarray(g.affine), np.asarray(first.affine))
            for g in geometries
        )
    return False


def _mean_over_subjects(stacks: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for name, arrays in stacks.items():
        a = np.stack(arrays).astype(np.float64)
        n = np.isfinite(a).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(n > 0, np.nansum(a, axis=0) / n, np.nan)
        if name == "slope":
            out[N_SUBJECTS] = n.astype(np.float64)
    return out


def write_group_mean_map(kind: str, subject_prefixes: Sequence, prefix: str | Path) -> dict:
    """Voxelwise mean over subjects of their slope maps (subjects in one space).

    Parameters
    ----------
    kind : {"volume", "surface"}
    subject_prefixes : sequence of str or Path
        Each subject's map prefix (as given to :func:`write_subject_slope_map`).
    prefix : str or Path
        Output prefix.

    Returns
    -------
    dict
        ``files`` and ``n_subjects``. Each measure is the mean over the subjects with a
        finite value at that voxel (vertex); :data:`N_SUBJECTS` counts them (from the slope).

    Raises
    ------
    InputError
        If a subject's map is on another grid or mesh than the first one.
    """
    if kind == "volume":
        stacks, affine, shape, first = {}, None, None, None
        for p in subject_prefixes:
            path = map_paths(p, "volume")["image"]
            maps, aff = read_volume_map(path)
            shp = next(iter(maps.values())).shape
            if affine is None:
                affine, shape, first = aff, shp, path
            elif shp != shape or not np.allclose(aff, affine):
                raise InputError(path, f"is on another grid than {first}: no voxelwise mean")
            for m in SLOPE_MEASURES:
                stacks.setdefault(m, []).append(maps[m])
        mean = _mean_over_subjects(stacks)
        mask = mean[N_SUBJECTS] > 0
        geometry = VolumeGeometry(mask=mask, affine=affine)
        values = {k: v[mask] for k, v in mean.items()}
        files = write_volume_map(
            values,
            geometry,
            prefix,
            source="lmbrain.voxel_scaling",
            n_subjects=len(stacks["slope"]),
        )
        return {"files": files, "n_subjects": len(subject_prefixes)}
    if kind == "surface":
        per_hemi, mesh, first = {}, None, None
        for p in subject_prefixes:
            for h, path in map_paths(p, "surface").items():
                maps, m = read_surface_map(path)
                if mesh is None:
                    mesh, first = m, path
                elif m != mesh:
                    raise InputError(path, f"is on mesh {m!r}, {first} on {mesh!r}")
                for name in SLOPE_MEASURES:
                    per_hemi.setdefault(h, {}).setdefault(name, []).append(maps[name])
        hemis, vertices, values, n_vertices = [], [], {}, {}
        for h in HEMISPHERES:
            stacks = per_hemi[h]
            sizes = {a.size for arrays in stacks.values() for a in arrays}
            if len(sizes) != 1:
                raise InputError(prefix, f"hemisphere {h}: maps of different vertex counts")
            mean = _mean_over_subjects(stacks)
            keep = np.flatnonzero(mean[N_SUBJECTS] > 0)
            n_vertices[h] = sizes.pop()
            hemis.append(np.full(keep.size, h))
            vertices.append(keep)
            for k, v in mean.items():
                values.setdefault(k, []).append(v[keep])
        geometry = SurfaceGeometry(
            mesh=mesh,
            hemisphere=np.concatenate(hemis),
            vertex=np.concatenate(vertices),
            n_vertices=n_vertices,
        )
        values = {k: np.concatenate(v) for k, v in values.items()}
        return {
            "files": write_surface_map(values, geometry, prefix),
            "n_subjects": len(subject_prefixes),
        }
    raise ValueError(f"a group mean needs volume or surface maps, not {kind!r}")
