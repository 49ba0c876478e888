"""Scaling-law extrapolation: how large a model, or how much data, to reach the noise ceiling?

For a set of points (models of one family at their sizes, or one model at several amounts of
training data) this module fits ``y = a + b * log10(x)`` where ``y`` is the best-layer
ceiling-normalised score ``mean_r_norm`` (mean over voxels of ``r / cc_max``) averaged over
subjects, and solves for the ``x`` at which the line reaches a target (by default 0.9, i.e.
90% of the noise ceiling)::

    log10 x* = (target - a) / b        (b > 0)

When ``b <= 0`` the line never reaches a target above it: ``x* = inf`` and the row's ``note``
says so (a target the line already exceeds gives a finite ``x*`` below the data: an
extrapolation backwards, also noted).

Confidence intervals come from a two-level bootstrap: each replicate draws *subjects* with
replacement, then, within every drawn subject, *voxels* with replacement (the same voxel draw
for every point of the fit, i.e. paired across models or amounts of data). A point's
replicate is the mean over the drawn subjects of their resampled voxel means; the line is
refitted and ``x*`` recomputed. Percentile intervals are reported for the slope and for
``log10 x*`` (nearest-rank percentiles, so replicates with ``x* = inf`` are handled: an
upper bound of ``inf`` means the data cannot exclude that the target is never reached).
The headline intervals need at least 3 subjects (NaN otherwise, and ``note`` says so);
the subject-only (``*_subjects``) and voxel-only (``*_voxels``) intervals are reported
beside them (:mod:`lmbrain.inference`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from lmbrain import inference
from lmbrain.aggregate import fit_line, sample_sizes
from lmbrain.errors import InputError

EXTRAPOLATION_COLUMNS: tuple[str, ...] = (
    "dataset",
    "fit",
    "group",
    "x_variable",
    "y_variable",
    "n_points",
    "n_subjects",
    "slope",
    "intercept",
    "r2",
    "slope_ci_low",
    "slope_ci_high",
    "target",
    "log10_x_target",
    "x_target",
    "log10_x_target_ci_low",
    "log10_x_target_ci_high",
    "n_boot",
    "note",
    "slope_ci_low_subjects",
    "slope_ci_high_subjects",
    "log10_x_target_ci_low_subjects",
    "log10_x_target_ci_high_subjects",
    "slope_ci_low_voxels",
    "slope_ci_high_voxels",
    "log10_x_target_ci_low_voxels",
    "log10_x_target_ci_high_voxels",
    "n_voxels",
    "n_train_stories",
    "n_test_stories",
    "resampling",
)
"""Columns of :func:`scaling_extrapolations`."""

NOTE_NO_FIT = "fewer than 2 distinct x values: no fit"
NOTE_FLAT = "slope <= 0: the target is never reached (x_target = inf)"
NOTE_BACKWARDS = "target already exceeded: x_target lies below the data"


def log10_x_at(target: float, slope, intercept):
    """``log10 x`` at which ``intercept + slope * log10 x = target``; ``inf`` where slope <= 0.

    Works element-wise on arrays; NaN inputs give NaN.
    """
    slope, intercept = np.asarray(slope, float), np.asarray(intercept, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(slope > 0, (target - intercept) / slope, np.inf)
    out = np.where(np.isnan(slope) | np.isnan(intercept), np.nan, out)
    return out if out.ndim else float(out)


def _batch_lines(lx: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts of every row of ``ys`` (n_rows, n_points) on ``lx``."""
    w = np.isfinite(ys)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(w, lx, 0.0).sum(axis=1) / n
        my = np.where(w, ys, 0.0).sum(axis=1) / n
        dx = np.where(w, lx - mx[:, None], 0.0)
        dy = np.where(w, ys - my[:, None], 0.0)
        den = (dx * dx).sum(axis=1)
        slope = np.where(den > 1e-12, (dx * dy).sum(axis=1) / den, np.nan)
    return slope, my - slope * mx


def two_level_bootstrap(
    values: list[np.ndarray], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Replicates of each point's mean over subjects, resampling subjects then voxels.

    Parameters
    ----------
    values : list of ndarray
        One (n_points, n_voxels_s) array per subject (NaN where a voxel has no value or a
        subject lacks a point).
    n_boot : int
    rng : numpy.random.Generator
        Draw order: for each replicate, the subject indices (``integers(0, n_subjects,
        n_subjects)``), then for each drawn subject in turn its voxel indices
        (``integers(0, n_voxels, n_voxels)``).

    Returns
    -------
    ndarray, shape (n_boot, n_points)
        Mean over the drawn subjects (ignoring NaN) of each subject's mean over its drawn
        voxels (ignoring NaN).
    """
    n_sub = len(values)
    n_points = values[0].shape[0] if values else 0
    finite = [np.isfinite(v) for v in values]
    zeroed = [np.where(f, v, 0.0) for v, f in zip(values, finite, strict=True)]
    out = np.full((n_boot, n_points), np.nan)
    for b in range(n_boot):
        subjects = rng.integers(0, n_sub, size=n_sub)
        sums = np.zeros(n_points)
        counts = np.zeros(n_points)
        for s in subjects:
            n_vox = values[s].shape[1]
            weights = np.bincount(rng.integers(0, n_vox, size=n_vox), minlength=n_vox)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (zeroed[s] @ weights) / (finite[s] @ weights)
            ok = np.isfinite(mean)
            sums[ok] += mean[ok]
            counts[ok] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b] = np.where(counts > 0, sums / counts, np.nan)
    return out


def _nearest_percentiles(values: np.ndarray, ci: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [50 * (1 - ci), 50 * (1 + ci)], method="nearest")
    return float(low), float(high)


def extrapolate(
    x: np.ndarray,
    y: np.ndarray,
    subject_values: list[np.ndarray],
    target: float = 0.9,
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
    ci: float = 0.95,
) -> dict:
    """Fit ``y = a + b log10 x``, solve for the target, and bootstrap the intervals.

    Parameters
    ----------
    x : ndarray, shape (n_points,)
        Positive x (parameters or training TRs).
    y : ndarray, shape (n_points,)
        Point estimates (mean over subjects of ``mean_r_norm``).
    subject_values : list of ndarray
        Per subject, the (n_points, n_voxels) per-voxel values behind ``y``.
    target : float
    n_boot : int
    rng : numpy.random.Generator, optional
    ci : float

    Returns
    -------
    dict
        ``slope intercept r2 slope_ci_low slope_ci_high target log10_x_target x_target
        log10_x_target_ci_low log10_x_target_ci_high n_boot note`` and the subject-only and
        voxel-only intervals ``*_subjects``, ``*_voxels`` (see the module docstring). The
        replicates are drawn in the order hierarchical, subjects, voxels from ``rng``.
    """
    lx = np.log10(np.asarray(x, float))
    slope, intercept, r2 = fit_line(lx, y)
    lxt = log10_x_at(target, slope, intercept)
    note = ""
    if not np.isfinite(slope):
        note = NOTE_NO_FIT
    elif slope <= 0:
        note = NOTE_FLAT
    elif lxt < np.nanmin(lx):
        note = NOTE_BACKWARDS
    out = {
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "slope_ci_low": float("nan"),
        "slope_ci_high": float("nan"),
        "target": float(target),
        "log10_x_target": lxt,
        "x_target": _pow10(lxt),
        "log10_x_target_ci_low": float("nan"),
        "log10_x_target_ci_high": float("nan"),
        "n_boot": 0,
        "note": note,
    }
    for level in ("subjects", "voxels"):
        for name in ("slope", "log10_x_target"):
            out[f"{name}_ci_low_{level}"] = out[f"{name}_ci_high_{level}"] = float("nan")
    if np.isfinite(slope) and n_boot > 0 and subject_values:
        rng = np.random.default_rng(0) if rng is None else rng
        n_sub = len(subject_values)
        levels = inference.LEVELS
        if n_sub < inference.MIN_SUBJECTS:  # subject-level intervals withheld
            levels = ("voxels",)
            out["note"] = "; ".join(filter(None, [note, inference.too_few_subjects_note(n_sub)]))
        for level in levels:
            if level == "hierarchical":
                ys = two_level_bootstrap(subject_values, n_boot, rng)
                suffix = ""
            else:
                means = inference.resample_subject_means(subject_values, n_boot, rng, level)
                ys = inference.slot_mean(means[..., 0])
                suffix = f"_{level}"
            slopes, intercepts = _batch_lines(lx, ys)
            low, high = _nearest_percentiles(slopes, ci)
            out[f"slope_ci_low{suffix}"], out[f"slope_ci_high{suffix}"] = low, high
            low, high = _nearest_percentiles(log10_x_at(target, slopes, intercepts), ci)
            out[f"log10_x_target_ci_low{suffix}"] = low
            out[f"log10_x_target_ci_high{suffix}"] = high
        out["n_boot"] = int(n_boot)
    return out


def _pow10(value: float) -> float:
    if not np.isfinite(value):
        return float(value)
    return float("inf") if value > 300 else float(10.0**value)


# --------------------------------------------------------------------------- score tables


def scaling_extrapolations(
    scores: pd.DataFrame,
    load_voxels: Callable[[str], dict] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    target: float = 0.9,
    y_column: str = "mean_r_norm",
    voxel_key: str = "r_norm",
) -> pd.DataFrame:
    """Per-family size fits and per-model data fits, extrapolated to a target score.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (:func:`lmbrain.aggregate.read_score_rows`).
    load_voxels : callable, optional
        ``fit_path -> dict`` with ``voxel_key``; default
        :func:`lmbrain.aggregate.load_fit_voxels`.
    n_boot : int
        Bootstrap replicates (0: no intervals).
    seed : int
        Each fit draws from its own stream seeded by ``seed`` and (dataset, fit, group).
    target : float
        Target of ``y_column`` (0.9: 90% of the noise ceiling).
    y_column, voxel_key : str
        Score column and its per-voxel array.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`EXTRAPOLATION_COLUMNS`. Layers are the best by cross-validated score.

        - ``fit="params"``, ``group=<family>``: the family's trained models (baselines and
          untrained twins excluded) at the largest train fraction, x = ``n_params``;
          also ``group="trained"`` pooling every trained model.
        - ``fit="data"``, ``group=<model>``: one model across train fractions,
          x = ``n_train_trs`` (every model with at least two fractions).
    """
    from lmbrain.aggregate import at_largest_fraction, best_layers, load_fit_voxels

    loader = load_fit_voxels if load_voxels is None else load_voxels
    if scores.empty:
        return pd.DataFrame(columns=list(EXTRAPOLATION_COLUMNS))
    best = best_layers(scores)
    rows = []
    for dataset in sorted(best["dataset"].unique()):
        ds = best[best["dataset"] == dataset]
        top = at_largest_fraction(ds)
        trained = top[~top["untrained"].astype(bool) & (top["n_params"] > 0)]
        groups = [("trained", trained)]
        groups += [(str(f), g) for f, g in trained.groupby("family", sort=True)]
        for group, rows_g in groups:
            spec = (dataset, "params", group, "n_params")
            rows.append(
                _row(spec, rows_g, "model", loader, n_boot, seed, target, y_column, voxel_key)
            )
        for model, rows_m in ds.groupby("model", sort=True):
            if rows_m["train_fraction"].nunique() < 2:
                continue
            spec = (dataset, "data", str(model), "n_train_trs")
            rows.append(
                _row(
                    spec,
                    rows_m,
                    "train_fraction",
                    loader,
                    n_boot,
                    seed,
                    target,
                    y_column,
                    voxel_key,
                )
            )
    return pd.DataFrame(rows, columns=list(EXTRAPOLATION_COLUMNS))


def _row(spec, rows, point_key, loader, n_boot, seed, target, y_column, voxel_key) -> dict:
    dataset, fit, group, x_col = spec
    points = rows.groupby(point_key, sort=True).agg(x=(x_col, "mean"), y=(y_column, "mean"))
    points = points[np.isfinite(points["x"]) & (points["x"] > 0) & np.isfinite(points["y"])]
    subjects = sorted(rows["subject"].unique())
    values = []
    if n_boot > 0 and len(points) >= 2:
        values = [
            _subject_values(rows[rows["subject"] == s], point_key, points.index, loader, voxel_key)
            for s in subjects
        ]
    rng = np.random.default_rng([int(seed), zlib.crc32(f"{dataset}/{fit}/{group}".encode())])
    result = extrapolate(
        points["x"].to_numpy(), points["y"].to_numpy(), values, target, n_boot, rng
    )
    return {
        "dataset": dataset,
        "fit": fit,
        "group": group,
        "x_variable": x_col,
        "y_variable": y_column,
        "n_points": len(points),
        "n_subjects": len(subjects),
        **result,
        **_n_columns(rows),
        "resampling": inference.RESAMPLING,
    }


def _n_columns(rows: pd.DataFrame) -> dict:
    """n_voxels (summed over subjects), n_train_stories (largest), n_test_stories."""
    out = sample_sizes(rows, sorted(rows["subject"].unique()))
    return {k: out[k] for k in ("n_voxels", "n_train_stories", "n_test_stories")}


def _subject_values(rows, point_key, index, loader, voxel_key) -> np.ndarray:
    """(n_points, n_voxels) per-voxel values of one subject (NaN rows for missing points)."""
    arrays = {}
    for _, r in rows.iterrows():
        data = loader(r["fit_path"])
        if voxel_key not in data:
            raise InputError(r["fit_path"], f"per-voxel arrays lack '{voxel_key}'")
        arrays[r[point_key]] = np.asarray(data[voxel_key], float).ravel()
    sizes = {a.size for a in arrays.values()}
    if len(sizes) != 1:
        raise InputError(rows["fit_path"].iloc[0], f"fits of one subject differ in voxels {sizes}")
    n_vox = sizes.pop()
    out = np.full((len(index), n_vox), np.nan)
    for i, key in enumerate(index):
        if key in arrays:
            out[i] = arrays[key]
    return out
