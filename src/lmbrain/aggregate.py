"""Summary tables and log-linear scaling fits with a voxel bootstrap.

The pipeline writes one JSON "score row" per fit (dataset, subject, model, layer, train
fraction) and one ``.npz`` of per-voxel arrays. This module

- reads the score rows into one table (:func:`read_score_rows`),
- picks the best layer of every (dataset, subject, model, train fraction) by the
  cross-validated score (:func:`best_layers`),
- fits brain score = a + b * log10(x) (:func:`loglinear_fit`), where x is the number of
  parameters or of training TRs, or a model metadata value (log10 or linear;
  :mod:`lmbrain.xvariables`), and
- puts a bootstrap confidence interval on the slope b by resampling voxels
  (:func:`bootstrap_slope`, :func:`scaling_fits`).

The slope b reads "change of mean test correlation per decade (10x) of x".

About the confidence intervals (:mod:`lmbrain.inference`): the headline ``slope_ci_low`` /
``slope_ci_high`` come from a hierarchical bootstrap -- subjects with replacement, then voxels
with replacement within each drawn subject -- so they say how the slope would vary over new
subjects; they need at least 3 subjects (NaN and a ``note`` otherwise). The subject-only and
voxel-only intervals are reported beside them (``*_subjects``, ``*_voxels``). Every point
of a fit is scored on the same voxels of a subject (several models, or several amounts of
training data), so voxels are resampled *paired*: the same resampled voxel indices serve
every point. Each subject's own slope is also tested against 0 across subjects (t-test and
sign-flip permutation).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lmbrain import inference, xvariables
from lmbrain.errors import ConfigError, InputError
from lmbrain.scoring import hemisphere_selections, reliable_voxels

SCORE_COLUMNS: tuple[str, ...] = (
    "dataset",
    "subject",
    "model",
    "family",
    "untrained",
    "n_params",
    "n_params_nonembedding",
    "n_layers",
    "layer",
    "depth",
    "train_fraction",
    "n_train_stories",
    "n_train_trs",
    "n_voxels",
    "mean_r",
    "mean_r_left",
    "mean_r_right",
    "mean_r2",
    "mean_r_norm",
    "n_voxels_excluded",
    "n_voxels_ceiling",
    "mean_cv_score",
    "fit_path",
)
"""Keys every score row must have, in the column order of :func:`read_score_rows`."""

FIT_COLUMNS: tuple[str, ...] = (
    "dataset",
    "fit",
    "group",
    "x_variable",
    "y_variable",
    "slope",
    "intercept",
    "slope_ci_low",
    "slope_ci_high",
    "r2",
    "n_points",
    "n_boot",
    "slope_ci_low_subjects",
    "slope_ci_high_subjects",
    "slope_ci_low_voxels",
    "slope_ci_high_voxels",
    "slope_t",
    "slope_t_p",
    "slope_signflip_p",
    "n_subjects",
    "n_voxels",
    "n_train_stories",
    "n_test_stories",
    "resampling",
    "note",
    "modality",
    "x_scale",
)
"""Columns of the table :func:`scaling_fits` returns."""

METRICS: dict[str, str] = {
    "r": "mean_r",
    "signed_r2": "mean_signed_r2",
    "r2_norm": "mean_r2_norm",
    "reliable": "mean_r_reliable",
}
"""Brain-score metrics of the scaling fits (``aggregate.metrics``) and their score column:
``r`` the mean voxel correlation, ``signed_r2`` the mean sign(r)·r² (Antonello, Vaidya &
Huth 2023), ``r2_norm`` the mean signed (r / cc_max)², ``reliable`` the mean r over the top
``scoring.reliable_fraction`` of voxels by ceiling (Bonnasse-Gahot & Pallier 2024); see
:func:`lmbrain.scoring.paper_summaries`."""

ALL_MODALITIES = "all"

ASYMMETRY_COLUMNS: dict[str, tuple[str, str]] = {
    "r": ("mean_r_left", "mean_r_right"),
    "reliable": ("mean_r_reliable_left", "mean_r_reliable_right"),
}
"""Left and right columns of the asymmetry fit of each metric that has one: with
``reliable`` in ``aggregate.metrics``, the left - right asymmetry on the reliable voxels
(Bonnasse-Gahot & Pallier 2024), ``y_variable="mean_r_reliable_left_minus_right"``."""

SORT_KEYS = ["dataset", "subject", "model", "layer", "train_fraction"]
GROUP_KEYS = ["dataset", "subject", "model", "train_fraction"]
TRAINED = "trained"

_STR_COLUMNS = ("dataset", "subject", "model", "family", "fit_path")
_INT_COLUMNS = (
    "n_params",
    "n_params_nonembedding",
    "n_layers",
    "layer",
    "n_train_stories",
    "n_train_trs",
    "n_voxels",
    "n_voxels_excluded",
    "n_voxels_ceiling",
)
_FLOAT_COLUMNS = tuple(
    c for c in SCORE_COLUMNS if c not in _STR_COLUMNS + _INT_COLUMNS + ("untrained",)
)
_BOOT_CHUNK_ELEMENTS = 4_000_000  # resampled indices held at once (bounds memory)


class ScoreRowError(InputError, ValueError):
    """A score-row JSON file is missing, unreadable or lacks required keys."""


# --------------------------------------------------------------------------- reading


def read_score_rows(json_paths: Sequence[str | Path]) -> pd.DataFrame:
    """Read score-row JSON files into one table.

    Parameters
    ----------
    json_paths : sequence of str or Path
        One JSON object per fit, each with at least the keys :data:`SCORE_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        One row per file, columns :data:`SCORE_COLUMNS` first (in that order), then any
        extra keys in sorted order; sorted by (dataset, subject, model, layer,
        train_fraction) with a fresh index. ``null`` numbers become NaN.

    Raises
    ------
    ScoreRowError
        (a ``ValueError`` and an :class:`~lmbrain.errors.InputError`) naming the file
        when it cannot be read, is not a JSON object, lacks a required key or has a
        non-boolean ``untrained``.
    """
    rows = [_read_one_row(Path(p)) for p in json_paths]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=_column_dtype(c)) for c in SCORE_COLUMNS})
    table = pd.DataFrame(rows)
    extra = sorted(c for c in table.columns if c not in SCORE_COLUMNS)
    table = table[list(SCORE_COLUMNS) + extra]
    table = _coerce_types(table)
    return table.sort_values(SORT_KEYS, kind="mergesort").reset_index(drop=True)


def _read_one_row(path: Path) -> dict:
    try:
        row = json.loads(path.read_text())
    except OSError as err:
        raise ScoreRowError(path, f"cannot read score row ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise ScoreRowError(path, f"not valid JSON ({err.msg}, line {err.lineno})") from err
    if not isinstance(row, dict):
        raise ScoreRowError(path, "a score row must be a JSON object")
    row.pop("provenance", None)  # software versions and model revision: not a score column
    missing = [k for k in SCORE_COLUMNS if k not in row]
    if missing:
        raise ScoreRowError(path, f"score row lacks required key(s): {', '.join(missing)}")
    if not isinstance(row["untrained"], bool):
        raise ScoreRowError(path, f"'untrained' must be true or false, got {row['untrained']!r}")
    return row


def _column_dtype(column: str) -> str:
    if column in _STR_COLUMNS:
        return "object"
    if column == "untrained":
        return "bool"
    return "int64" if column in _INT_COLUMNS else "float64"


def _coerce_types(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for col in _INT_COLUMNS + _FLOAT_COLUMNS:
        values = pd.to_numeric(table[col], errors="coerce")
        table[col] = values.astype("float64") if col in _FLOAT_COLUMNS else values
    for col in _STR_COLUMNS:
        table[col] = table[col].where(table[col].isna(), table[col].astype(str))
    table["untrained"] = table["untrained"].astype(bool)
    return table


# --------------------------------------------------------------------------- layers


def best_layers(scores: pd.DataFrame, by: str = "mean_cv_score") -> pd.DataFrame:
    """Keep the best layer of every (dataset, subject, model, train_fraction).

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows, as from :func:`read_score_rows`.
    by : str
        Column whose maximum picks the layer. The default, ``"mean_cv_score"``, is the
        cross-validated score on the *training* stories, so the choice does not look at
        the test story and the test correlation of the chosen layer is an unbiased
        estimate. ``by="mean_r"`` picks by the test score itself, which is optimistic
        (max over layers of noisy estimates); use it only for comparison.

    Returns
    -------
    pandas.DataFrame
        The selected rows (all columns), sorted like the input, with a fresh index.
        Ties go to the lowest layer. Rows whose ``by`` value is NaN are never chosen;
        a group in which every layer is NaN is left out.

    Raises
    ------
    ValueError
        If ``by`` is not a column of ``scores``.
    """
    if by not in scores.columns:
        raise ValueError(f"best_layers: no column {by!r} to select layers by")
    scores = scores.reset_index(drop=True)
    valid = scores[np.isfinite(pd.to_numeric(scores[by], errors="coerce"))]
    if valid.empty:
        return scores.iloc[0:0].reset_index(drop=True)
    ordered = valid.sort_values(SORT_KEYS, kind="mergesort")
    best_index = ordered.groupby(GROUP_KEYS, sort=False)[by].idxmax()
    chosen = scores.loc[best_index.to_numpy()]
    return chosen.sort_values(SORT_KEYS, kind="mergesort").reset_index(drop=True)


def largest_fraction(scores: pd.DataFrame) -> pd.Series:
    """Largest train fraction of each dataset.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (all models, trained and untrained).

    Returns
    -------
    pandas.Series
        Indexed by dataset: the largest ``train_fraction`` found in its rows.
    """
    return scores.groupby("dataset")["train_fraction"].max()


def at_largest_fraction(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``scores`` at the largest train fraction of their dataset."""
    fmax = scores["dataset"].map(largest_fraction(scores))
    return scores[scores["train_fraction"] == fmax]


def model_summary(scores: pd.DataFrame, by: str = "mean_cv_score") -> pd.DataFrame:
    """Best-layer scores of every model at the largest train fraction, over subjects.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows, as from :func:`read_score_rows`.
    by : str
        Layer-selection column, passed to :func:`best_layers`.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, model) with family, untrained, n_params, n_subjects and,
        for ``mean_r`` and ``asym`` (= mean_r_left - mean_r_right): the mean over subjects
        and its standard error (``*_sem``, NaN with a single subject).
    """
    best = at_largest_fraction(best_layers(scores, by=by)).copy()
    best["asym"] = best["mean_r_left"] - best["mean_r_right"]
    grouped = best.groupby(["dataset", "model"], sort=True)
    out = grouped.agg(
        family=("family", "first"),
        untrained=("untrained", "first"),
        n_params=("n_params", "first"),
        n_subjects=("subject", "nunique"),
        mean_r=("mean_r", "mean"),
        mean_r_sem=("mean_r", _sem),
        asym=("asym", "mean"),
        asym_sem=("asym", _sem),
    )
    return out.reset_index()


def _sem(values: pd.Series) -> float:
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return float("nan")
    return float(finite.std(ddof=1) / np.sqrt(len(finite)))


# --------------------------------------------------------------------------- fits


def loglinear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares fit of ``y = a + b * log10(x)``.

    Parameters
    ----------
    x : array_like
        Positive predictor values (number of parameters, of training TRs, ...).
    y : array_like
        Responses, same length as ``x``.

    Returns
    -------
    slope : float
        b, the change of y per decade of x.
    intercept : float
        a, the value of y at x = 1.
    r2 : float
        Coefficient of determination of the fit (NaN if y is constant).

    Notes
    -----
    Pairs with a non-finite x or y are dropped. With fewer than two distinct x values
    left, all three results are NaN.

    Raises
    ------
    ValueError
        If the lengths differ or a finite x is not positive.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"loglinear_fit: x has {x.size} values but y has {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    if np.any(x[keep] <= 0):
        raise ValueError("loglinear_fit: x must be positive to take log10")
    return fit_line(np.log10(x[keep]), y[keep])


def fit_line(lx, y) -> tuple[float, float, float]:
    """Least squares ``y = a + b * lx``, ignoring non-finite pairs.

    Returns
    -------
    slope, intercept, r2 : float
        NaN when fewer than two distinct ``lx`` remain; r2 NaN when y is constant up to
        rounding.
    """
    lx, y = np.asarray(lx, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(lx) & np.isfinite(y)
    lx, y = lx[keep], y[keep]
    if np.unique(lx).size < 2:
        return float("nan"), float("nan"), float("nan")
    dx, dy = lx - lx.mean(), y - y.mean()
    slope = float(dx @ dy / (dx @ dx))
    intercept = float(y.mean() - slope * lx.mean())
    ss_tot = float(dy @ dy)
    ss_res = float(np.sum((dy - slope * dx) ** 2))
    return slope, intercept, _r2(ss_res, ss_tot, y)


def _r2(ss_res: float, ss_tot: float, y: np.ndarray) -> float:
    """1 - SS_res / SS_tot; NaN when y is constant up to rounding."""
    if ss_tot <= 1e-20 * float(np.sum(y**2)) or ss_tot == 0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def _slopes(lx: np.ndarray, ys: np.ndarray, point_groups: np.ndarray) -> np.ndarray:
    """Least-squares slopes of every row of ``ys`` (n_rows, n_points) on ``lx``.

    Points are centred within their group (``point_groups``), which gives one common
    slope with a free intercept per group (a fixed-effects fit); with a single group it is
    the ordinary slope. Non-finite ys are left out row by row; a row without spread in x
    gets NaN.
    """
    ys = np.atleast_2d(ys)
    num = np.zeros(ys.shape[0])
    den = np.zeros(ys.shape[0])
    for g in np.unique(point_groups):
        cols = point_groups == g
        y_g, w = ys[:, cols], np.isfinite(ys[:, cols])
        n = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = np.where(w, lx[cols], 0.0).sum(axis=1) / n
            my = np.where(w, y_g, 0.0).sum(axis=1) / n
        dx = np.where(w, lx[cols] - mx[:, None], 0.0)
        dy = np.where(w, y_g - my[:, None], 0.0)
        num += (dx * dy).sum(axis=1)
        den += (dx * dx).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, num / den, np.nan)


def _pooled_fit(lx: np.ndarray, y: np.ndarray, point_groups: np.ndarray) -> tuple[float, ...]:
    """Common slope across groups (fixed effects); intercept at the grand means; within R^2."""
    slope = float(_slopes(lx, y[None, :], point_groups)[0])
    if not np.isfinite(slope):
        return float("nan"), float("nan"), float("nan")
    ss_res = ss_tot = 0.0
    for g in np.unique(point_groups):
        cols = point_groups == g
        dx, dy = lx[cols] - lx[cols].mean(), y[cols] - y[cols].mean()
        ss_res += float(np.sum((dy - slope * dx) ** 2))
        ss_tot += float(dy @ dy)
    intercept = float(y.mean() - slope * lx.mean())
    return slope, intercept, _r2(ss_res, ss_tot, y)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_slope(
    x_per_point: Sequence[float],
    voxel_values: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    groups: Sequence | None = None,
) -> tuple[float, float]:
    """Paired voxel-bootstrap confidence interval of a log-linear slope.

    Parameters
    ----------
    x_per_point : array_like, shape (n_points,)
        Positive x of every point (e.g. parameter counts of several models).
    voxel_values : sequence of arrays, each shape (n_voxels,)
        Per-voxel values (e.g. test r) of every point, for the *same* voxels in the same
        order: several models scored on one subject's voxels. Several subjects may be
        stacked by concatenating their voxels (identically for every point).
    n_boot : int
        Number of bootstrap resamples.
    seed : int
        Seed of the numpy random generator (same seed, same interval).
    ci : float
        Coverage of the percentile interval, in (0, 1).
    groups : array_like, shape (n_voxels,), optional
        Voxel strata (e.g. subject labels). If given, voxels are resampled within each
        stratum and a point's value is the mean over strata of the stratum means;
        by default all voxels form one stratum, so stacked subjects are pooled by
        concatenation (weighted by their voxel counts).

    Returns
    -------
    ci_low, ci_high : float
        Percentiles (1 - ci) / 2 and (1 + ci) / 2 of the bootstrap slopes; NaN when no
        resample gives a slope (fewer than two distinct x values, n_boot = 0).

    Notes
    -----
    Each resample draws voxel indices with replacement, the same indices for every point
    (paired bootstrap, so variability shared by all points cancels out of the slope),
    recomputes every point's mean (ignoring NaN voxels) and refits the slope. The interval
    reflects voxel sampling variability only, not variability over subjects.
    """
    values = _stack_points(voxel_values)
    lx = _log10_positive(x_per_point, values.shape[0])
    labels = np.zeros(values.shape[1]) if groups is None else np.asarray(groups)
    if labels.shape != (values.shape[1],):
        raise ValueError(
            f"bootstrap_slope: groups must have one label per voxel ({values.shape[1]})"
        )
    _check_ci(ci)
    strata = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    means = _boot_stratum_means(values, strata, n_boot, np.random.default_rng(seed))
    ys = _nanmean(means, axis=2)
    return _percentile_ci(_slopes(lx, ys, np.zeros(lx.size)), ci)


def _stack_points(voxel_values: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in voxel_values]
    if not arrays:
        raise ValueError("bootstrap_slope: no points given")
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ValueError(
            f"bootstrap_slope: every point needs the same voxels, got sizes {sorted(sizes)}"
        )
    return np.vstack(arrays)


def _log10_positive(x: Sequence[float], n_points: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size != n_points:
        raise ValueError(f"bootstrap_slope: {x.size} x values for {n_points} points")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError("bootstrap_slope: x must be finite and positive")
    return np.log10(x)


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


_boot_stratum_means = inference.stratum_means


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN, NaN (without a warning) where every value is NaN."""
    finite = np.isfinite(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, a, 0.0).sum(axis=axis) / finite.sum(axis=axis)


def _percentile_ci(slopes: np.ndarray, ci: float) -> tuple[float, float]:
    slopes = slopes[np.isfinite(slopes)]
    if slopes.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(slopes, [50 * (1 - ci), 50 * (1 + ci)])
    return float(low), float(high)


# --------------------------------------------------------------------------- scaling fits


def load_fit_voxels(fit_path: str | Path) -> dict[str, np.ndarray]:
    """Load the per-voxel arrays of one fit (``r``, ``hemisphere``, ...) from its ``.npz``.

    Parameters
    ----------
    fit_path : str or Path
        The ``fit_path`` of a score row.

    Returns
    -------
    dict of str to numpy.ndarray
        Every array of the file.
    """
    try:
        with np.load(fit_path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(fit_path, f"cannot read per-voxel arrays ({err})") from err


def voxel_metric(arrays: Mapping[str, np.ndarray], metric: str, reliable_fraction: float = 0.25):
    """Per-voxel values whose mean is the score column of ``metric`` (:data:`METRICS`).

    Used by the scaling fits' voxel bootstrap so that a replicate resamples the same
    quantity as the point estimate: ``r``; ``sign(r) r**2``; ``sign(r_norm) r_norm**2``;
    ``r`` on the reliable voxels (:func:`lmbrain.scoring.reliable_voxels` of ``cc_max``) and
    NaN elsewhere (NaN voxels are skipped by the resampled means).
    """
    r = np.asarray(arrays["r"], dtype=np.float64).ravel()
    if metric == "r":
        return r
    if metric == "signed_r2":
        return np.sign(r) * r**2
    if metric == "r2_norm":
        rn = np.asarray(arrays.get("r_norm", np.full(r.shape, np.nan)), dtype=np.float64)
        return np.sign(rn) * rn**2
    if metric == "reliable":
        cc = np.asarray(arrays.get("cc_max", np.full(r.shape, np.nan)), dtype=np.float64)
        return np.where(reliable_voxels(cc.ravel(), reliable_fraction), r, np.nan)
    raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")


class _VoxelCache:
    """Loads each fit's voxel arrays once: the metric's values as float32, hemisphere as str."""

    def __init__(
        self,
        load_voxels: Callable[[str], dict],
        metric: str = "r",
        reliable_fraction: float = 0.25,
    ):
        self._load = load_voxels
        self._metric = metric
        self._fraction = reliable_fraction
        self._cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def get(self, fit_path: str) -> tuple[np.ndarray, np.ndarray | None]:
        if fit_path not in self._cache:
            arrays = self._load(fit_path)
            if "r" not in arrays:
                raise InputError(fit_path, "per-voxel arrays lack 'r'")
            r = voxel_metric(arrays, self._metric, self._fraction).astype(np.float32)
            hemi = arrays.get("hemisphere")
            if hemi is not None:
                hemi = np.char.upper(np.asarray(hemi).astype(str).ravel())
                if hemi.shape != r.shape:
                    raise InputError(fit_path, f"{hemi.size} hemisphere labels for {r.size} voxels")
            self._cache[fit_path] = (r, hemi)
        return self._cache[fit_path]


def _collect_points(
    rows: pd.DataFrame, point_cols: list[str], x_col: str, y: pd.Series, log: bool = True
):
    """Average rows over subjects into fit points; keep each subject's fit path per point.

    Returns (points, paths, subject_y): ``points`` has the point keys, x and y (finite,
    and x > 0 for a log axis), sorted by key; ``paths`` and ``subject_y`` are (point x
    subject) tables of fit paths and of each subject's own y (NaN where missing).
    """
    data = rows.assign(_x=rows[x_col].astype(np.float64), _y=y.astype(np.float64))
    if data.empty:
        empty = pd.DataFrame(columns=[*point_cols, "x", "y"])
        return empty, pd.DataFrame(index=pd.RangeIndex(0)), pd.DataFrame(index=pd.RangeIndex(0))
    points = data.groupby(point_cols, sort=True).agg(x=("_x", "mean"), y=("_y", "mean"))
    keep = np.isfinite(points["x"]) & np.isfinite(points["y"])
    points = points[keep & (points["x"] > 0)] if log else points[keep]
    paths = data.pivot_table(
        index=point_cols, columns="subject", values="fit_path", aggfunc="first"
    ).reindex(points.index)
    subject_y = data.pivot_table(index=point_cols, columns="subject", values="_y", aggfunc="first")
    subject_y = subject_y.reindex(index=points.index, columns=paths.columns)
    return points.reset_index(), paths.sort_index(axis=1), subject_y.sort_index(axis=1)


def _subject_matrix(paths: pd.Series, cache: _VoxelCache):
    """Stack one subject's voxel r over points (NaN rows where a point lacks this subject)."""
    present = [p for p in paths if isinstance(p, str)]
    r0, hemi = cache.get(present[0])
    values = np.full((len(paths), r0.size), np.nan)
    for i, p in enumerate(paths):
        if not isinstance(p, str):
            continue
        r, h = cache.get(p)
        if r.size != r0.size:
            raise InputError(
                p,
                f"has {r.size} voxels but {present[0]} has {r0.size}; a paired bootstrap "
                "needs every fit of a subject on the same voxels",
            )
        values[i] = r
        hemi = h if hemi is None else hemi
    return values, hemi


def _subject_arrays(paths: pd.DataFrame, kind: str, cache):
    """Per subject with a fit: its (n_points, n_voxels) values and voxel strata.

    ``kind="mean_r"``: one stratum of all voxels. ``kind="asymmetry"``: left and right
    voxels, resampled separately (a subject's value is left - right).
    """
    values, strata = [], []
    for subject in paths.columns:
        if not paths[subject].map(lambda p: isinstance(p, str)).any():
            continue
        v, hemi = _subject_matrix(paths[subject], cache)
        if kind == "mean_r":
            st = [np.arange(v.shape[1])]
        elif hemi is None:
            raise InputError(paths[subject].dropna().iloc[0], "per-voxel arrays lack 'hemisphere'")
        else:
            st = [np.flatnonzero(hemi == "L"), np.flatnonzero(hemi == "R")]
        values.append(v)
        strata.append(st)
    return values, strata


def _boot_point_values(values, strata, kind: str, n_boot: int, rng, level: str) -> np.ndarray:
    """Bootstrap replicates (n_boot, n_points) of each point's mean over subjects."""
    means = inference.resample_subject_means(values, n_boot, rng, level, strata)
    per_slot = means[..., 0] if kind == "mean_r" else means[..., 0] - means[..., 1]
    return inference.slot_mean(per_slot)


def _fit_row(spec: dict, points, paths, subject_y, kind: str, boot, groups=None, rows=None):
    """One row of the fit table: point estimate from the score table, CIs and tests.

    ``spec`` holds dataset, fit, group, x_variable and y_variable; ``boot`` is
    (n_boot, seed, voxel cache); ``groups`` labels points sharing an intercept; ``rows``
    are the score rows behind the fit (for the n columns).
    """
    n_boot, seed, cache = boot
    lx = xvariables.x_values(points["x"], spec.get("x_scale", LOG10) == LOG10)
    y = points["y"].to_numpy(dtype=np.float64)
    point_groups = np.zeros(len(points)) if groups is None else np.asarray(groups)
    slope, intercept, r2 = _pooled_fit(lx, y, point_groups)
    subjects = [s for s in subject_y.columns if np.isfinite(subject_y[s].to_numpy(float)).any()]
    n_sub = len(subjects)
    ci = {level: (float("nan"), float("nan")) for level in inference.LEVELS}
    done_boot = 0
    if np.isfinite(slope) and n_boot > 0:
        key = f"{spec['dataset']}/{spec['fit']}/{spec['group']}"
        values, strata = _subject_arrays(paths, kind, cache)
        levels = inference.LEVELS if n_sub >= inference.MIN_SUBJECTS else ("voxels",)
        for i, level in enumerate(levels):
            rng = np.random.default_rng([seed, zlib.crc32(key.encode()), i])
            ys = _boot_point_values(values, strata, kind, n_boot, rng, level)
            ci[level] = _percentile_ci(_slopes(lx, ys, point_groups), 0.95)
        done_boot = n_boot
    per_subject = _slopes(lx, subject_y[subjects].to_numpy(float).T, point_groups)
    key = f"{spec['dataset']}/{spec['fit']}/{spec['group']}/signflip"
    tests = inference.one_sample_tests(
        per_subject, rng=np.random.default_rng([seed, zlib.crc32(key.encode())])
    )
    return {
        **spec,
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "n_points": len(points),
        "n_boot": done_boot,
        **inference.ci_test_columns("slope", ci, tests),
        **sample_sizes(rows, subjects),
        "resampling": inference.RESAMPLING,
        "note": "" if n_sub >= inference.MIN_SUBJECTS else inference.too_few_subjects_note(n_sub),
    }


def sample_sizes(rows: pd.DataFrame | None, subjects: Sequence) -> dict:
    """The n columns of a summary table row, from the score rows behind it.

    Returns
    -------
    dict
        ``n_subjects`` (len of ``subjects``), ``n_voxels`` (each subject's voxel count,
        summed over subjects), ``n_train_stories`` (the largest training set among the
        rows) and ``n_test_stories`` (distinct stories in their ``test_stories``, 0 when
        the rows lack that column).
    """
    out = {"n_subjects": len(subjects), "n_voxels": 0, "n_train_stories": 0, "n_test_stories": 0}
    if rows is None or rows.empty:
        return out
    rows = rows[rows["subject"].isin(subjects)]
    per_subject = rows.groupby("subject")["n_voxels"].max()
    out["n_voxels"] = int(per_subject.sum()) if len(per_subject) else 0
    out["n_train_stories"] = int(rows["n_train_stories"].max()) if len(rows) else 0
    if "test_stories" in rows.columns:
        names = {
            story
            for value in rows["test_stories"].dropna().astype(str)
            for story in value.split(",")
            if story
        }
        out["n_test_stories"] = len(names)
    return out


LOG10 = "log10"
LINEAR = "linear"


def _spec(
    dataset: str, fit: str, group: str, x_variable: str, y_variable: str, log: bool = True
) -> dict:
    return {
        "dataset": dataset,
        "fit": fit,
        "group": group,
        "x_variable": x_variable,
        "y_variable": y_variable,
        "x_scale": LOG10 if log else LINEAR,
    }


def _modality(rows: pd.DataFrame) -> pd.Series:
    """Each row's modality (``text`` where the score rows predate the column)."""
    if "modality" not in rows.columns:
        return pd.Series("text", index=rows.index)
    return rows["modality"].fillna("text").astype(str)


def _params_fit(dataset, group, modality, rows, metric, boot) -> dict:
    column = METRICS[metric]
    spec = _spec(dataset, "params", group, "n_params", column)
    pts, paths, sub_y = _collect_points(rows, ["model"], "n_params", rows[column])
    return {**_fit_row(spec, pts, paths, sub_y, "mean_r", boot, rows=rows), "modality": modality}


def _metadata_fit(dataset, rows, y, y_variable, kind, boot, x_variable: dict) -> dict:
    """Brain score (or asymmetry) against a model-metadata x (``fit=<key>``), as the params
    fit: ``y`` is the score rows' y, ``kind`` ``mean_r`` or ``asymmetry`` (the bootstrap's).

    Models without the key (NaN ``meta_<key>``) are left out and named in ``note``.
    """
    x_col = xvariables.meta_column(x_variable["name"])
    x = rows[x_col] if x_col in rows.columns else pd.Series(np.nan, index=rows.index)
    rows = rows.assign(**{x_col: x, "_y": y})
    missing = sorted(rows.loc[rows[x_col].isna(), "model"].unique())
    rows = rows[rows[x_col].notna()]
    spec = _spec(dataset, x_variable["name"], TRAINED, x_col, y_variable, x_variable["log"])
    pts, paths, sub_y = _collect_points(rows, ["model"], x_col, rows["_y"], x_variable["log"])
    fit = _fit_row(spec, pts, paths, sub_y, kind, boot, rows=rows)
    if missing:
        left_out = f"left out (no metadata '{x_variable['name']}'): {', '.join(missing)}"
        fit["note"] = "; ".join(n for n in (fit["note"], left_out) if n)
    return {**fit, "modality": ALL_MODALITIES}


def _dataset_fits(
    best: pd.DataFrame, dataset: str, boots: dict, x_variables: Sequence[dict] = ()
) -> list[dict]:
    """The params, metadata, data and asymmetry fits of one dataset's best-layer rows.

    ``boots`` maps each metric to its (n_boot, seed, voxel cache); ``r`` comes first.
    ``x_variables`` are the parsed metadata x-axes (:func:`lmbrain.xvariables.parse_x_variables`).
    """
    trained = best[~best["untrained"]]
    top = at_largest_fraction(best)
    top = top[~top["untrained"]]
    modality = _modality(top)
    rows = []
    for metric, boot in boots.items():
        column = METRICS[metric]
        if column not in best.columns:
            continue
        rows.append(_params_fit(dataset, TRAINED, ALL_MODALITIES, top, metric, boot))
        for x_variable in x_variables:
            if x_variable["name"] != xvariables.PARAMS:
                fit = _metadata_fit(dataset, top, top[column], column, "mean_r", boot, x_variable)
                rows.append(fit)
        spec = _spec(dataset, "data", TRAINED, "n_train_trs", column)
        keys = ["model", "train_fraction"]
        pts, paths, sub_y = _collect_points(trained, keys, "n_train_trs", trained[column])
        groups = pd.factorize(pts["model"])[0]
        fit = _fit_row(spec, pts, paths, sub_y, "mean_r", boot, groups, rows=trained)
        rows.append({**fit, "modality": ALL_MODALITIES})
        for model in sorted(best["model"].unique()):
            sub = best[best["model"] == model]
            spec = _spec(dataset, "data", model, "n_train_trs", column)
            pts, paths, sub_y = _collect_points(sub, ["train_fraction"], "n_train_trs", sub[column])
            fit = _fit_row(spec, pts, paths, sub_y, "mean_r", boot, rows=sub)
            rows.append({**fit, "modality": ",".join(sorted(set(_modality(sub))))})
        # Antonello et al. (2023) fit text and speech models separately, and each family
        if modality.nunique() > 1:
            for m in sorted(modality.unique()):
                sub = top[modality == m]
                rows.append(_params_fit(dataset, f"modality:{m}", m, sub, metric, boot))
        for family in sorted(top["family"].dropna().unique()):
            sub = top[top["family"] == family]
            if sub["model"].nunique() > 1:
                m = ",".join(sorted(set(_modality(sub))))
                rows.append(_params_fit(dataset, f"family:{family}", m, sub, metric, boot))

    for metric, (left, right) in ASYMMETRY_COLUMNS.items():
        if metric not in boots or left not in top.columns or right not in top.columns:
            continue
        y_variable = f"{left.removesuffix('_left')}_left_minus_right"
        spec = _spec(dataset, "asymmetry", TRAINED, "n_params", y_variable)
        pts, paths, sub_y = _collect_points(top, ["model"], "n_params", top[left] - top[right])
        fit = _fit_row(spec, pts, paths, sub_y, "asymmetry", boots[metric], rows=top)
        rows.append({**fit, "modality": ALL_MODALITIES})
        for x_variable in x_variables:  # the lateralisation against metadata too
            if x_variable["name"] != xvariables.PARAMS:
                asym = top[left] - top[right]
                args = (y_variable, "asymmetry", boots[metric], x_variable)
                rows.append(_metadata_fit(dataset, top, asym, *args))
    return rows


def scaling_fits(
    scores: pd.DataFrame,
    load_voxels: Callable[[str], dict] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    metrics: Sequence[str] = ("r",),
    reliable_fraction: float = 0.25,
    x_variables: Sequence = ("params",),
) -> pd.DataFrame:
    """Log-linear scaling fits of brain score against model size and training data.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows, as from :func:`read_score_rows`. Layers are picked per (dataset,
        subject, model, train fraction) by the cross-validated score (:func:`best_layers`).
    load_voxels : callable, optional
        ``load_voxels(fit_path) -> dict`` with at least ``r`` and, for the asymmetry fit,
        ``hemisphere`` ('L'/'R' per voxel). Defaults to :func:`load_fit_voxels`.
    n_boot : int
        Bootstrap replicates per fit and level (0 skips the intervals).
    seed : int
        Seed; the same seed gives an identical table. Each fit draws from its own stream,
        derived from the seed and the fit's (dataset, fit, group), so adding a model does
        not change the intervals of unrelated fits.
    metrics : sequence of str, default ("r",)
        Brain scores to fit (:data:`METRICS`; ``aggregate.metrics``); ``r`` is always fitted
        first. Each adds its own params and data fits, ``y_variable`` naming its column
        (``mean_signed_r2`` ...); a metric whose column the score table lacks is skipped.
    reliable_fraction : float, default 0.25
        ``scoring.reliable_fraction``, for the ``reliable`` metric's voxel bootstrap.
    x_variables : sequence, default ("params",)
        ``aggregate.x_variables`` (:func:`lmbrain.xvariables.parse_x_variables`): each
        metadata key adds, per metric, a ``fit=<key>`` row fitted like the params fit
        against the score column ``meta_<key>`` (:func:`lmbrain.xvariables.add_metadata_columns`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FIT_COLUMNS`, one row per fit and dataset:

        - ``fit="params"``, ``group="trained"``: mean over subjects of the best-layer
          ``mean_r`` of every trained model at the dataset's largest train fraction,
          against log10(``n_params``). Untrained models are excluded.
        - ``fit="data"``: best-layer ``mean_r`` (mean over subjects) against
          log10(``n_train_trs``) across train fractions, for every model (``group`` = the
          model, untrained models included) and pooled over trained models
          (``group="trained"``: one common slope with a free intercept per model, i.e.
          points centred within model; ``intercept`` is then at the grand means and ``r2``
          is the within-model R^2).
        - ``fit="asymmetry"``, ``group="trained"``: ``mean_r_left - mean_r_right`` as in
          the params fit (``y_variable="mean_r_left_minus_right"``); with the ``reliable``
          metric also on the reliable voxels (``mean_r_reliable_left_minus_right``).
        - ``fit=<metadata key>``, ``group="trained"`` (``aggregate.x_variables``): the
          params fit and the asymmetry fit (``y_variable`` says which) against
          ``x_variable="meta_<key>"``, log10 or linear (``x_scale``); trained models
          without the key are left out and named in ``note``.
        - ``fit="params"``, ``group="modality:<text|audio>"`` (only when both modalities
          are present: Antonello et al. 2023 fit text and speech models separately) and
          ``group="family:<family>"`` (families with two or more trained models).

        ``modality`` is ``all`` for pooled fits, else the modality (or modalities) of the
        fit's models (the feature files' ``modality``; ``text`` for older score rows).
        ``x_scale`` is ``log10`` (y = a + b log10(x)) or ``linear`` (y = a + b x).

        A fit with fewer than two distinct x values has NaN slope, intercept, CI and r2,
        its ``n_points`` (points with finite x > 0 and y) and ``n_boot`` = 0.

        Inference columns (:mod:`lmbrain.inference`): ``slope_ci_low`` / ``slope_ci_high``
        the 95% hierarchical-bootstrap CI (subjects, then voxels within subject);
        ``*_subjects`` the subject-only and ``*_voxels`` the voxel-only CI; ``slope_t``,
        ``slope_t_p`` (one-sample t-test of the subjects' own slopes against 0, two-sided)
        and ``slope_signflip_p`` (sign-flip permutation test of their mean, exact up to 16
        subjects); ``n_subjects``, ``n_voxels`` (summed over subjects), ``n_train_stories``
        (the largest training set of the fit's points), ``n_test_stories``, ``resampling``
        (the headline CI's units) and ``note``. With fewer than 3 subjects the
        hierarchical and subject-only CIs and the tests are NaN and ``note`` says why.

    Notes
    -----
    Point estimates come from the score table (``mean_r`` etc. of the best layers). Every
    bootstrap replicate resamples voxels with replacement within a subject with the same
    draw for every point of the fit (paired over models or train fractions); a point's
    replicate is the mean over the (drawn) subjects of their resampled voxel means,
    mirroring the point estimate. For the asymmetry, left and right voxels are resampled
    separately. Each level (hierarchical, subjects, voxels) has its own random stream.
    """
    loader = load_fit_voxels if load_voxels is None else load_voxels
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ConfigError(
            "aggregate.metrics", f"unknown metric(s) {unknown}; use {sorted(METRICS)}"
        )
    order = ["r", *[m for m in dict.fromkeys(metrics) if m != "r"]]
    boots = {m: (int(n_boot), int(seed), _VoxelCache(loader, m, reliable_fraction)) for m in order}
    xvars = xvariables.parse_x_variables(x_variables)
    best = best_layers(scores)
    rows = []
    for dataset in sorted(best["dataset"].unique()):
        rows.extend(_dataset_fits(best[best["dataset"] == dataset], dataset, boots, xvars))
    table = pd.DataFrame(rows, columns=list(FIT_COLUMNS))
    ints = ("n_points", "n_boot", "n_subjects", "n_voxels", "n_train_stories", "n_test_stories")
    return table.astype(dict.fromkeys(ints, "int64"))


# --------------------------------------------------------------------------- banded models
def banded_summary(voxel_tables: Mapping[tuple[str, str], Mapping[str, np.ndarray]]):
    """One row per (subject, banded model, band, hemisphere) of the banded fits.

    Parameters
    ----------
    voxel_tables : mapping
        ``(subject, name) -> voxels`` as returned by
        :func:`lmbrain.banded.fit_banded_encoding_model`.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject name band hemisphere n_voxels mean_split_r2 mean_unique
        mean_shared mean_joint_r2 frac_voxels_won`` (hemisphere ``all`` pools both), then the
        sample: ``n_subjects`` (1: a row is one subject's mean over voxels),
        ``n_train_stories``, ``n_test_stories`` (from the fit's arrays; -1 for fits written
        before they were stored) and ``resampling`` (``none``: no CI on these rows); NaN
        voxels are left out of the means.
    """
    rows = []
    for (subject, name), vox in sorted(voxel_tables.items()):
        sample = {
            "n_subjects": 1,
            "n_train_stories": int(vox.get("n_train_stories", -1)),
            "n_test_stories": int(vox.get("n_test_stories", -1)),
            "resampling": "none (one subject's mean over voxels)",
        }
        bands = [key[len("split_r2_") :] for key in vox if key.startswith("split_r2_")]
        for label, sel in hemisphere_selections(vox["hemisphere"]):
            for band in bands:
                rows.append(
                    {
                        "subject": subject,
                        "name": name,
                        "band": band,
                        "hemisphere": label,
                        "n_voxels": int(sel.sum()),
                        "mean_split_r2": _finite_mean(vox[f"split_r2_{band}"][sel]),
                        "mean_unique": _finite_mean(vox[f"unique_{band}"][sel]),
                        "mean_shared": _finite_mean(vox["shared"][sel]),
                        "mean_joint_r2": _finite_mean(vox["r2"][sel]),
                        "frac_voxels_won": float(np.mean(np.asarray(vox["winner"])[sel] == band)),
                        **sample,
                    }
                )
    return pd.DataFrame(rows)


def _finite_mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
