"""Regions of interest: which response columns belong to which ROI, and scores per ROI.

ROIs come from one of three sources (:func:`subject_rois`), in this order of precedence:

1. an **atlas** named in the config (``datasets.<name>.roi_atlas``): a NIfTI label image on
   the grid of the subject's mask plus a TSV with columns ``index`` and ``name``
   (:func:`rois_from_atlas`); label 0 is background;
2. **ROI masks** named in the config (``datasets.<name>.roi_masks``, ``{ROI: mask.nii.gz}``),
   binary NIfTI images on the same grid (:func:`rois_from_masks`); masks may overlap;
3. the ``roi`` column of the dataset's voxel table (:func:`rois_from_labels`), empty where a
   voxel has none.

Atlas and masks may be given together (their ROIs are merged); either replaces the voxel
table's column. Paths may contain ``{subject}`` for per-subject files. A membership is a
``dict`` of ROI name to a boolean vector over the subject's response columns.

:func:`roi_scores` summarises one fit per (ROI, hemisphere); :func:`roi_table` does it for
every fit of a score table.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lmbrain.errors import InputError
from lmbrain.geometry import VolumeGeometry

#: ``hemisphere`` values of the ROI table: left, right and both together.
ROI_HEMISPHERES = ("L", "R", "both")

ROI_COLUMNS: tuple[str, ...] = (
    "dataset",
    "subject",
    "model",
    "family",
    "untrained",
    "n_params",
    "layer",
    "depth",
    "train_fraction",
    "roi",
    "hemisphere",
    "n_voxels",
    "n_voxels_ceiling",
    "mean_r",
    "mean_r_norm",
    "n_subjects",
    "n_train_stories",
    "n_test_stories",
    "resampling",
)
"""Columns of :func:`roi_table`."""

_ROW_KEYS = ROI_COLUMNS[: ROI_COLUMNS.index("roi")]
_SAMPLE_KEYS = ("n_train_stories", "n_test_stories")

#: ``resampling`` of an ROI table row: a descriptive mean of one fit, no interval.
ROI_RESAMPLING = "none (one subject's fit, mean over the ROI's voxels)"


def rois_from_labels(labels) -> dict[str, np.ndarray]:
    """Membership from one label per column (empty string: no ROI).

    Parameters
    ----------
    labels : array-like of str, shape (n_columns,)

    Returns
    -------
    dict of str to numpy.ndarray of bool
        One entry per distinct non-empty label, sorted by name.
    """
    labels = np.asarray(labels).astype(str)
    return {name: labels == name for name in sorted(set(labels) - {""})}


def _load_on_grid(path: Path, geometry: VolumeGeometry) -> np.ndarray:
    """Data of a 3-D image that must lie on the mask's grid (shape and affine)."""
    import nibabel as nib

    if not path.is_file():
        raise InputError(path, "ROI image not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for a bad file
        raise InputError(path, f"not a readable NIfTI image ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    shape = tuple(np.shape(geometry.mask))
    if data.shape != shape:
        raise InputError(path, f"shape {data.shape} does not match the subject's mask {shape}")
    if not np.allclose(img.affine, geometry.affine, atol=1e-3):
        raise InputError(path, "affine differs from the subject's mask (not in the same space)")
    return data


def _need_volume(path: Path, geometry) -> VolumeGeometry:
    if not isinstance(geometry, VolumeGeometry):
        raise InputError(path, "a NIfTI ROI image needs volume data (the subject has no mask)")
    return geometry


def read_atlas_labels(path: str | Path) -> dict[int, str]:
    """Read an atlas label table: a TSV with columns ``index`` and ``name``.

    Raises
    ------
    InputError
        If the file is missing, lacks a column, or has a non-integer or repeated index.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "atlas label table not found")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or not {"index", "name"} <= set(rows[0]):
        raise InputError(path, "needs a tab-separated header with `index` and `name` columns")
    out = {}
    for row in rows:
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise InputError(path, f"`index` must be an integer, found {row['index']!r}") from None
        if index in out:
            raise InputError(path, f"index {index} appears twice")
        out[index] = str(row["name"]).strip()
    return out


def rois_from_atlas(
    geometry: VolumeGeometry, atlas: str | Path, labels: str | Path
) -> dict[str, np.ndarray]:
    """Membership from a label image on the mask's grid and its label table.

    Parameters
    ----------
    geometry : VolumeGeometry
        The subject's mask; column ``j`` is its ``j``-th voxel in C order.
    atlas : str or Path
        Integer label image, same shape and affine as the mask; 0 is background.
    labels : str or Path
        TSV with ``index`` and ``name`` (:func:`read_atlas_labels`). Labels sharing a name
        form one ROI.

    Returns
    -------
    dict of str to numpy.ndarray of bool
        ROIs with at least one column, sorted by name.

    Raises
    ------
    InputError
        Naming the atlas when it is not on the mask's grid, not integer-valued, or has a
        nonzero label inside the mask that the table does not name.
    """
    atlas = Path(atlas)
    geometry = _need_volume(atlas, geometry)
    table = read_atlas_labels(labels)
    data = _load_on_grid(atlas, geometry)
    values = np.asarray(data[np.asarray(geometry.mask, dtype=bool)], dtype=np.float64)
    if not np.all(np.isfinite(values) & (values == np.round(values))):
        raise InputError(atlas, "labels must be integers")
    values = values.astype(np.int64)
    unknown = sorted(set(np.unique(values).tolist()) - set(table) - {0})
    if unknown:
        raise InputError(atlas, f"labels {unknown[:10]} are not in {labels}")
    out: dict[str, np.ndarray] = {}
    for index, name in table.items():
        if index == 0:
            continue
        member = values == index
        out[name] = out.get(name, np.zeros(values.size, dtype=bool)) | member
    return {name: out[name] for name in sorted(out) if out[name].any()}


def rois_from_masks(geometry: VolumeGeometry, masks: Mapping[str, str | Path]) -> dict:
    """Membership from one binary image per ROI (nonzero = inside), on the mask's grid."""
    out = {}
    for name in sorted(masks):
        path = Path(masks[name])
        data = _load_on_grid(path, _need_volume(path, geometry))
        out[name] = np.asarray(data[np.asarray(geometry.mask, dtype=bool)] != 0)
    return out


def subject_rois(dataset, subject: str, spec: Mapping | None = None) -> dict[str, np.ndarray]:
    """A subject's ROI membership from the config's atlas/masks or the voxel table.

    Parameters
    ----------
    dataset : dataset adapter
        Provides ``voxels(subject)`` (with ``roi``) and, for atlases and masks,
        ``geometry(subject)``.
    subject : str
    spec : mapping, optional
        The dataset's config entry; ``roi_atlas`` (``{image, labels}``) and ``roi_masks``
        (``{ROI: path}``) are used, paths formatted with ``subject``.

    Returns
    -------
    dict of str to numpy.ndarray of bool
        Possibly empty (no ROI defined).
    """
    spec = spec or {}
    atlas, masks = spec.get("roi_atlas"), spec.get("roi_masks")
    if not atlas and not masks:
        return rois_from_labels(dataset.voxels(subject).get("roi", []))
    geometry = dataset.geometry(subject)
    out: dict[str, np.ndarray] = {}
    if atlas:
        image = str(atlas["image"]).format(subject=subject)
        labels = str(atlas["labels"]).format(subject=subject)
        out.update(rois_from_atlas(geometry, image, labels))
    if masks:
        paths = {k: str(v).format(subject=subject) for k, v in masks.items()}
        out.update(rois_from_masks(geometry, paths))
    return dict(sorted(out.items()))


def roi_scores(voxels: Mapping[str, np.ndarray], rois: Mapping[str, np.ndarray]) -> list[dict]:
    """Mean test r and r / cc_max of one fit in every (ROI, hemisphere).

    Parameters
    ----------
    voxels : mapping
        A fit's arrays: ``r``, ``hemisphere`` and, optionally, ``r_norm`` (NaN where the
        ceiling is unusable).
    rois : mapping of str to bool array
        Membership (:func:`subject_rois`) over the same columns.

    Returns
    -------
    list of dict
        One per ROI and hemisphere in :data:`ROI_HEMISPHERES`: ``roi``, ``hemisphere``,
        ``n_voxels`` (columns of the ROI in that hemisphere), ``n_voxels_ceiling`` (those with
        a finite ``r_norm``), ``mean_r`` (mean of the finite ``r``) and ``mean_r_norm`` (mean
        of the finite ``r_norm``); NaN means with no finite value.
    """
    r = np.asarray(voxels["r"], dtype=np.float64)
    r_norm = np.asarray(voxels.get("r_norm", np.full(r.shape, np.nan)), dtype=np.float64)
    hemi = np.asarray(voxels["hemisphere"]).astype(str)
    sides = {"L": hemi == "L", "R": hemi == "R", "both": np.ones(r.shape, dtype=bool)}
    rows = []
    for name, member in rois.items():
        member = np.asarray(member, dtype=bool)
        if member.shape != r.shape:
            raise ValueError(f"ROI {name!r} covers {member.size} columns but the fit has {r.size}")
        for side in ROI_HEMISPHERES:
            sel = member & sides[side]
            rows.append(
                {
                    "roi": name,
                    "hemisphere": side,
                    "n_voxels": int(sel.sum()),
                    "n_voxels_ceiling": int(np.isfinite(r_norm[sel]).sum()),
                    "mean_r": _finite_mean(r[sel]),
                    "mean_r_norm": _finite_mean(r_norm[sel]),
                }
            )
    return rows


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def roi_table(
    scores: pd.DataFrame,
    rois: Mapping[str, Mapping[str, np.ndarray]],
    load_voxels: Callable[[str], Mapping] | None = None,
) -> pd.DataFrame:
    """ROI scores of every fit of a score table.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (:func:`lmbrain.aggregate.read_score_rows`), with ``fit_path``.
    rois : mapping
        Subject -> membership (:func:`subject_rois`); subjects without ROIs give no rows.
    load_voxels : callable, optional
        ``fit_path -> arrays``; default :func:`lmbrain.aggregate.load_fit_voxels`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ROI_COLUMNS`: one row per (fit, ROI, hemisphere), sorted by
        (dataset, subject, model, layer, train_fraction, roi, hemisphere order). Each row
        states its sample like the other summary tables: ``n_subjects`` (1: a row is one
        subject's fit), ``n_voxels``, ``n_train_stories`` and ``n_test_stories`` (the fit's,
        NaN where the score table lacks them) and ``resampling`` (:data:`ROI_RESAMPLING`: the
        row is a plain mean, with no interval).
    """
    if load_voxels is None:
        from lmbrain.aggregate import load_fit_voxels as load_voxels
    rows = []
    for _, fit in scores.iterrows():
        membership = rois.get(fit["subject"], {})
        if not membership:
            continue
        voxels = load_voxels(fit["fit_path"])
        if np.asarray(voxels["r"]).shape != next(iter(membership.values())).shape:
            raise InputError(
                fit["fit_path"],
                f"has {np.asarray(voxels['r']).size} voxels but subject {fit['subject']}'s "
                f"ROIs cover {next(iter(membership.values())).size}",
            )
        head = {k: fit[k] for k in _ROW_KEYS}
        sample = {"n_subjects": 1, **{k: fit.get(k, np.nan) for k in _SAMPLE_KEYS}}
        sample["resampling"] = ROI_RESAMPLING
        rows += [{**head, **row, **sample} for row in roi_scores(voxels, membership)]
    table = pd.DataFrame(rows, columns=list(ROI_COLUMNS))
    if table.empty:
        return table
    order = {h: i for i, h in enumerate(ROI_HEMISPHERES)}
    keys = ["dataset", "subject", "model", "layer", "train_fraction", "roi", "_h"]
    table = table.assign(_h=table["hemisphere"].map(order))
    return table.sort_values(keys, kind="mergesort").drop(columns="_h").reset_index(drop=True)
