"""Figures: valid PNGs for normal and degenerate inputs, and the right text on them."""

from __future__ import annotations

import struct

import matplotlib
import numpy as np
import pandas as pd
import pytest

from lmbrain import plotting
from lmbrain.aggregate import FIT_COLUMNS, SCORE_COLUMNS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZES = {"small": 1e6, "medium": 1e7, "large": 1e8}
FRACTIONS = {0.5: 400, 1.0: 800}


def make_scores(models=SIZES, untrained=("large",), subjects=("S1", "S2"), dataset="ds"):
    """Tiny score table: three layers, two fractions, untrained twins of some models."""
    rng = np.random.default_rng(0)
    rows = []
    entries = [(m, n, False) for m, n in models.items()]
    entries += [(f"{m}-untrained", models[m], True) for m in untrained if m in models]
    for model, n_params, is_untrained in entries:
        for subject in subjects:
            for fraction, trs in FRACTIONS.items():
                for layer in range(3):
                    r = 0.02 if is_untrained else 0.05 + 0.01 * np.log10(n_params) * fraction
                    r += 0.01 * layer + rng.normal(0, 0.003)
                    record = dict.fromkeys(SCORE_COLUMNS, 0)
                    record.update(
                        dataset=dataset,
                        subject=subject,
                        model=model,
                        family="fam",
                        untrained=is_untrained,
                        n_params=int(n_params),
                        n_layers=3,
                        layer=layer,
                        depth=layer / 3,
                        train_fraction=fraction,
                        n_train_trs=trs,
                        mean_r=r,
                        mean_r_left=r + 0.002,
                        mean_r_right=r - 0.002,
                        mean_cv_score=r,
                        fit_path=f"{model}/{subject}/{layer}/{fraction}.npz",
                    )
                    rows.append(record)
    return pd.DataFrame(rows)[list(SCORE_COLUMNS)]


def make_fits(scores, dataset="ds", slope=0.012, ci=(0.008, 0.016)):
    """Fit table with a planted slope and CI for every fit the plots look up."""
    groups = [("params", "trained"), ("asymmetry", "trained"), ("data", "trained")]
    groups += [("data", m) for m in sorted(scores["model"].unique())]
    rows = [
        {
            "dataset": dataset,
            "fit": fit,
            "group": group,
            "x_variable": "n_params",
            "y_variable": "mean_r",
            "slope": slope,
            "intercept": 0.01,
            "slope_ci_low": ci[0],
            "slope_ci_high": ci[1],
            "r2": 0.9,
            "n_points": 3,
            "n_boot": 100,
        }
        for fit, group in groups
    ]
    return pd.DataFrame(rows, columns=list(FIT_COLUMNS))


def assert_png(path, panels=1, panel=plotting.PANEL_SIZE):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    w_in, h_in = panel
    assert (width, height) == (round(w_in * panels * 150), round(h_in * 150))
    assert len(data) > 10_000  # a drawn figure, not an empty canvas
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary file left


WIDE = {"data", "layers", "models", "asymmetry"}  # legend outside the axes: wider panels
ALL_PLOTS = {
    "models": lambda s, f, p: plotting.plot_scaling_models(s, f, p),
    "data": lambda s, f, p: plotting.plot_scaling_data(s, f, p),
    "layers": lambda s, f, p: plotting.plot_layers(s, p),
    "asymmetry": lambda s, f, p: plotting.plot_asymmetry(s, f, p),
}


@pytest.mark.parametrize("name", sorted(ALL_PLOTS))
def test_plots_write_valid_png(tmp_path, name):
    scores = make_scores()
    path = tmp_path / "figs" / f"{name}.png"
    path.parent.mkdir()
    path.write_bytes(b"stale")
    ALL_PLOTS[name](scores, make_fits(scores), path)
    assert_png(path, panel=plotting.WIDE_PANEL_SIZE if name in WIDE else plotting.PANEL_SIZE)
    assert plt.get_fignums() == []


def _degenerate_inputs():
    single = make_scores(models={"only": 1e7}, untrained=())
    one_fraction = make_scores()
    one_fraction = one_fraction[one_fraction["train_fraction"] == 1.0]
    with_nan = make_scores()
    with_nan.loc[with_nan["model"] == "small", ["mean_r", "mean_r_left"]] = np.nan
    with_nan.loc[with_nan["layer"] == 0, "mean_cv_score"] = np.nan
    all_nan = make_scores(subjects=("S1",))
    all_nan[["mean_r", "mean_r_left", "mean_r_right"]] = np.nan
    nan_fits = make_fits(single)
    nan_fits[["slope", "intercept", "slope_ci_low", "slope_ci_high", "r2"]] = np.nan
    return {
        "single_model": (single, nan_fits),
        "single_fraction": (one_fraction, make_fits(one_fraction)),
        "nan_values": (with_nan, make_fits(with_nan, ci=(np.nan, np.nan))),
        "all_nan": (all_nan, nan_fits),
        "empty": (make_scores().iloc[0:0], make_fits(make_scores()).iloc[0:0]),
        "no_fits": (make_scores(), None),
    }


@pytest.mark.parametrize("case", sorted(_degenerate_inputs()))
@pytest.mark.parametrize("name", sorted(ALL_PLOTS))
def test_plots_survive_degenerate_inputs(tmp_path, name, case):
    scores, fits = _degenerate_inputs()[case]
    path = tmp_path / f"{name}_{case}.png"
    ALL_PLOTS[name](scores, fits, path)
    assert_png(path, panel=plotting.WIDE_PANEL_SIZE if name in WIDE else plotting.PANEL_SIZE)
    assert plt.get_fignums() == []


def _texts(fig):
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()] if legend else []
    return labels, [t.get_text() for t in ax.texts], ax


def test_scaling_models_content():
    scores = make_scores()
    labels, texts, ax = _texts(plotting._build_scaling_models(scores, make_fits(scores)))
    assert any("slope = 0.012 per decade [0.008, 0.016]" in t for t in labels)
    assert labels.count(plotting.UNTRAINED_LABEL) == 1
    assert set(SIZES) | {"large-untrained"} <= set(texts)  # model names annotated
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Parameters (log scale)"
    assert ax.get_ylabel() == "Mean test correlation r (best layer)"
    assert "ds" in ax.get_title() and "SEM" in ax.get_title()
    # The fit line spans the trained sizes and follows intercept + slope * log10(x).
    line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("log-linear fit"))
    x, y = line.get_data()
    assert x.min() == pytest.approx(1e6) and x.max() == pytest.approx(1e8)
    np.testing.assert_allclose(y, 0.01 + 0.012 * np.log10(x))


def test_single_model_notes_missing_fit():
    scores = make_scores(models={"only": 1e7}, untrained=())
    fits = make_fits(scores)
    fits.loc[fits["fit"].isin(["params", "asymmetry"]), "slope"] = np.nan
    for build in (plotting._build_scaling_models, plotting._build_asymmetry):
        labels, texts, _ = _texts(build(scores, fits))
        assert plotting.NO_FIT_TEXT in texts
        assert not any(t.startswith("log-linear fit") for t in labels)


def test_asymmetry_and_data_content():
    scores = make_scores()
    fits = make_fits(scores)
    labels, _, ax = _texts(plotting._build_asymmetry(scores, fits))
    assert ax.get_ylabel() == "Left - right mean r (best layer)"
    assert any("[0.008, 0.016]" in t for t in labels)
    assert any(np.allclose(ln.get_ydata(), 0.0) for ln in ax.get_lines())  # zero line
    labels, _, ax = _texts(plotting._build_scaling_data(scores, fits))
    assert ax.get_xlabel() == "Training data (TRs, log scale)"
    assert sum("slope = 0.012 per decade" in t for t in labels) == len(scores["model"].unique())


def test_layers_one_line_per_model_at_depth():
    scores = make_scores()
    _, _, ax = _texts(plotting._build_layers(scores))
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == set(scores["model"].unique())
    assert lines["large-untrained"].get_linestyle() == "--"
    np.testing.assert_allclose(lines["small"].get_xdata(), [0, 1 / 3, 2 / 3])
    expected = scores[(scores["model"] == "small") & (scores["train_fraction"] == 1.0)]
    np.testing.assert_allclose(
        lines["small"].get_ydata(), expected.groupby("layer")["mean_r"].mean().to_numpy()
    )


def test_one_panel_per_dataset(tmp_path):
    scores = pd.concat([make_scores(dataset="a"), make_scores(dataset="b")])
    fits = pd.concat([make_fits(scores, "a"), make_fits(scores, "b")])
    path = tmp_path / "two.png"
    plotting.plot_scaling_models(scores, fits, path)
    assert_png(path, panels=2, panel=plotting.WIDE_PANEL_SIZE)


def test_slope_text_formats():
    row = pd.Series({"slope": 0.0004, "slope_ci_low": -0.0001, "slope_ci_high": 0.0009})
    assert plotting.slope_text(row) == "slope = 4.0e-04 per decade [-1.0e-04, 9.0e-04]"
    assert plotting.slope_text(row, ci=False) == "slope = 4.0e-04 per decade"
    assert plotting.slope_text(None) == "slope n/a"
    two_subjects = pd.Series(
        {
            "slope": 0.01,
            "slope_ci_low": np.nan,
            "slope_ci_high": np.nan,
            "slope_ci_low_voxels": 0.008,
            "slope_ci_high_voxels": 0.012,
        }
    )
    assert plotting.slope_text(two_subjects).endswith("[0.008, 0.012] (voxels only)")


# -- legibility: measured on the drawn figure, in display coordinates -------------------------
def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


@pytest.mark.parametrize(
    "sizes",
    [
        {"a": 3e4, "b": 2e5, "c": 4e6, "d": 7e7, "e": 3e9},  # many decades
        {"a": 2.1e4, "b": 5.3e4, "c": 1.3e5},  # less than one decade
        {"a": 1e7, "b": 1.2e7},  # nearly one size
    ],
)
@pytest.mark.parametrize("build", [plotting._build_scaling_models, plotting._build_asymmetry])
def test_log_axis_tick_labels_do_not_overlap(sizes, build):
    scores = make_scores(models=sizes, untrained=())
    fig = build(scores, make_fits(scores))
    renderer = _drawn(fig)
    ax = fig.axes[0]
    labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    inside = ax.get_xlim()
    labels = [t for t in labels if inside[0] <= t.get_position()[0] <= inside[1]]
    assert len(labels) >= 2, [t.get_text() for t in ax.get_xticklabels()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not _boxes_overlap(boxes[i], boxes[j]), (labels[i], labels[j])
    assert all("\\times" not in t.get_text() for t in labels)  # plain units: 30k, 1M
    assert not [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]


def test_model_names_and_legend_leave_the_markers_free():
    """Crowded sizes and scores: no name covers another model's marker or name, and the
    legend is outside the axes."""
    sizes = {"m1": 1.0e7, "m2": 1.1e7, "m3": 1.2e7, "m4": 1.3e7, "big": 1e9}
    scores = make_scores(models=sizes, untrained=("m2", "big"))
    fig = plotting._build_scaling_models(scores, make_fits(scores))
    renderer = _drawn(fig)
    ax = fig.axes[0]
    names = [t for t in ax.texts if t.get_text() in set(scores["model"])]
    assert len(names) == scores["model"].nunique()
    points = {}
    for t in names:
        points[t.get_text()] = ax.transData.transform(t.xy)
    half = 4 * fig.dpi / 72
    for t in names:
        box = t.get_window_extent(renderer)
        for other, (cx, cy) in points.items():
            if other == t.get_text():
                continue
            mark = Bbox.from_extents(cx - half, cy - half, cx + half, cy + half)
            assert not _boxes_overlap(box, mark), (t.get_text(), other)
        for u in names:
            if u is not t:
                assert not _boxes_overlap(box, u.get_window_extent(renderer)), (t, u)
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # right of the axes


def test_error_bars_are_defined_in_every_panel():
    scores = make_scores()
    fits = make_fits(scores)
    for build in (plotting._build_scaling_models, plotting._build_asymmetry):
        assert "error bars: SEM over subjects" in build(scores, fits).axes[0].get_title()
    ax = plotting._build_scaling_data(scores, fits).axes[0]
    assert "error bars: SEM over subjects" in ax.get_title()
    assert "SEM band" in plotting._build_layers(scores).axes[0].get_title()
