"""The best-layer table (``summary/best_layers.tsv``): which layer predicts the brain best.

For every (dataset, subject, model, train fraction) the layer with the highest
cross-validated score on the training stories (:func:`lmbrain.aggregate.best_layers`, so the
test story never chooses it), its relative depth and its test score; then one row per
(dataset, model, train fraction) with the mean over subjects (``subject = "mean"``). Beside
it, the per-voxel best layer of the map jobs (Bonnasse-Gahot & Pallier 2024 pick a layer per
voxel; :mod:`lmbrain.voxel_layers`, ``voxel-best-layer_frac-<f>.tsv``): the mean and median
over voxels of each voxel's best depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lmbrain.aggregate import best_layers
from lmbrain.config import fraction_label
from lmbrain.errors import InputError
from lmbrain.xvariables import META_PREFIX

MEAN_SUBJECT = "mean"
"""``subject`` of the rows that average over subjects."""

VOXEL_COLUMNS = {
    "mean_best_depth": "voxel_mean_best_depth",
    "median_best_depth": "voxel_median_best_depth",
    "mean_r_voxel_best": "voxel_mean_r",
    "n_voxels": "voxel_n_voxels",
}
"""Columns of a ``voxel-best-layer_frac-<f>.tsv`` and their names in the table."""

KEYS = ["dataset", "subject", "model", "train_fraction"]

COLUMNS = (
    "dataset",
    "subject",
    "model",
    "family",
    "untrained",
    "train_fraction",
    "n_layers",
    "best_layer",
    "best_depth",
    "best_depth_sem",
    "mean_cv_score",
    "mean_r",
    "mean_r_sem",
    "mean_r_left",
    "mean_r_right",
    "n_subjects",
    "n_voxels",
    *VOXEL_COLUMNS.values(),
)
"""Columns of :func:`best_layer_table` (then the ``meta_<key>`` columns of the scores)."""


def read_voxel_best_layer_rows(map_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The summary rows of the per-voxel best layer in the map folders.

    Parameters
    ----------
    map_dirs : sequence of str or Path
        Map folders ``maps/<subject>/<model>`` (outputs of the ``brain_maps`` jobs); each
        ``voxel-best-layer_frac-<f>.tsv`` in them gives one row.

    Returns
    -------
    pandas.DataFrame
        ``subject``, ``model`` (from the folder names), ``train_fraction`` and the columns of
        :data:`VOXEL_COLUMNS` (renamed); empty when no folder has one.

    Raises
    ------
    InputError
        Naming a summary that cannot be read or lacks a column.
    """
    rows = []
    for folder in map(Path, map_dirs):
        for path in sorted(folder.glob("voxel-best-layer_frac-*.tsv")):
            try:
                table = pd.read_csv(path, sep="\t")
            except (OSError, ValueError) as err:
                raise InputError(
                    path, f"cannot read the per-voxel best-layer summary ({err})"
                ) from err
            missing = sorted({"train_fraction", *VOXEL_COLUMNS} - set(table.columns))
            if missing or len(table) != 1:
                raise InputError(path, f"expected one row with {missing or 'its columns'}")
            row = table.iloc[0]
            rows.append(
                {
                    "subject": folder.parent.name,
                    "model": folder.name,
                    "train_fraction": float(row["train_fraction"]),
                    **{new: row[old] for old, new in VOXEL_COLUMNS.items()},
                }
            )
    columns = ["subject", "model", "train_fraction", *VOXEL_COLUMNS.values()]
    return pd.DataFrame(rows, columns=columns)


def best_layer_table(scores: pd.DataFrame, voxel_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Best layer by CV score of every (dataset, subject, model, train fraction), and means.

    Parameters
    ----------
    scores : pandas.DataFrame
        The score table (``summary/scores.tsv``; every layer of every fit).
    voxel_rows : pandas.DataFrame, optional
        :func:`read_voxel_best_layer_rows` (one dataset's); absent or empty leaves the
        ``voxel_*`` columns NaN.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, then the scores' ``meta_<key>`` columns. Subject rows:
        ``best_layer`` (ties to the shallower layer), ``best_depth`` = best_layer / n_layers,
        its ``mean_cv_score`` and test ``mean_r`` (``mean_r_left``/``_right``),
        ``n_subjects`` 1, ``n_voxels``, and the per-voxel best depth of that fit's map job
        (``voxel_mean_best_depth``, ``voxel_median_best_depth``, ``voxel_mean_r`` the mean
        test r at each voxel's own layer, ``voxel_n_voxels``). Rows with ``subject="mean"``:
        means over subjects of every number (``best_layer`` may then be fractional), with the
        SEM of ``best_depth`` and ``mean_r`` (NaN with one subject), ``n_subjects``, and
        ``n_voxels`` and ``voxel_n_voxels`` summed over subjects. Sorted by dataset, model, train fraction, subject
        (the mean row last).
    """
    best = best_layers(scores).copy()
    meta = sorted(c for c in best.columns if c.startswith(META_PREFIX))
    best["best_layer"] = best["layer"]
    best["best_depth"] = best["depth"]
    best["n_subjects"] = 1
    best["best_depth_sem"] = best["mean_r_sem"] = np.nan
    best["_frac"] = best["train_fraction"].map(fraction_label)
    if voxel_rows is not None and len(voxel_rows):
        vox = voxel_rows.assign(_frac=voxel_rows["train_fraction"].map(fraction_label))
        vox = vox.drop(columns="train_fraction")
        best = best.merge(vox, on=["subject", "model", "_frac"], how="left")
    for column in VOXEL_COLUMNS.values():
        if column not in best.columns:
            best[column] = np.nan
    means = _subject_means(best, meta)
    table = pd.concat([best, means], ignore_index=True) if len(means) else best
    table["_mean_last"] = table.index >= len(best)
    table = table.sort_values(
        ["dataset", "model", "train_fraction", "_mean_last", "subject"], kind="mergesort"
    )
    table = table[list(COLUMNS) + meta].reset_index(drop=True)
    ints = ["n_subjects", "n_voxels"]
    return table.astype(dict.fromkeys(ints, "int64"))


def _subject_means(best: pd.DataFrame, meta: list[str]) -> pd.DataFrame:
    """One row per (dataset, model, train fraction): means over its subject rows."""
    if best.empty:
        return best.iloc[0:0]
    numbers = [
        "n_layers",
        "best_layer",
        "best_depth",
        "mean_cv_score",
        "mean_r",
        "mean_r_left",
        "mean_r_right",
        *[c for c in VOXEL_COLUMNS.values() if c != "voxel_n_voxels"],
        *meta,
    ]
    grouped = best.groupby(["dataset", "model", "train_fraction"], sort=True)
    out = grouped[numbers].mean()
    out["best_depth_sem"] = grouped["best_depth"].agg(_sem)
    out["mean_r_sem"] = grouped["mean_r"].agg(_sem)
    out["n_subjects"] = grouped["subject"].nunique()
    out["n_voxels"] = grouped["n_voxels"].sum()
    out["voxel_n_voxels"] = grouped["voxel_n_voxels"].sum(min_count=1)
    out["family"] = grouped["family"].first()
    out["untrained"] = grouped["untrained"].first()
    out = out.reset_index()
    out["subject"] = MEAN_SUBJECT
    return out


def _sem(values: pd.Series) -> float:
    finite = values[np.isfinite(values.to_numpy(dtype=float))]
    if len(finite) < 2:
        return float("nan")
    return float(finite.std(ddof=1) / np.sqrt(len(finite)))
