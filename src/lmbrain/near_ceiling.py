"""Which voxels are near their noise ceiling: per-voxel test r against cc_max.

Antonello, Vaidya & Huth (2023, arXiv:2305.11863) compare each voxel's encoding performance
with its noise ceiling and find the largest models near the ceiling in some areas (precuneus,
higher auditory cortex). For the model a subject's map figure shows
(:func:`lmbrain.mapplots.best_fit`: the best trained model at its best layer by the
cross-validated score, largest train fraction), :func:`near_ceiling_rows` counts the voxels
whose ceiling is usable (the fit's ``r_norm`` is finite: ``cc_max`` at least
``scoring.min_cc_max``, :func:`lmbrain.scoring.normalized_r`) and the share of them whose
``r / cc_max`` reaches 0.5 and 0.8, per hemisphere and on both together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lmbrain.aggregate import load_fit_voxels

#: ``r / cc_max`` thresholds of the table's ``frac_ge_*`` columns.
THRESHOLDS = (0.5, 0.8)
COLUMNS = (
    "dataset",
    "subject",
    "model",
    "layer",
    "train_fraction",
    "hemisphere",
    "n_voxels",
    "n_usable_ceiling",
    "frac_ge_0.5",
    "frac_ge_0.8",
    "median_r_norm",
)
"""Columns of :func:`near_ceiling_table`."""


def near_ceiling_rows(
    r_norm: np.ndarray, hemisphere: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> list[dict]:
    """Near-ceiling counts of one fit, for hemispheres ``L``, ``R`` and ``both``.

    Parameters
    ----------
    r_norm : array_like (n_voxels,)
        ``r / cc_max``, NaN where the ceiling is not usable.
    hemisphere : array_like (n_voxels,)
        ``'L'`` / ``'R'`` per voxel.
    thresholds : sequence of float

    Returns
    -------
    list of dict
        One row per hemisphere: ``n_voxels``, ``n_usable_ceiling`` (finite ``r_norm``),
        ``frac_ge_<t>`` (share of the usable voxels with ``r_norm >= t``; NaN when none is
        usable) and ``median_r_norm``.
    """
    rn = np.asarray(r_norm, dtype=np.float64).ravel()
    hemi = np.char.upper(np.asarray(hemisphere).astype(str).ravel())
    if hemi.shape != rn.shape:
        raise ValueError(f"{hemi.size} hemisphere labels for {rn.size} voxels")
    rows = []
    for name, mask in (("L", hemi == "L"), ("R", hemi == "R"), ("both", np.ones_like(rn, bool))):
        usable = rn[mask & np.isfinite(rn)]
        row = {"hemisphere": name, "n_voxels": int(mask.sum()), "n_usable_ceiling": usable.size}
        for t in thresholds:
            row[f"frac_ge_{t:g}"] = float(np.mean(usable >= t)) if usable.size else np.nan
        row["median_r_norm"] = float(np.median(usable)) if usable.size else np.nan
        rows.append(row)
    return rows


def near_ceiling_table(
    fits: pd.DataFrame, load_voxels: Callable[[str], Mapping] = load_fit_voxels
) -> pd.DataFrame:
    """:func:`near_ceiling_rows` of each chosen fit.

    Parameters
    ----------
    fits : pandas.DataFrame
        One score row per subject (the fit to summarise), with ``dataset``, ``subject``,
        ``model``, ``layer``, ``train_fraction`` and ``fit_path``.
    load_voxels : callable
        ``fit_path -> {"r_norm": ..., "hemisphere": ...}``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, three rows (L, R, both) per fit.
    """
    out = []
    for _, fit in fits.iterrows():
        arrays = load_voxels(str(fit["fit_path"]))
        r = np.asarray(arrays["r"])
        rn = np.asarray(arrays.get("r_norm", np.full(r.shape, np.nan)))
        hemi = np.asarray(arrays.get("hemisphere", np.full(r.shape, "")))
        keys = {k: fit[k] for k in ("dataset", "subject", "model", "layer", "train_fraction")}
        out += [{**keys, **row} for row in near_ceiling_rows(rn, hemi)]
    table = pd.DataFrame(out, columns=list(COLUMNS))
    return table.astype({"layer": "int64", "n_voxels": "int64", "n_usable_ceiling": "int64"})
