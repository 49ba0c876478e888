"""Scaling, layer and asymmetry figures.

Every public function takes the score table (:func:`lmbrain.aggregate.read_score_rows`)
and, where a fit line is drawn, the fit table (:func:`lmbrain.aggregate.scaling_fits`),
draws one panel per dataset and writes a PNG (dpi 150) atomically. Figures are built with
the object-oriented API on the Agg canvas (no pyplot, no global figure state), so nothing
is left open. Degenerate inputs (one model, one train fraction, NaN scores) draw what
exists; where a fit is impossible the panel says so instead of drawing a line.

Baselines (:mod:`lmbrain.baselines`; score rows with ``n_params == 0``) have no model size:
the size, asymmetry and layer panels draw each as a labelled dotted horizontal line at its
mean over subjects (best layer, largest train fraction).

Legibility: log axes label a few major ticks in plain units (``20k``, ``1M``, ``3B``) and
never the minor ones; legends sit outside the axes, right of the data; model names are placed
beside their marker where they cover no other marker or name (:func:`_place_labels`); error
bars are defined in each panel's title (SEM over subjects).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from lmbrain.aggregate import TRAINED, at_largest_fraction, best_layers, model_summary
from lmbrain.io import atomic_path

DPI = 150
UNTRAINED_LABEL = "untrained (random init)"
NO_FIT_TEXT = "fit needs >= 2 model sizes"
UNTRAINED_COLOR = "0.55"
PANEL_SIZE = (6.4, 4.8)  # inches per dataset panel
WIDE_PANEL_SIZE = (9.0, 4.8)  # panels with the legend outside, right of the axes


# --------------------------------------------------------------------------- public


def plot_scaling_models(scores: pd.DataFrame, fits: pd.DataFrame, path: str | Path) -> None:
    """Brain score against model size, with the log-linear fit.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (all layers, fractions, subjects).
    fits : pandas.DataFrame
        Fit table; its ``fit="params"``, ``group="trained"`` row gives the line.
    path : str or Path
        Output PNG.

    Notes
    -----
    One filled marker per trained model (best layer by CV score at the largest train
    fraction, mean over subjects, error bars = SEM over subjects when there are several),
    untrained twins as hollow grey markers, model names annotated, and the fitted line
    with the bootstrap 95% CI of its slope in the legend.
    """
    _save(_build_scaling_models(scores, fits), path)


def plot_scaling_data(scores: pd.DataFrame, fits: pd.DataFrame, path: str | Path) -> None:
    """Brain score against the amount of training data, one line per model.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows.
    fits : pandas.DataFrame
        Fit table; ``fit="data"`` rows give each model's slope (legend).
    path : str or Path
        Output PNG.

    Notes
    -----
    x = training TRs (log scale), y = best-layer mean r at each train fraction, mean over
    subjects with SEM error bars; untrained models dashed.
    """
    _save(_build_scaling_data(scores, fits), path)


def plot_layers(scores: pd.DataFrame, path: str | Path) -> None:
    """Mean test r against relative layer depth, one line per model.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows; the largest train fraction of each dataset is used.
    path : str or Path
        Output PNG.

    Notes
    -----
    x = layer / n_layers (0 = embeddings, 1 = last layer), y = mean over subjects of
    ``mean_r`` with a SEM band; untrained models dashed.
    """
    _save(_build_layers(scores), path)


def plot_asymmetry(scores: pd.DataFrame, fits: pd.DataFrame, path: str | Path) -> None:
    """Left - right hemisphere brain score against model size.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows.
    fits : pandas.DataFrame
        Fit table; its ``fit="asymmetry"``, ``group="trained"`` row gives the line.
    path : str or Path
        Output PNG.

    Notes
    -----
    Same layout as :func:`plot_scaling_models` with y = mean_r_left - mean_r_right of the
    best layer and a dashed zero line.
    """
    _save(_build_asymmetry(scores, fits), path)


# --------------------------------------------------------------------------- builders


def _build_scaling_models(scores: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    summary = model_summary(scores) if len(scores) else None
    return _per_dataset(
        scores,
        lambda ax, ds: _draw_size_panel(ax, ds, summary, fits, "mean_r", "params"),
        WIDE_PANEL_SIZE,
    )


def _build_asymmetry(scores: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    summary = model_summary(scores) if len(scores) else None
    return _per_dataset(
        scores,
        lambda ax, ds: _draw_size_panel(ax, ds, summary, fits, "asym", "asymmetry"),
        WIDE_PANEL_SIZE,
    )


def _build_scaling_data(scores: pd.DataFrame, fits: pd.DataFrame) -> Figure:
    draw = partial(_draw_data_panel, scores=scores, fits=fits)
    return _per_dataset(scores, draw, WIDE_PANEL_SIZE)


def _build_layers(scores: pd.DataFrame) -> Figure:
    return _per_dataset(scores, partial(_draw_layer_panel, scores=scores), WIDE_PANEL_SIZE)


def _per_dataset(scores: pd.DataFrame, draw, panel: tuple = PANEL_SIZE) -> Figure:
    """A figure with one panel per dataset (a single 'no data' panel when empty)."""
    datasets = sorted(scores["dataset"].dropna().unique()) if len(scores) else []
    n = max(1, len(datasets))
    fig = Figure(figsize=(panel[0] * n, panel[1]), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    if not datasets:
        _note(axes[0], "no data")
    for ax, dataset in zip(axes, datasets, strict=False):
        draw(ax, dataset)
    pending = [(ax, getattr(ax, "lmbrain_labels", [])) for ax in axes]
    if any(items for _, items in pending):
        fig.canvas.draw()  # settle the layout: labels are placed in display coordinates
        renderer = fig.canvas.get_renderer()
        for ax, items in pending:
            _place_labels(ax, items, renderer)
    return fig


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    fig.clear()


def plot_banded(summary: pd.DataFrame, path: str | Path) -> None:
    """Which feature space explains what: split R^2 and variance partitions of banded fits.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`lmbrain.aggregate.banded_summary` rows.
    path : str or Path
        Output PNG.

    Notes
    -----
    One row of panels per banded model. Left: mean split R^2 per band and hemisphere
    (bars; mean over subjects). Right: unique variance per band and the shared variance,
    per hemisphere, with the fraction of voxels each band wins written above its bar.
    """
    names = sorted(summary["name"].unique()) if len(summary) else []
    fig = Figure(figsize=(11.0, 3.6 * max(1, len(names))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(names)), 2, squeeze=False)
    if not names:
        _note(axes[0, 0], "no banded fits")
    for row_axes, name in zip(axes, names, strict=False):
        rows = summary[summary["name"] == name]
        means = rows.groupby(["hemisphere", "band"], sort=True).mean(numeric_only=True)
        hemis = [h for h in ("all", "L", "R") if h in means.index.get_level_values(0)]
        bands = sorted(rows["band"].unique())
        width = 0.8 / len(bands)
        x = np.arange(len(hemis))
        for k, band in enumerate(bands):
            vals = [means.loc[(h, band), "mean_split_r2"] for h in hemis]
            row_axes[0].bar(x + k * width, vals, width, label=band)
            uniq = [means.loc[(h, band), "mean_unique"] for h in hemis]
            bars = row_axes[1].bar(x + k * width, uniq, width, label=f"unique {band}")
            for bar, h in zip(bars, hemis, strict=True):
                won = means.loc[(h, band), "frac_voxels_won"]
                row_axes[1].annotate(
                    f"{won:.0%}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        shared = [means.loc[(h, bands[0]), "mean_shared"] for h in hemis]
        row_axes[1].bar(x + len(bands) * width, shared, width, color="0.6", label="shared")
        for ax, ylabel in zip(
            row_axes, ("mean split R² (test)", "variance (test R²)"), strict=True
        ):
            ax.set_xticks(x + width * (len(bands) - 1) / 2, hemis)
            ax.axhline(0.0, color="0.3", lw=0.8)
            ax.set_ylabel(ylabel)
            _legend(ax, title=None)
        row_axes[0].set_title(f"{name}: joint R² split by band")
        row_axes[1].set_title(f"{name}: variance partitioning (% voxels won)")
    _save(fig, path)


def plot_stacking(summary: pd.DataFrame, path: str | Path) -> None:
    """Stacked regression: joint r against each space alone, and the mean stacking weights.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`lmbrain.stacking.stacking_summary` rows (the ``subject == "mean"`` rows are
        drawn: means over subjects).
    path : str or Path
        Output PNG.

    Notes
    -----
    One row of panels per stacked model. Left: mean test r per hemisphere of the stacked
    model and of each space alone, with the fraction of voxels where the stacked r is higher
    written above each space's bar. Right: mean stacking weight of each space per hemisphere
    (stacked bars summing to 1).
    """
    rows_all = summary[summary["subject"] == "mean"] if len(summary) else summary
    names = sorted(rows_all["name"].unique()) if len(rows_all) else []
    fig = Figure(figsize=(11.0, 3.6 * max(1, len(names))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(names)), 2, squeeze=False)
    if not names:
        _note(axes[0, 0], "no stacked fits")
    for row_axes, name in zip(axes, names, strict=False):
        rows = rows_all[rows_all["name"] == name].set_index(["hemisphere", "space"])
        hemis = [h for h in ("all", "L", "R") if h in rows.index.get_level_values(0)]
        spaces = list(dict.fromkeys(rows.index.get_level_values(1)))
        x = np.arange(len(hemis))
        width = 0.8 / (len(spaces) + 1)
        joint = [rows.loc[(h, spaces[0]), "mean_r_stacked"] for h in hemis]
        row_axes[0].bar(x, joint, width, color="0.2", label="stacked")
        bottom = np.zeros(len(hemis))
        for k, space in enumerate(spaces):
            alone = [rows.loc[(h, space), "mean_r_space"] for h in hemis]
            bars = row_axes[0].bar(x + (k + 1) * width, alone, width, label=space)
            for bar, h in zip(bars, hemis, strict=True):
                row_axes[0].annotate(
                    f"{rows.loc[(h, space), 'frac_voxels_stacked_better']:.0%}",
                    (bar.get_x() + bar.get_width() / 2, max(bar.get_height(), 0.0)),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
            weight = np.array([rows.loc[(h, space), "mean_weight"] for h in hemis])
            row_axes[1].bar(x, weight, 0.6, bottom=bottom, label=space)
            bottom += np.nan_to_num(weight)
        row_axes[0].set_xticks(x + width * len(spaces) / 2, hemis)
        row_axes[0].axhline(0.0, color="0.3", lw=0.8)
        row_axes[0].set_ylabel("mean test r")
        row_axes[0].set_title(f"{name}: stacked vs each space (% voxels stacked better)")
        row_axes[1].set_xticks(x, hemis)
        row_axes[1].set_ylim(0.0, 1.0)
        row_axes[1].set_ylabel("mean stacking weight")
        row_axes[1].set_title(f"{name}: stacking weights")
        for ax in row_axes:
            _legend(ax, title=None)
    _save(fig, path)


# --------------------------------------------------------------------------- panels

_Y_LABELS = {
    "mean_r": "Mean test correlation r (best layer)",
    "asym": "Left - right mean r (best layer)",
}
_TITLES = {"params": "brain score vs model size", "asymmetry": "lateralization vs model size"}


def _draw_size_panel(ax: Axes, dataset, summary, fits, column: str, fit: str) -> None:
    """Markers per model against n_params, untrained hollow, fit line or a note."""
    rows = summary[summary["dataset"] == dataset] if summary is not None else None
    ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.set_xlabel("Parameters (log scale)")
    if rows is not None:
        _log_ticks(ax, rows.loc[np.isfinite(rows[column]), "n_params"])
    ax.set_ylabel(_Y_LABELS[column])
    if fit == "asymmetry":
        ax.axhline(0.0, color="0.3", lw=0.8, ls="--", zorder=0)
    if rows is not None:
        _pad_log_x(ax, rows.loc[np.isfinite(rows[column]), "n_params"])
    drawn = _size_markers(ax, rows, column) if rows is not None else 0
    if rows is not None:
        drawn += baseline_lines(ax, rows, column)
    row = _fit_row(fits, dataset, fit, TRAINED)
    sizes = np.array([])
    if rows is not None:
        trained = rows[~rows["untrained"].astype(bool) & np.isfinite(rows[column])]
        sizes = trained["n_params"].to_numpy(dtype=float)
        sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    fitted = row is not None and np.isfinite(row["slope"]) and sizes.size
    if fitted:
        _fit_line(ax, row, sizes)
    elif row is not None or np.unique(sizes).size < 2:
        _note(ax, NO_FIT_TEXT, outside=True)
    else:
        _note(ax, "no fit available", outside=True)
    if drawn == 0:
        _note(ax, "no finite scores")
    ax.set_title(f"{dataset}: {_TITLES[fit]}{_subject_note(rows)}", fontsize=10)
    _legend(ax, title=None if not fitted else "[ ] = bootstrap 95% CI of the slope", outside=True)


def _size_markers(ax: Axes, rows: pd.DataFrame, column: str) -> int:
    """Draw one marker per model; return how many were drawn.

    The model names are placed once the figure is laid out (``ax.lmbrain_labels``,
    :func:`_place_labels`).
    """
    ax.lmbrain_labels = []
    ok = rows[np.isfinite(rows[column]) & (rows["n_params"] > 0)]
    colors = _model_colors(rows["model"])
    untrained_labelled = False
    for _, r in ok.iterrows():
        err = r[f"{column}_sem"] if np.isfinite(r[f"{column}_sem"]) else None
        if r["untrained"]:
            label = None if untrained_labelled else UNTRAINED_LABEL
            untrained_labelled = True
            style = {"color": UNTRAINED_COLOR, "mfc": "none", "mew": 1.5}
        else:
            label, style = None, {"color": colors[r["model"]]}
        ax.errorbar(
            r["n_params"], r[column], yerr=err, fmt="o", ms=8, capsize=3, label=label, **style
        )
        ax.lmbrain_labels.append((r["n_params"], r[column], r["model"], style["color"]))
    return len(ok)


#: where a name may go relative to its marker: offset (points), alignment
_LABEL_SPOTS = [
    ((6, 6), "left", "bottom"),
    ((6, -6), "left", "top"),
    ((-6, 6), "right", "bottom"),
    ((-6, -6), "right", "top"),
    ((0, 9), "center", "bottom"),
    ((0, -9), "center", "top"),
    ((10, 0), "left", "center"),
    ((-10, 0), "right", "center"),
]


def _place_labels(ax: Axes, items: list, renderer, marker_pt: float = 8.0) -> None:
    """Annotate each ``(x, y, text, color)`` beside its marker, avoiding overlaps.

    For each name in turn, the first spot of :data:`_LABEL_SPOTS` whose text box lies inside
    the axes and covers no marker (a ``marker_pt``-wide square around each point, error bars
    aside) and no name already placed is taken; if none is free, the spot covering the
    fewest.
    """
    if not items:
        return
    half = marker_pt / 2 * ax.figure.dpi / 72 + 1
    centers = ax.transData.transform([(x, y) for x, y, _, _ in items])
    marks = [(cx - half, cy - half, cx + half, cy + half) for cx, cy in centers]
    frame = ax.get_window_extent(renderer)
    taken: list[tuple] = []
    for (x, y, text, color), own in zip(items, marks, strict=True):
        best, best_cost = None, None
        for offset, ha, va in _LABEL_SPOTS:
            label = ax.annotate(
                text,
                (x, y),
                xytext=offset,
                textcoords="offset points",
                fontsize=8,
                color=color,
                ha=ha,
                va=va,
            )
            box = label.get_window_extent(renderer)
            rect = (box.x0, box.y0, box.x1, box.y1)
            cost = sum(_overlap(rect, m) for m in marks if m is not own)
            cost += sum(_overlap(rect, t) for t in taken)
            inside = (
                box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
            ) and box.y1 <= frame.y1
            cost += 0 if inside else 1
            if best_cost is None or cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (label, rect), cost
            else:
                label.remove()
            if cost == 0:
                break
        taken.append(best[1])


def _overlap(a: tuple, b: tuple) -> int:
    """1 when the rectangles ``(x0, y0, x1, y1)`` intersect, else 0."""
    return int(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _log_ticks(ax: Axes, values: pd.Series) -> None:
    """Few, plain-unit labels on a log x axis: round values within half a decade, 1-2-5 steps
    within a decade or so, else decades; no minor labels (matplotlib's ``3×10⁴`` minor labels collide with the major)."""
    values = values[np.isfinite(values) & (values > 0)]
    decades = np.log10(values.max() / values.min()) if len(values) else 0.0
    if decades <= 0.5:  # too narrow for 1-2-5 steps: evenly spaced round values
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    else:
        subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(_si))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _si(value: float, _pos=None) -> str:
    """``20k``, ``1.5M``, ``3B``: a count in plain units."""
    for scale, suffix in [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")]:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _fit_line(ax: Axes, row: pd.Series, sizes: np.ndarray) -> None:
    xs = np.logspace(np.log10(sizes.min()), np.log10(sizes.max()), 50)
    ys = row["intercept"] + row["slope"] * np.log10(xs)
    ax.plot(xs, ys, color="k", lw=1.5, label=f"log-linear fit: {slope_text(row)}", zorder=1)


def _draw_data_panel(ax: Axes, dataset, scores: pd.DataFrame, fits: pd.DataFrame) -> None:
    """One line per model: best-layer mean r against training TRs."""
    ax.set_xscale("log")
    ax.set_xlabel("Training data (TRs, log scale)")
    ax.set_ylabel(_Y_LABELS["mean_r"])
    best = best_layers(scores[scores["dataset"] == dataset])
    colors = _model_colors(best["model"])
    _pad_log_x(ax, best.loc[np.isfinite(best["mean_r"]), "n_train_trs"].astype(float))
    _log_ticks(ax, best["n_train_trs"].astype(float))
    drawn = 0
    for model, sub in best.groupby("model", sort=True):
        pts = _mean_sem(sub, "train_fraction", ["n_train_trs", "mean_r"])
        pts = pts[np.isfinite(pts["mean_r"]) & (pts["n_train_trs"] > 0)]
        if pts.empty:
            continue
        untrained = bool(sub["untrained"].iloc[0])
        row = _fit_row(fits, dataset, "data", model)
        label = f"{model}: {slope_text(row, ci=False)}" if row is not None else str(model)
        ax.errorbar(
            pts["n_train_trs"],
            pts["mean_r"],
            yerr=_finite_or_none(pts["mean_r_sem"]),
            fmt="o--" if untrained else "o-",
            color=UNTRAINED_COLOR if untrained else colors[model],
            mfc="none" if untrained else None,
            capsize=3,
            label=label,
        )
        drawn += 1
    if drawn == 0:
        _note(ax, "no finite scores")
    pooled = _fit_row(fits, dataset, "data", TRAINED)
    pooled_text = f"\ntrained, common {slope_text(pooled)}" if pooled is not None else ""
    title = f"{dataset}: brain score vs training data{_subject_note(best)}{pooled_text}"
    ax.set_title(title, fontsize=10)
    _legend(ax, outside=True)


def _draw_layer_panel(ax: Axes, dataset, scores: pd.DataFrame) -> None:
    """Mean r against relative depth at the largest fraction, SEM band over subjects."""
    ax.set_xlabel("Relative depth (layer / n_layers)")
    ax.set_ylabel("Mean test correlation r")
    ax.set_xlim(0, 1)
    rows = at_largest_fraction(scores[scores["dataset"] == dataset])
    colors = _model_colors(rows["model"])
    baselines = is_baseline_row(rows)
    drawn = baseline_lines(ax, model_summary(rows[baselines]), "mean_r") if baselines.any() else 0
    for model, sub in rows[~baselines].groupby("model", sort=True):
        pts = _mean_sem(sub, "layer", ["depth", "mean_r"])
        pts = pts[np.isfinite(pts["mean_r"]) & np.isfinite(pts["depth"])]
        if pts.empty:
            continue
        untrained = bool(sub["untrained"].iloc[0])
        color = UNTRAINED_COLOR if untrained else colors[model]
        ax.plot(
            pts["depth"],
            pts["mean_r"],
            "--" if untrained else "-",
            marker=".",
            color=color,
            label=model,
        )
        band = np.nan_to_num(pts["mean_r_sem"].to_numpy(dtype=float))
        ax.fill_between(
            pts["depth"], pts["mean_r"] - band, pts["mean_r"] + band, color=color, alpha=0.2, lw=0
        )
        drawn += 1
    if drawn == 0:
        _note(ax, "no finite scores")
    fraction = rows["train_fraction"].max() if len(rows) else float("nan")
    title = f"{dataset}: score by layer (train fraction {fraction:g})"
    ax.set_title(title + _subject_note(rows, "SEM band"), fontsize=10)
    _legend(ax, title=None, outside=True)


# --------------------------------------------------------------------------- helpers

BASELINE_STYLE = {"ls": ":", "lw": 1.5, "zorder": 0.5}


def is_baseline_row(rows: pd.DataFrame) -> pd.Series:
    """Rows of a baseline feature space (no language model: ``n_params == 0``)."""
    return pd.to_numeric(rows["n_params"], errors="coerce").fillna(-1).eq(0)


def baseline_lines(ax: Axes, summary: pd.DataFrame, column: str) -> int:
    """Draw each baseline of a model summary as a labelled horizontal line.

    Parameters
    ----------
    ax : Axes
    summary : pandas.DataFrame
        Rows of :func:`lmbrain.aggregate.model_summary` (one per model); baselines are the
        rows with ``n_params == 0``.
    column : str
        Value drawn (``"mean_r"`` or ``"asym"``).

    Returns
    -------
    int
        Lines drawn.
    """
    rows = summary[is_baseline_row(summary) & np.isfinite(summary[column])]
    for i, (_, r) in enumerate(rows.sort_values("model").iterrows()):
        color = f"{0.25 + 0.5 * i / max(1, len(rows) - 1):.2f}" if len(rows) > 1 else "0.4"
        ax.axhline(
            r[column],
            color=color,
            label=f"{r['model']} (baseline): {r[column]:.3f}",
            **BASELINE_STYLE,
        )
    return len(rows)


def slope_text(row: pd.Series | None, ci: bool = True) -> str:
    """Legend text of a fit: ``"slope = 0.012 per decade [0.008, 0.016]"``.

    Parameters
    ----------
    row : pandas.Series or None
        A row of the fit table (slope, slope_ci_low, slope_ci_high).
    ci : bool
        Append the bootstrap 95% CI in brackets: the hierarchical one (subjects, then
        voxels), or, where that is NaN (fewer than 3 subjects), the voxel-only one marked
        ``(voxels only)``.

    Returns
    -------
    str
        The text; ``"slope n/a"`` when there is no finite slope.
    """
    if row is None or not np.isfinite(row["slope"]):
        return "slope n/a"
    text = f"slope = {_num(row['slope'])} per decade"
    if not ci:
        return text
    if np.isfinite(row["slope_ci_low"]) and np.isfinite(row["slope_ci_high"]):
        return text + f" [{_num(row['slope_ci_low'])}, {_num(row['slope_ci_high'])}]"
    low, high = row.get("slope_ci_low_voxels", np.nan), row.get("slope_ci_high_voxels", np.nan)
    if np.isfinite(low) and np.isfinite(high):  # < 3 subjects: the voxel-only CI, labelled
        return text + f" [{_num(low)}, {_num(high)}] (voxels only)"
    return text


def _num(value: float) -> str:
    return f"{value:.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1e}"


def _fit_row(fits: pd.DataFrame | None, dataset, fit: str, group) -> pd.Series | None:
    if fits is None or len(fits) == 0:
        return None
    hit = fits[(fits["dataset"] == dataset) & (fits["fit"] == fit) & (fits["group"] == group)]
    return None if hit.empty else hit.iloc[0]


def _mean_sem(rows: pd.DataFrame, key: str, columns: list[str]) -> pd.DataFrame:
    """Mean over subjects of ``columns`` per value of ``key``, with ``<last>_sem``."""
    value = columns[-1]
    grouped = rows.groupby(key, sort=True)
    out = grouped[columns].mean()
    out[f"{value}_sem"] = grouped[value].agg(_sem)
    return out.reset_index()


def _sem(values: pd.Series) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else float("nan")


def _finite_or_none(sem: pd.Series):
    return sem.fillna(0.0).to_numpy(dtype=float) if np.isfinite(sem).any() else None


def _model_colors(models: pd.Series) -> dict:
    names = sorted(models.dropna().unique())
    palette = [f"C{i % 10}" for i in range(len(names))]
    return dict(zip(names, palette, strict=True))


def _subject_note(rows: pd.DataFrame | None, what: str = "error bars: SEM over subjects") -> str:
    if rows is None or rows.empty:
        return ""
    n = int(rows["n_subjects"].max()) if "n_subjects" in rows else rows["subject"].nunique()
    return f"\n(n = {n} subjects; {what})" if n > 1 else "\n(1 subject)"


def _pad_log_x(ax: Axes, xs: pd.Series) -> None:
    """Give a log x axis a decade of room when all points sit at one x value."""
    xs = xs[np.isfinite(xs) & (xs > 0)]
    if len(xs) and xs.min() == xs.max():
        ax.set_xlim(xs.min() / 3, xs.max() * 3)


def _note(ax: Axes, text: str, y: float = 0.5, outside: bool = False) -> None:
    """A boxed remark in the middle of the axes, or outside them (right, bottom), where it
    cannot cover data."""
    ax.text(
        1.03 if outside else 0.5,
        0.0 if outside else y,
        text,
        transform=ax.transAxes,
        ha="left" if outside else "center",
        va="bottom" if outside else "center",
        fontsize=10,
        color="0.3",
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
    )


def _legend(
    ax: Axes, title: str | None = "[ ] = bootstrap 95% CI of the slope", outside: bool = False
) -> None:
    if not ax.get_legend_handles_labels()[0]:
        return
    where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {"loc": "best"}
    ax.legend(fontsize=8, title=title, title_fontsize=7, **where)


# --------------------------------------------------------------------------- alignment


def plot_alignment(
    table: pd.DataFrame, best: pd.DataFrame, path: str | Path, tr: float | None = None
) -> None:
    """Held-out mean r against the shift of the word times (:mod:`lmbrain.alignment`).

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`lmbrain.alignment.alignment_curve` (``subject``, ``features``,
        ``lag_s``, ``lag_trs``, ``mean_r``).
    best : pandas.DataFrame
        Its best lags, :func:`lmbrain.alignment.best_lags` (the rows of subject ``mean``).
    path : str or Path
        Output PNG.
    tr : float, optional
        Repetition time (seconds); default ``lag_s / lag_trs`` of the table. The band of
        +-1 TR around 0 is shaded: a best lag outside it is a misalignment.

    Notes
    -----
    One panel per feature set: one thin line per subject, the mean over subjects thick, its
    best lag marked and written in the legend.
    """
    kinds = sorted(table["features"].unique()) if len(table) else []
    fig = Figure(figsize=(PANEL_SIZE[0] * max(1, len(kinds)), PANEL_SIZE[1]), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(kinds)), squeeze=False)[0]
    if not kinds:
        _note(axes[0], "no alignment curves")
        _save(fig, path)
        return
    if tr is None:
        nonzero = table[table["lag_trs"] != 0]
        tr = float((nonzero["lag_s"] / nonzero["lag_trs"]).median()) if len(nonzero) else None
    for ax, kind in zip(axes, kinds, strict=True):
        rows = table[table["features"] == kind]
        for _, curve in rows.groupby("subject"):
            curve = curve.sort_values("lag_s")
            ax.plot(curve["lag_s"], curve["mean_r"], color="0.7", lw=0.8)
        mean = rows.groupby("lag_s", sort=True)["mean_r"].mean()
        top = best[(best["features"] == kind) & (best["subject"] == "mean")].iloc[0]
        n = rows["subject"].nunique()
        label = f"mean of {n} subject{'s' * (n > 1)}; best lag {top['best_lag_s']:+.3g} s"
        ax.plot(mean.index, mean.to_numpy(), color="C0", lw=2, marker="o", ms=3, label=label)
        if np.isfinite(top["best_lag_s"]):
            ax.plot([top["best_lag_s"]], [top["best_r"]], "v", color="C3", ms=9)
        if tr:
            ax.axvspan(-tr, tr, color="C2", alpha=0.12, label="annotated timing +-1 TR")
        ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
        ax.axhline(0.0, color="0.3", lw=0.6)
        ax.set_xlabel("shift of every word time (s; > 0 = words later)")
        ax.set_ylabel("mean held-out r")
        dataset = rows["dataset"].iloc[0] if "dataset" in rows else ""
        ax.set_title(f"{dataset}: alignment ({kind})")
        _legend(ax, title=None)
    _save(fig, path)


# --------------------------------------------------------------------------- asymmetry by depth


def plot_asymmetry_depth(scores: pd.DataFrame, path: str | Path) -> None:
    """Left - right brain score against relative layer depth, one line per model.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows; the largest train fraction of each dataset is used.
    path : str or Path
        Output PNG.

    Notes
    -----
    x = layer / n_layers (0 = embeddings), y = mean over subjects of ``mean_r_left -
    mean_r_right`` with a SEM band, a dashed zero line; untrained models dashed grey,
    baselines (no layers) left out. Bonnasse-Gahot & Pallier (2024) show how the
    lateralisation develops across the layers of each model.
    """
    _save(
        _per_dataset(scores, partial(_draw_asym_depth_panel, scores=scores), WIDE_PANEL_SIZE),
        path,
    )


def _draw_asym_depth_panel(ax: Axes, dataset, scores: pd.DataFrame) -> None:
    ax.set_xlabel("Relative depth (layer / n_layers)")
    ax.set_ylabel("Left - right mean test r")
    ax.set_xlim(0, 1)
    ax.axhline(0.0, ls="--", c="0.4", lw=1, zorder=0.5)
    rows = at_largest_fraction(scores[scores["dataset"] == dataset])
    rows = rows[~is_baseline_row(rows)].assign(asym=rows["mean_r_left"] - rows["mean_r_right"])
    colors = _model_colors(rows["model"])
    drawn = 0
    for model, sub in rows.groupby("model", sort=True):
        pts = _mean_sem(sub, "layer", ["depth", "asym"])
        pts = pts[np.isfinite(pts["asym"]) & np.isfinite(pts["depth"])]
        if pts.empty:
            continue
        untrained = bool(sub["untrained"].iloc[0])
        color = UNTRAINED_COLOR if untrained else colors[model]
        style = "--" if untrained else "-"
        ax.plot(pts["depth"], pts["asym"], style, marker=".", color=color, label=model)
        band = np.nan_to_num(pts["asym_sem"].to_numpy(dtype=float))
        ax.fill_between(
            pts["depth"], pts["asym"] - band, pts["asym"] + band, color=color, alpha=0.2, lw=0
        )
        drawn += 1
    if drawn == 0:
        _note(ax, "no hemisphere scores")
    fraction = rows["train_fraction"].max() if len(rows) else float("nan")
    title = f"{dataset}: left - right by layer (train fraction {fraction:g})"
    ax.set_title(title + _subject_note(rows, "SEM band"), fontsize=10)
    _legend(ax, title=None, outside=True)
