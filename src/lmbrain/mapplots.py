"""Figures of brain maps and ROI scores.

- :func:`plot_brain_map`: the test correlation of one fit in the subject's space: a glass
  brain (nilearn, MNI152 outlines) for volume maps, the inflated fsaverage5 surface that
  nilearn ships (no download) for surface maps on fsaverage5, and a per-hemisphere histogram
  for maps without geometry or on another mesh (nilearn would have to download it).
- :func:`plot_roi_bars`: mean r per ROI of each model's best layer, one panel per hemisphere.
- :func:`plot_roi_slopes`: the scaling slope per ROI (left and right) and the asymmetry
  slope per ROI, with their CIs (``summary/scaling_fits_roi.tsv``).
- :func:`plot_ceiling_scatter`: per-voxel test r against the noise ceiling cc_max, a panel per
  subject (:mod:`lmbrain.near_ceiling`).

:func:`best_fit` picks the fit a subject's map figure shows. Figures are drawn on the Agg
canvas without pyplot and written atomically (PNG, dpi 150).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lmbrain.aggregate import at_largest_fraction, best_layers
from lmbrain.brainmaps import read_surface_map, read_volume_map
from lmbrain.io import atomic_path

DPI = 150
NILEARN_MESHES = ("fsaverage5",)  # meshes nilearn ships with the package (no download)
CMAP = "cold_hot"
#: colour-bar / axis label of each map measure (others: the measure's name)
MEASURE_LABELS = {
    "r": "test correlation r",
    "r2": "test R²",
    "r_norm": "r / cc_max",
    "cc_max": "noise ceiling cc_max",
    "alpha": "ridge penalty alpha",
    "cv_score": "cross-validated score",
    "slope": "slope: Δr per decade of parameters",
}


def measure_label(measure: str) -> str:
    """What a colour bar or axis of ``measure`` says."""
    return MEASURE_LABELS.get(measure, measure)


def best_fit(scores: pd.DataFrame, subject: str) -> pd.Series:
    """The fit a subject's map figure shows: the best model's best layer.

    Each model's layer is chosen by the cross-validated training score
    (:func:`lmbrain.aggregate.best_layers`) at the largest train fraction; the model with the
    highest test ``mean_r`` among trained models (all models if none is trained) wins.

    Raises
    ------
    ValueError
        If the subject has no fit with a finite cross-validated score.
    """
    rows = scores[scores["subject"] == subject]
    best = at_largest_fraction(best_layers(rows))
    trained = best[~best["untrained"].astype(bool)]
    pool = trained if not trained.empty else best
    pool = pool[np.isfinite(pool["mean_r"])]
    if pool.empty:
        raise ValueError(f"no scored fit for subject {subject!r}")
    return pool.loc[pool["mean_r"].idxmax()]


def _new_figure(size) -> Figure:
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


def _limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(max(finite.max(), 1e-3)) if finite.size else 1.0


def plot_brain_map(kind: str, paths: dict, title: str, out: str | Path, measure: str = "r"):
    """Draw one measure of a map written by :mod:`lmbrain.brainmaps`.

    Parameters
    ----------
    kind : {"volume", "surface", "vector"}
    paths : dict
        :func:`lmbrain.brainmaps.map_paths` of the map.
    title : str
    out : str or Path
        Output PNG.
    measure : str, default "r"
    """
    if kind == "volume":
        fig = _volume_figure(paths["image"], measure, title)
    elif kind == "surface":
        fig = _surface_figure(paths, measure, title)
    elif kind == "vector":
        with np.load(paths["vector"]) as npz:
            values, hemi = npz[measure], npz["hemisphere"]
        fig = _histogram_figure({h: values[hemi == h] for h in ("L", "R")}, measure, title)
    else:
        raise ValueError(f"unknown map kind {kind!r}")
    _save(fig, out)


def _volume_figure(image: str, measure: str, title: str) -> Figure:
    import nibabel as nib
    from nilearn import plotting

    maps, affine = read_volume_map(image)
    values = maps[measure]
    vmax = _limit(values)
    # NaN (outside the mask) becomes 0 and a tiny threshold hides it.
    img = nib.Nifti1Image(np.nan_to_num(values, nan=0.0).astype(np.float32), affine)
    fig = _new_figure((10.0, 3.6))
    display = plotting.plot_glass_brain(
        img,
        figure=fig,
        display_mode="lzr",
        plot_abs=False,
        colorbar=True,
        cmap=CMAP,
        vmin=-vmax,
        vmax=vmax,
        threshold=vmax * 1e-6,
        title=f"{title} ({measure})",
    )
    colorbar = getattr(display, "_cbar", None)  # nilearn keeps the colour bar here
    if colorbar is not None:  # at the figure's right edge: the label goes left of the ticks
        colorbar.ax.yaxis.set_label_position("left")
        colorbar.set_label(measure_label(measure))
    return fig


def _surface_figure(paths: dict, measure: str, title: str) -> Figure:
    hemis = {h: read_surface_map(paths[h]) for h in ("L", "R")}
    mesh = hemis["L"][1]
    values = {h: hemis[h][0][measure] for h in hemis}
    if mesh not in NILEARN_MESHES:
        note = f"{title}\n(no offline {mesh or 'unknown'} mesh: distribution over vertices)"
        return _histogram_figure(values, measure, note)
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import datasets, plotting

    surf = datasets.load_fsaverage(mesh)["inflated"]
    vmax = _limit(np.concatenate(list(values.values())))
    fig = _new_figure((8.0, 6.0))
    views = [("L", "lateral"), ("R", "lateral"), ("L", "medial"), ("R", "medial")]
    for i, (h, view) in enumerate(views):
        ax = fig.add_subplot(2, 2, i + 1, projection="3d")
        plotting.plot_surf_stat_map(
            surf,
            values[h],
            hemi={"L": "left", "R": "right"}[h],
            view=view,
            axes=ax,
            figure=fig,
            colorbar=False,
            cmap=CMAP,
            vmin=-vmax,
            vmax=vmax,
            threshold=vmax * 1e-6,
            bg_map=None,
        )
        ax.set_title(f"{h} {view}", fontsize=9)
    norm = Normalize(-vmax, vmax)
    fig.colorbar(
        ScalarMappable(norm, colormaps[CMAP]),
        ax=fig.axes,
        shrink=0.6,
        label=measure_label(measure),
    )
    fig.suptitle(f"{title} ({mesh})")
    return fig


def _histogram_figure(values: dict, measure: str, title: str) -> Figure:
    fig = _new_figure((6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    finite = {h: v[np.isfinite(v)] for h, v in values.items()}
    pooled = np.concatenate(list(finite.values())) if finite else np.array([])
    bins = np.histogram_bin_edges(pooled if pooled.size else [0.0, 1.0], bins=30)
    for h, v in finite.items():
        label = f"{h} (n={v.size}, mean {v.mean():.3f})" if v.size else f"{h} (n=0)"
        ax.hist(v, bins=bins, alpha=0.55, label=label)
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_xlabel(measure_label(measure))
    ax.set_ylabel("voxels")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, title="hemisphere")
    fig.tight_layout()
    return fig


def plot_roi_bars(roi_table: pd.DataFrame, scores: pd.DataFrame, out: str | Path) -> None:
    """Mean test r per ROI of each model's best layer, one panel per hemisphere.

    Parameters
    ----------
    roi_table : pandas.DataFrame
        :func:`lmbrain.roi.roi_table` rows.
    scores : pandas.DataFrame
        Score rows; each (subject, model)'s layer is the one :func:`best_layers` picks, at the
        largest train fraction.
    out : str or Path
        Output PNG.

    Notes
    -----
    Bars are means over subjects (error bars: SEM over subjects when there are several);
    untrained models are hatched. A table without ROIs gives a figure that says so.
    """
    best = at_largest_fraction(best_layers(scores))
    keys = ["dataset", "subject", "model", "layer", "train_fraction"]
    rows = roi_table.merge(best[keys], on=keys) if not roi_table.empty else roi_table
    panels = [h for h in ("L", "R") if not rows.empty and (rows["hemisphere"] == h).any()]
    fig = _new_figure((5.0 * max(len(panels), 1) + 2.0, 4.2))
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no ROIs defined", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        _save(fig, out)
        return
    rois = sorted(rows["roi"].unique())
    models = sorted(rows["model"].unique())
    untrained = rows.groupby("model")["untrained"].first().astype(bool)
    width = 0.8 / len(models)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, hemi in zip(axes, panels, strict=True):
        sub = rows[rows["hemisphere"] == hemi]
        stats = sub.groupby(["model", "roi"])["mean_r"].agg(["mean", _sem])
        for m, model in enumerate(models):
            mean = [stats["mean"].get((model, r), np.nan) for r in rois]
            err = [stats["_sem"].get((model, r), np.nan) for r in rois]
            x = np.arange(len(rois)) - 0.4 + width * (m + 0.5)
            ax.bar(
                x,
                mean,
                width,
                yerr=None if np.all(np.isnan(err)) else err,
                label=model,
                hatch="//" if untrained.get(model, False) else None,
                edgecolor="0.2",
                linewidth=0.5,
            )
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_xticks(np.arange(len(rois)), rois, rotation=45 if len(rois) > 6 else 0)
        ax.set_title({"L": "left hemisphere", "R": "right hemisphere"}[hemi])
        ax.set_xlabel("ROI")
    axes[0].set_ylabel("mean test r (best layer)")
    n_subjects = rows["subject"].nunique()
    fig.suptitle(
        f"bars: mean over {n_subjects} subjects; error bars: SEM over subjects"
        if n_subjects > 1
        else "1 subject (no error bars)",
        fontsize=9,
    )
    axes[-1].legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    _save(fig, out)


def plot_roi_slopes(fits: pd.DataFrame, out: str | Path) -> None:
    """Scaling slope per ROI, left and right, and the asymmetry slope per ROI.

    Parameters
    ----------
    fits : pandas.DataFrame
        :func:`lmbrain.roi_scaling.roi_scaling_fits` rows (``summary/scaling_fits_roi.tsv``);
        the pooled ``group="trained"`` rows are drawn.
    out : str or Path
        Output PNG.

    Notes
    -----
    Left panel: slope of mean r against log10(parameters) in each ROI's left and right part,
    with its 95% CI; right panel: slope of left - right. The CI is the hierarchical one
    (subjects, then voxels within the ROI), or where that is missing (fewer than 3
    subjects) the voxel-only one, and the title says so. One row of panels per dataset.
    """
    rows = fits[fits["group"] == "trained"] if len(fits) else fits
    datasets = sorted(rows["dataset"].unique()) if len(rows) else []
    fig = _new_figure((11.0, 3.8 * max(len(datasets), 1)))
    if not datasets:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no ROI fits", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        _save(fig, out)
        return
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for (left, right), dataset in zip(axes, datasets, strict=True):
        sub = rows[rows["dataset"] == dataset]
        rois = sorted(sub["roi"].astype(str).unique())
        kinds = set()
        for side, color, shift in [("L", "C0", -0.15), ("R", "C3", 0.15)]:
            part = sub[(sub["fit"] == "params") & (sub["hemisphere"] == side)]
            kinds |= _slope_points(left, part, rois, shift, color, f"{side} hemisphere")
        part = sub[sub["fit"] == "asymmetry"]
        kinds |= _slope_points(right, part, rois, 0.0, "0.2", "left - right")
        for ax, what in [(left, "slope of mean r"), (right, "slope of left - right r")]:
            ax.axhline(0.0, color="0.5", lw=0.8)
            ax.set_xticks(np.arange(len(rois)), rois, rotation=45 if len(rois) > 6 else 0)
            ax.set_xlabel("ROI")
            ax.set_ylabel(f"{what}\nper decade of parameters")
        left.legend(frameon=False, fontsize=8)
        ci = "95% CI: " + (" / ".join(sorted(kinds)) if kinds else "none")
        left.set_title(f"{dataset}: size slope per ROI ({ci})", fontsize=9)
        right.set_title(f"{dataset}: asymmetry slope per ROI ({ci})", fontsize=9)
    fig.tight_layout()
    _save(fig, out)


def _slope_points(ax, part: pd.DataFrame, rois: list, shift: float, color, label) -> set:
    """Draw one slope per ROI with its CI; return the kinds of CI drawn."""
    kinds, xs, ys, lows, highs = set(), [], [], [], []
    for i, name in enumerate(rois):
        hit = part[part["roi"].astype(str) == name]
        if hit.empty or not np.isfinite(hit.iloc[0]["slope"]):
            continue
        row = hit.iloc[0]
        low, high, kind = _slope_ci(row)
        kinds |= {kind} if kind else set()
        xs.append(i + shift)
        ys.append(row["slope"])
        # a percentile CI need not contain the estimate: bars never go negative
        lows.append(max(row["slope"] - low, 0.0) if np.isfinite(low) else 0.0)
        highs.append(max(high - row["slope"], 0.0) if np.isfinite(high) else 0.0)
    if xs:
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", color=color, capsize=3, label=label)
    return kinds


def _slope_ci(row: pd.Series) -> tuple[float, float, str]:
    """The hierarchical CI of a fit row, else its voxel-only CI, and which one it is."""
    for suffix, kind in (("", "subjects, then voxels"), ("_voxels", "voxels only")):
        low, high = row.get(f"slope_ci_low{suffix}"), row.get(f"slope_ci_high{suffix}")
        if low is not None and np.isfinite(low) and np.isfinite(high):
            return float(low), float(high), kind
    return float("nan"), float("nan"), ""


def _sem(values: pd.Series) -> float:
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return float("nan")
    return float(finite.std(ddof=1) / np.sqrt(len(finite)))


def plot_ceiling_scatter(panels: list[dict], out: str | Path) -> None:
    """Per-voxel test r against the noise ceiling cc_max, one panel per subject.

    Parameters
    ----------
    panels : list of dict
        One per subject: ``title``, ``r``, ``cc_max`` and ``usable`` (bool per voxel: the
        ceiling is usable, i.e. ``r_norm`` is finite), arrays of one fit.
    out : str or Path
        Output PNG.

    Notes
    -----
    Voxels with a usable ceiling are blue, the others grey; the solid line is r = cc_max
    (the ceiling), the dashed ones r = 0.5 cc_max and r = 0.8 cc_max (the near-ceiling
    thresholds of ``summary/near_ceiling.tsv``). A panel without a finite ceiling says so.
    """
    n = max(len(panels), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = _new_figure((4.2 * cols, 4.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for ax, panel in zip(axes, panels, strict=False):
        r = np.asarray(panel["r"], dtype=np.float64)
        cc = np.asarray(panel["cc_max"], dtype=np.float64)
        usable = np.asarray(panel["usable"], dtype=bool)
        finite = np.isfinite(r) & np.isfinite(cc)
        ax.set_title(panel["title"], fontsize=9)
        if not finite.any():
            ax.text(0.5, 0.5, "no noise ceiling", ha="center", va="center", transform=ax.transAxes)
            continue
        size = 4 if finite.sum() > 2000 else 10
        other = finite & ~usable
        ax.scatter(cc[other], r[other], s=size, c="0.6", lw=0, alpha=0.6, label="ceiling too low")
        ax.scatter(
            cc[finite & usable],
            r[finite & usable],
            s=size,
            c="C0",
            lw=0,
            alpha=0.7,
            label=f"usable ceiling (n={int((finite & usable).sum())})",
        )
        top = float(max(np.nanmax(cc[finite]), np.nanmax(r[finite]), 1e-3)) * 1.05
        line = np.array([0.0, top])
        ax.plot(line, line, color="k", lw=1.0, label="r = cc_max")
        for k in (0.5, 0.8):
            ax.plot(line, k * line, color="k", lw=0.6, ls="--")
        ax.axhline(0.0, color="0.3", lw=0.6)
        ax.set_xlim(-0.02 * top, top)  # voxels with cc_max = 0 stay visible
        ax.set_xlabel(measure_label("cc_max"))
        ax.set_ylabel(measure_label("r"))
        ax.legend(frameon=False, fontsize=7, loc="upper left")
    fig.suptitle("per-voxel test r vs noise ceiling (dashed: r = 0.5 and 0.8 cc_max)", fontsize=9)
    fig.tight_layout()
    _save(fig, out)
