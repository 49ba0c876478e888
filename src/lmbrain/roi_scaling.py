"""Scaling-law fits and noise-ceiling extrapolation per region of interest.

The whole-brain tables ``summary/scaling_fits.tsv`` (:func:`lmbrain.aggregate.scaling_fits`)
and ``summary/scaling_extrapolation.tsv``
(:func:`lmbrain.extrapolation.scaling_extrapolations`) are repeated here for every ROI of
``summary/scores_roi.tsv`` (:func:`lmbrain.roi.roi_table`), with the same functions and
therefore the same statistics. An *ROI part* is an ROI in one hemisphere (``L``, ``R``) or in
both (``both``). For each part, :func:`roi_score_rows` builds a score table whose brain scores
(``mean_r``, ``mean_r_left``, ``mean_r_right``, ``mean_r_norm``, ``n_voxels``) are the part's
(the rows of ``scores_roi.tsv``), and :class:`RoiVoxels` gives the whole-brain functions the
fits' per-voxel arrays restricted to the part's voxels, so that the hierarchical bootstrap
resamples subjects, then voxels *within the ROI* (:mod:`lmbrain.inference`).

Layers are each model's best layer over the whole brain (by the cross-validated training
score, :func:`lmbrain.aggregate.best_layers`): the layer of ``scaling_fits.tsv``, so that the
ROI slopes break the whole-brain slope down by region rather than each region choosing its
own layer.

Why: Bonnasse-Gahot & Pallier (2024, arXiv:2405.17992, ROI analysis) ask *where* the brain
score grows with model size and where the left-right asymmetry appears. Their code
(github.com/l-bg/llms_brain_lateralization: ``create_roi_masks.py`` draws seven 10 mm
left-hemisphere spheres, mirrored to the right; the "ROIs analysis" cells of
``analyze_results.ipynb`` regress each ROI's mean left and right brain correlation, and their
difference, on log parameters) is what ``fit=params`` per hemisphere and ``fit=asymmetry``
per ROI do here, with subject-level inference added. Antonello, Vaidya & Huth (2023, NeurIPS,
"Scaling laws for language encoding models in fMRI", noise-ceiling analysis) find some areas
(precuneus, higher auditory cortex) much closer to their noise ceiling than others, which an
extrapolation per ROI makes explicit.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from lmbrain.aggregate import FIT_COLUMNS, at_largest_fraction, load_fit_voxels, scaling_fits
from lmbrain.errors import InputError
from lmbrain.extrapolation import EXTRAPOLATION_COLUMNS, scaling_extrapolations
from lmbrain.roi import ROI_HEMISPHERES

ROI_FIT_COLUMNS: tuple[str, ...] = ("dataset", "roi", "hemisphere", *FIT_COLUMNS[1:])
"""Columns of :func:`roi_scaling_fits`: those of ``scaling_fits.tsv`` plus ``roi`` and
``hemisphere``."""

ROI_EXTRAPOLATION_COLUMNS: tuple[str, ...] = ("dataset", "roi", *EXTRAPOLATION_COLUMNS[1:])
"""Columns of :func:`roi_extrapolations`: those of ``scaling_extrapolation.tsv`` plus ``roi``."""

ROI_FITS = ("params", "asymmetry")
"""Fits of :func:`roi_scaling_fits` (``fit`` column of ``scaling_fits.tsv``)."""

_KEYS = ["dataset", "subject", "model", "layer", "train_fraction"]
_PART_COLUMNS = ("n_voxels", "n_voxels_ceiling", "mean_r", "mean_r_norm")
_VOXEL_KEYS = ("r", "r_norm", "hemisphere")


def roi_score_rows(scores: pd.DataFrame, roi_rows: pd.DataFrame, roi: str, hemisphere: str):
    """The score table with one ROI part's scores in place of the whole brain's.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (``summary/scores.tsv``), with ``fit_path``.
    roi_rows : pandas.DataFrame
        :func:`lmbrain.roi.roi_table` rows of the same fits.
    roi : str
    hemisphere : {"L", "R", "both"}

    Returns
    -------
    pandas.DataFrame
        The score rows of the fits that have the part, with ``n_voxels``,
        ``n_voxels_ceiling``, ``mean_r`` and ``mean_r_norm`` of the part; for ``both``,
        ``mean_r_left`` / ``mean_r_right`` are the ROI's ``L`` / ``R`` means (NaN for a one-
        hemisphere part, which has no asymmetry). Other ``mean_*`` columns (whole-brain
        scores) are dropped. Fits whose part has no voxel are left out.
    """
    if hemisphere not in ROI_HEMISPHERES:
        raise ValueError(f"hemisphere must be one of {ROI_HEMISPHERES}, got {hemisphere!r}")
    mine = roi_rows[roi_rows["roi"] == roi]
    part = mine[mine["hemisphere"] == hemisphere][_KEYS + list(_PART_COLUMNS)]
    for side, column in (("L", "mean_r_left"), ("R", "mean_r_right")):
        if hemisphere == "both":
            side_rows = mine[mine["hemisphere"] == side][_KEYS + ["mean_r"]]
            part = part.merge(side_rows.rename(columns={"mean_r": column}), on=_KEYS, how="left")
        else:
            part = part.assign(**{column: np.nan})
    part = part[part["n_voxels"] > 0]
    whole = [c for c in scores.columns if c.startswith("mean_") and c != "mean_cv_score"]
    base = scores.drop(columns=whole + ["n_voxels", "n_voxels_ceiling"], errors="ignore")
    return base.merge(part, on=_KEYS, how="inner")


class RoiVoxels:
    """Per-voxel arrays of the fits, loaded once, restricted to an ROI part on request.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows: which subject each ``fit_path`` belongs to.
    rois : mapping
        Subject -> ROI membership (:func:`lmbrain.roi.subject_rois`).
    load_voxels : callable, optional
        ``fit_path -> arrays``; default :func:`lmbrain.aggregate.load_fit_voxels`. Only
        ``r``, ``r_norm`` and ``hemisphere`` are kept.
    """

    def __init__(
        self,
        scores: pd.DataFrame,
        rois: Mapping[str, Mapping[str, np.ndarray]],
        load_voxels: Callable[[str], Mapping] | None = None,
    ):
        self._load = load_fit_voxels if load_voxels is None else load_voxels
        self._subject = dict(zip(scores["fit_path"], scores["subject"], strict=True))
        self._rois = rois
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def arrays(self, fit_path: str) -> dict[str, np.ndarray]:
        """The fit's ``r``, ``r_norm`` (float32) and ``hemisphere``, loaded once."""
        if fit_path not in self._cache:
            data = self._load(fit_path)
            if "r" not in data or "hemisphere" not in data:
                raise InputError(fit_path, "per-voxel arrays lack 'r' or 'hemisphere'")
            out = {"hemisphere": np.asarray(data["hemisphere"]).astype(str).ravel()}
            for key in ("r", "r_norm"):
                if key in data:
                    out[key] = np.asarray(data[key], dtype=np.float32).ravel()
            self._cache[fit_path] = out
        return self._cache[fit_path]

    def selection(self, fit_path: str, roi: str, hemisphere: str) -> np.ndarray:
        """Boolean mask of the part's voxels among the fit's columns."""
        arrays = self.arrays(fit_path)
        member = self._rois.get(self._subject[fit_path], {}).get(roi)
        if member is None:
            return np.zeros(arrays["hemisphere"].shape, dtype=bool)
        member = np.asarray(member, dtype=bool)
        if member.shape != arrays["hemisphere"].shape:
            raise InputError(
                fit_path,
                f"has {arrays['hemisphere'].size} voxels but ROI {roi!r} of subject "
                f"{self._subject[fit_path]} covers {member.size}",
            )
        if hemisphere == "both":
            return member
        return member & (arrays["hemisphere"] == hemisphere)

    def loader(self, roi: str, hemisphere: str) -> Callable[[str], dict[str, np.ndarray]]:
        """``fit_path -> arrays`` restricted to the part's voxels (a ``load_voxels``)."""

        def load(fit_path: str) -> dict[str, np.ndarray]:
            keep = self.selection(fit_path, roi, hemisphere)
            return {k: v[keep] for k, v in self.arrays(fit_path).items()}

        return load


def part_seed(seed: int, roi: str, hemisphere: str) -> int:
    """The seed of one ROI part's fits: its own stream, derived from ``seed`` and the part."""
    key = zlib.crc32(f"{roi}/{hemisphere}".encode())
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0])


def _roi_names(roi_rows: pd.DataFrame) -> list[str]:
    return sorted(roi_rows["roi"].dropna().astype(str).unique()) if len(roi_rows) else []


def roi_scaling_fits(
    scores: pd.DataFrame,
    roi_rows: pd.DataFrame,
    rois: Mapping[str, Mapping[str, np.ndarray]],
    load_voxels: Callable[[str], Mapping] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Size fits (``fit=params``) and asymmetry fits (``fit=asymmetry``) of every ROI.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (``summary/scores.tsv``).
    roi_rows : pandas.DataFrame
        Their ROI rows (:func:`lmbrain.roi.roi_table`, ``summary/scores_roi.tsv``).
    rois : mapping
        Subject -> ROI membership (:func:`lmbrain.roi.subject_rois`).
    load_voxels : callable, optional
        ``fit_path -> arrays``; default :func:`lmbrain.aggregate.load_fit_voxels`.
    n_boot : int
        Bootstrap replicates per fit and level (0: no intervals).
    seed : int
        Each ROI part draws from its own stream (:func:`part_seed`), and within it each fit
        from the stream :func:`lmbrain.aggregate.scaling_fits` derives.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ROI_FIT_COLUMNS`, sorted by (dataset, roi, fit params/asymmetry,
        hemisphere L/R/both, group ``trained`` first). For every ROI and hemisphere part (``L``, ``R``, ``both``), the
        ``fit=params`` rows of :func:`lmbrain.aggregate.scaling_fits` (``group=trained``
        pooled, ``family:<f>`` and ``modality:<m>`` where it makes them) with ``mean_r`` the
        part's mean test r at each model's best layer; for ``both``, also the
        ``fit=asymmetry`` row: the ROI's left part minus its right part
        (``y_variable=mean_r_left_minus_right``). The CI, test, ``n_*``, ``resampling`` and
        ``note`` columns mean what they mean there, with voxels resampled within the part
        and ``n_voxels`` the part's voxels summed over subjects.
    """
    if roi_rows.empty or scores.empty:
        return pd.DataFrame(columns=list(ROI_FIT_COLUMNS))
    top = at_largest_fraction(scores)  # size fits only: no work on the other fractions
    voxels = RoiVoxels(top, rois, load_voxels)
    tables = []
    for roi in _roi_names(roi_rows):
        for hemisphere in ROI_HEMISPHERES:
            rows = roi_score_rows(top, roi_rows, roi, hemisphere)
            if rows.empty:
                continue
            fits = scaling_fits(
                rows,
                voxels.loader(roi, hemisphere),
                n_boot=n_boot,
                seed=part_seed(seed, roi, hemisphere),
                metrics=("r",),
            )
            wanted = ["params", "asymmetry"] if hemisphere == "both" else ["params"]
            fits = fits[fits["fit"].isin(wanted)]
            tables.append(fits.assign(roi=roi, hemisphere=hemisphere))
    if not tables:
        return pd.DataFrame(columns=list(ROI_FIT_COLUMNS))
    table = pd.concat(tables, ignore_index=True)[list(ROI_FIT_COLUMNS)]
    order = {
        "_f": table["fit"].map({f: i for i, f in enumerate(ROI_FITS)}),
        "_h": table["hemisphere"].map({h: i for i, h in enumerate(ROI_HEMISPHERES)}),
        "_g": table["group"].ne("trained"),  # the pooled fit first, as in scaling_fits.tsv
    }
    keys = ["dataset", "roi", "_f", "_h", "_g", "group"]
    table = table.assign(**order).sort_values(keys, kind="mergesort")
    return table.drop(columns=list(order)).reset_index(drop=True)


def roi_extrapolations(
    scores: pd.DataFrame,
    roi_rows: pd.DataFrame,
    rois: Mapping[str, Mapping[str, np.ndarray]],
    load_voxels: Callable[[str], Mapping] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    target: float = 0.9,
) -> pd.DataFrame:
    """Extrapolation of each ROI's ``mean_r_norm`` to the noise ceiling (both hemispheres).

    Antonello, Vaidya & Huth (2023) extrapolate the ceiling-normalised score to the noise
    ceiling; this does it per ROI with :func:`lmbrain.extrapolation.scaling_extrapolations`
    on the ROI's ``mean_r_norm`` (mean of ``r / cc_max`` over the ROI's voxels with a usable
    ceiling), the bootstrap resampling voxels within the ROI.

    Parameters
    ----------
    scores, roi_rows, rois, load_voxels, n_boot, seed
        As for :func:`roi_scaling_fits`.
    target : float
        ``aggregate.extrapolation_target``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ROI_EXTRAPOLATION_COLUMNS`: the rows of ``scaling_extrapolation.tsv``
        (size fits per family and pooled, data fits per model) for every ROI, sorted by
        (dataset, roi) and then as there.
    """
    if roi_rows.empty or scores.empty:
        return pd.DataFrame(columns=list(ROI_EXTRAPOLATION_COLUMNS))
    voxels = RoiVoxels(scores, rois, load_voxels)
    tables = []
    for roi in _roi_names(roi_rows):
        rows = roi_score_rows(scores, roi_rows, roi, "both")
        if rows.empty:
            continue
        table = scaling_extrapolations(
            rows,
            voxels.loader(roi, "both"),
            n_boot=n_boot,
            seed=part_seed(seed, roi, "both"),
            target=target,
        )
        tables.append(table.assign(roi=roi))
    if not tables:
        return pd.DataFrame(columns=list(ROI_EXTRAPOLATION_COLUMNS))
    table = pd.concat(tables, ignore_index=True)[list(ROI_EXTRAPOLATION_COLUMNS)]
    return table.sort_values(["dataset", "roi"], kind="mergesort").reset_index(drop=True)
