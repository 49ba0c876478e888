"""Per-voxel prediction scores on held-out data, and robust summaries.

All scores are computed column-wise (one column per voxel) in float64. A
voxel whose observed or predicted time course is constant, or contains a
NaN, has an undefined score and gets NaN -- silently, without numpy
warnings. Summaries then exclude (and count) the undefined voxels, so one bad
voxel never turns a mean into NaN.
"""

from __future__ import annotations

import numpy as np

#: A column is constant when its std is at most this fraction of its largest
#: absolute value (absorbs round-off in the mean of identical values).
CONSTANT_RTOL = 1e-12


def _as_columns(a: np.ndarray) -> np.ndarray:
    """View a 1-D or 2-D array as float64 columns (n_samples, n_columns)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        return a[:, None]
    if a.ndim != 2:
        raise ValueError(f"expected a 1-D or 2-D array, got shape {a.shape}")
    return a


def _centered(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-centred copy of ``a`` and a mask of constant (or non-finite) columns."""
    with np.errstate(invalid="ignore"):
        centred = a - a.mean(axis=0)
        std = np.sqrt(np.mean(centred**2, axis=0))
        maxabs = np.max(np.abs(a), axis=0)
        bad = ~np.isfinite(std) | (std <= CONSTANT_RTOL * maxabs)
    return centred, bad


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate two arrays of equal shape; return them as columns and whether 1-D."""
    yt, yp = _as_columns(y_true), _as_columns(y_pred)
    if yt.shape != yp.shape:
        raise ValueError(f"shape mismatch: y_true {yt.shape} vs y_pred {yp.shape}")
    return yt, yp, np.ndim(y_true) == 1


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``y_true`` with ``y_pred``.

    Parameters
    ----------
    y_true, y_pred : array_like of shape (n_samples, n_voxels) or (n_samples,)

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), float64
        NaN where either column is constant or contains NaN/inf. A 1-D input
        gives shape (1,).
    """
    yt, yp, _ = _check_pair(y_true, y_pred)
    a, bad_a = _centered(yt)
    b, bad_b = _centered(yp)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.sum(a * b, axis=0) / np.sqrt(np.sum(a**2, axis=0) * np.sum(b**2, axis=0))
    r[bad_a | bad_b] = np.nan
    return np.clip(r, -1.0, 1.0)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination ``1 - SSE / SST`` of each column.

    Parameters
    ----------
    y_true, y_pred : array_like of shape (n_samples, n_voxels) or (n_samples,)

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), float64
        NaN where ``y_true`` is constant or either side is not finite.
    """
    yt, yp, _ = _check_pair(y_true, y_pred)
    a, bad = _centered(yt)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        sse = np.sum((yt - yp) ** 2, axis=0)
        r2 = 1.0 - sse / np.sum(a**2, axis=0)
    r2[bad | ~np.isfinite(sse)] = np.nan
    return r2


def summarize_scores(values: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Mean of the finite scores, with counts of used and excluded voxels.

    Parameters
    ----------
    values : array_like of shape (n_voxels,)
    mask : array_like of bool, shape (n_voxels,), optional
        Voxels to consider; voxels outside it are neither used nor counted.

    Returns
    -------
    dict
        ``{"mean": float, "n_used": int, "n_excluded": int}``: the mean over
        finite values inside the mask, how many there were, and how many
        non-finite values inside the mask were excluded. ``mean`` is NaN
        only when no value is usable.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if mask is not None:
        m = np.asarray(mask, dtype=bool).ravel()
        if m.shape != v.shape:
            raise ValueError(f"mask has {m.size} entries, values have {v.size}")
        v = v[m]
    finite = np.isfinite(v)
    n_used = int(finite.sum())
    mean = float(v[finite].mean()) if n_used else float("nan")
    return {"mean": mean, "n_used": n_used, "n_excluded": int(v.size - n_used)}


def normalized_r(r: np.ndarray, cc_max: np.ndarray, min_cc_max: float = 0.1) -> np.ndarray:
    """Correlation divided by the noise ceiling, where the ceiling is usable.

    Parameters
    ----------
    r : array_like of shape (n_voxels,)
        Prediction correlations.
    cc_max : array_like of shape (n_voxels,)
        Noise ceilings (see :func:`lmbrain.ceilings.cc_max`).
    min_cc_max : float, default 0.1
        Ceilings below this (or non-finite) give NaN: dividing by a tiny,
        noisy ceiling would produce meaningless, huge ratios.

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), float64
    """
    r = np.asarray(r, dtype=np.float64)
    cc = np.asarray(cc_max, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(cc) & (cc >= min_cc_max)
        return np.where(ok, r / np.where(ok, cc, 1.0), np.nan)


def reliable_voxels(ceiling: np.ndarray, fraction: float = 0.25) -> np.ndarray:
    """Mask of the most reliable voxels: the top ``fraction`` by noise ceiling.

    Bonnasse-Gahot & Pallier (2024) summarise brain scores on the 25% of voxels with the
    highest reliability (issue 13, seed 001); here the ceiling is the
    dataset's ``cc_max`` (an inter-subject correlation where no repeats exist).

    Parameters
    ----------
    ceiling : array_like of shape (n_voxels,)
        Per-voxel reliability (``cc_max``); non-finite voxels are never selected.
    fraction : float, default 0.25
        Share of the finite voxels to keep, in (0, 1]; ``ceil(fraction * n_finite)`` voxels
        (ties at the threshold broken by voxel order).

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), bool
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"reliable fraction must be in (0, 1], got {fraction}")
    c = np.asarray(ceiling, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(c))
    keep = int(np.ceil(fraction * finite.size))
    mask = np.zeros(c.shape, dtype=bool)
    if keep:
        order = finite[np.argsort(-c[finite], kind="stable")]
        mask[order[:keep]] = True
    return mask


def paper_summaries(
    r: np.ndarray,
    r_norm: np.ndarray,
    hemisphere: np.ndarray,
    ceiling: np.ndarray,
    reliable_fraction: float = 0.25,
) -> dict:
    """The seed papers' voxel summaries of one fit's test scores.

    - ``mean_signed_r2``: mean over voxels of ``sign(r) * r**2`` (Antonello, Vaidya & Huth
      2023's metric, issue 13 seed 000: average signed r²; voxels with a negative
      r count against the model instead of adding variance).
    - ``mean_r2_norm``: mean of ``sign(r) * (r / cc_max)**2`` over the voxels whose ceiling is
      usable (``r_norm`` finite): the signed r² as a share of the explainable variance
      cc_max², the y of the paper's extrapolation to the ceiling.
    - ``mean_r_reliable`` (and ``_left``/``_right``): mean r over the top
      ``reliable_fraction`` of voxels by ceiling (:func:`reliable_voxels`; Bonnasse-Gahot &
      Pallier 2024), ``n_voxels_reliable`` their number.
    - ``mean_r_norm_left`` / ``mean_r_norm_right``: mean ``r / cc_max`` over each
      hemisphere's usable voxels (the same paper's ceiling-normalised asymmetry).

    Parameters
    ----------
    r, r_norm : array_like of shape (n_voxels,)
        Test correlations and the ceiling-normalised ones (:func:`normalized_r`).
    hemisphere : array_like of shape (n_voxels,)
        ``"L"`` / ``"R"`` per voxel.
    ceiling : array_like of shape (n_voxels,)
        ``cc_max`` per voxel (NaN where unknown: the reliable summaries are then NaN).
    reliable_fraction : float, default 0.25

    Returns
    -------
    dict
    """
    r = np.asarray(r, dtype=np.float64)
    r_norm = np.asarray(r_norm, dtype=np.float64)
    hemi = np.asarray(hemisphere)
    reliable = reliable_voxels(ceiling, reliable_fraction)
    return {
        "mean_signed_r2": summarize_scores(np.sign(r) * r**2)["mean"],
        "mean_r2_norm": summarize_scores(np.sign(r_norm) * r_norm**2)["mean"],
        "mean_r_norm_left": summarize_scores(r_norm, hemi == "L")["mean"],
        "mean_r_norm_right": summarize_scores(r_norm, hemi == "R")["mean"],
        "mean_r_reliable": summarize_scores(r, reliable)["mean"],
        "mean_r_reliable_left": summarize_scores(r, reliable & (hemi == "L"))["mean"],
        "mean_r_reliable_right": summarize_scores(r, reliable & (hemi == "R"))["mean"],
        "n_voxels_reliable": int(reliable.sum()),
    }


def hemisphere_selections(hemisphere) -> list[tuple[str, np.ndarray]]:
    """``("all", both), ("L", left), ("R", right)`` voxel masks, the empty ones left out.

    Parameters
    ----------
    hemisphere : array-like of str
        ``L`` or ``R`` per voxel.

    Returns
    -------
    list of (str, numpy.ndarray of bool)
        The labels summary tables use in their ``hemisphere`` column, with their masks.
    """
    hemi = np.asarray(hemisphere).astype(str)
    selections = [("all", np.ones(hemi.shape, bool)), ("L", hemi == "L"), ("R", hemi == "R")]
    return [(label, sel) for label, sel in selections if sel.any()]
