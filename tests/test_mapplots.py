"""Map and ROI figures: which fit is shown, and that every kind of map draws offline."""

import socket

import numpy as np
import pandas as pd
import pytest

from lmbrain import brainmaps, mapplots
from lmbrain.demo import demo_mask
from lmbrain.geometry import SurfaceGeometry, VolumeGeometry

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (nilearn must not download)."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def scores():
    rows = []
    for model, untrained, cv, r in [
        ("a", False, [0.1, 0.3], [0.20, 0.10]),  # CV picks layer 1 (r 0.10)
        ("b", False, [0.2, 0.1], [0.15, 0.40]),  # CV picks layer 0 (r 0.15): b wins
        ("u", True, [0.5, 0.1], [0.90, 0.10]),  # untrained: never shown while trained exist
    ]:
        for layer in (0, 1):
            for frac in (0.5, 1.0):
                rows.append(
                    {
                        "dataset": "d",
                        "subject": "s1",
                        "model": model,
                        "untrained": untrained,
                        "layer": layer,
                        "train_fraction": frac,
                        "mean_cv_score": cv[layer] if frac == 1.0 else 9.0,
                        "mean_r": r[layer] if frac == 1.0 else 9.0,
                    }
                )
    return pd.DataFrame(rows)


def test_best_fit_is_the_best_trained_model_at_its_cv_layer():
    table = scores()
    row = mapplots.best_fit(table, "s1")
    assert (row["model"], row["layer"], row["train_fraction"]) == ("b", 0, 1.0)
    only_untrained = table[table["untrained"]]
    assert mapplots.best_fit(only_untrained, "s1")["model"] == "u"
    with pytest.raises(ValueError, match="no scored fit"):
        mapplots.best_fit(table, "s9")


def _values(n):
    return {"r": np.linspace(-0.2, 0.6, n), "alpha": np.ones(n)}


def test_volume_map_figure(tmp_path, no_network):
    mask, affine = demo_mask(20)
    geo = VolumeGeometry(mask, affine)
    paths = brainmaps.write_volume_map(_values(geo.n_voxels), geo, tmp_path / "m")
    mapplots.plot_brain_map("volume", paths, "vol", tmp_path / "v.png")
    assert (tmp_path / "v.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("mesh", ["fsaverage5", "fsaverage6"])
def test_surface_map_figure_offline(tmp_path, no_network, mesh):
    n_vert = {"fsaverage5": 10242, "fsaverage6": 40962}[mesh]
    geo = SurfaceGeometry(
        mesh, np.array(["L"] * 50 + ["R"] * 50), np.r_[np.arange(50), np.arange(50)],
        {"L": n_vert, "R": n_vert},
    )  # fmt: skip
    paths = brainmaps.write_surface_map(_values(100), geo, tmp_path / "m")
    mapplots.plot_brain_map("surface", paths, "surf", tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG


def test_vector_map_figure(tmp_path):
    paths = brainmaps.write_vector_map(_values(10), np.array(["L", "R"] * 5), tmp_path / "m")
    mapplots.plot_brain_map("vector", paths, "vec", tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="unknown map kind"):
        mapplots.plot_brain_map("flat", paths, "x", tmp_path / "x.png")


def test_roi_bars(tmp_path):
    table = scores()
    rows = []
    for _, fit in table.iterrows():
        for roi in ("A", "B"):
            for hemi in ("L", "R", "both"):
                rows.append({**fit.to_dict(), "roi": roi, "hemisphere": hemi, "mean_r": 0.1})
    mapplots.plot_roi_bars(pd.DataFrame(rows), table, tmp_path / "roi.png")
    assert (tmp_path / "roi.png").read_bytes()[:8] == PNG
    mapplots.plot_roi_bars(pd.DataFrame(columns=list(rows[0])), table, tmp_path / "none.png")
    assert (tmp_path / "none.png").read_bytes()[:8] == PNG


def test_brain_map_colour_bars_say_what_they_show(tmp_path, no_network):
    mask, affine = demo_mask(20)
    geo = VolumeGeometry(mask, affine)
    paths = brainmaps.write_volume_map(_values(geo.n_voxels), geo, tmp_path / "m")
    fig = mapplots._volume_figure(paths["image"], "r", "vol")
    labels = [ax.get_ylabel() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
    assert "test correlation r" in labels
    fig.canvas.draw()
    label = next(ax.yaxis.label for ax in fig.axes if ax.get_ylabel() == "test correlation r")
    assert fig.bbox.contains(*label.get_window_extent().p0)  # drawn inside the figure
    assert fig.bbox.contains(*label.get_window_extent().p1)
    geo = SurfaceGeometry(
        "fsaverage5", np.array(["L"] * 50 + ["R"] * 50), np.r_[np.arange(50), np.arange(50)],
        {"L": 10242, "R": 10242},
    )  # fmt: skip
    paths = brainmaps.write_surface_map(_values(100), geo, tmp_path / "s")
    fig = mapplots._surface_figure(paths, "alpha", "surf")
    assert "ridge penalty alpha" in [ax.get_ylabel() for ax in fig.axes]
