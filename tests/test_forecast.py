"""Forecast windows: brute-force windows, exact PCA, and a planted forecast distance recovered."""

from __future__ import annotations

import numpy as np
import pytest

from lmbrain.forecast import (
    best_distance,
    fit_forecast,
    fit_pca,
    forecast_summary,
    forecast_window,
    pca_transform,
)
from lmbrain.stimulus import Words
from lmbrain.temporal import build_design


def brute_window(x, d, w, mode):
    n, dim = x.shape
    out = []
    for i in range(n):
        parts = []
        for j in range(i + d - w + 1, i + d + 1):
            parts.append(x[j] if 0 <= j < n else np.zeros(dim))
        out.append(np.concatenate(parts) if mode == "concat" else np.sum(parts, axis=0) / w)
    return np.array(out)


@pytest.mark.parametrize("mode", ["mean", "concat"])
@pytest.mark.parametrize(("d", "w"), [(0, 1), (1, 1), (3, 1), (3, 2), (2, 4), (9, 3), (12, 1)])
def test_window_brute_force(d, w, mode):
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    np.testing.assert_allclose(forecast_window(x, d, w, mode), brute_window(x, d, w, mode), 1e-6)


def test_window_end_of_story_is_zero_padded():
    x = np.arange(1, 6, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(forecast_window(x, 2)[:, 0], [3, 4, 5, 0, 0])
    np.testing.assert_allclose(forecast_window(x, 2, 2)[:, 0], [2.5, 3.5, 4.5, 2.5, 0])


def test_pca_exact():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 6))  # rank 3 in 6 dimensions
    mean, comps = fit_pca(x, 5)
    assert comps.shape == (3, 6)  # limited by the rank
    np.testing.assert_allclose(comps @ comps.T, np.eye(3), atol=1e-10)
    z = pca_transform(x, mean, comps)
    np.testing.assert_allclose(z.astype(float) @ comps + mean, x, atol=1e-4)
    variances = z.var(axis=0)
    assert np.all(np.diff(variances) <= 1e-6)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1][:3]
    np.testing.assert_allclose(variances, eig, rtol=1e-4)


def test_best_distance_ties_and_nan():
    gain = np.array(
        [[[1.0, np.nan, 0.0], [2.0, np.nan, 0.0]], [[2.0, np.nan, 3.0], [0, np.nan, 0]]]
    )
    d, k = best_distance(gain)
    np.testing.assert_array_equal(d, [1, -1, 0])
    np.testing.assert_array_equal(k, [0, -1, 1])


# --------------------------------------------------------------------------- planted effect


class ToyDataset:
    """Words every second, random word features, voxels tuned to a planted distance."""

    tr, trim_start, trim_end = 2.0, 3, 3

    def __init__(self, planted, n_words=160, dim=4, seed=0):
        rng = np.random.default_rng(seed)
        self.train_stories = ["a", "b", "c", "d"]
        self.test_stories = ["t"]
        self.features, self.times, self.y = {}, {}, {}
        n_vox = len(planted)
        beta_cur = rng.normal(size=(dim * 4, n_vox))
        beta_fut = rng.normal(size=(dim * 4, n_vox))
        for story in self.train_stories + self.test_stories:
            x = rng.normal(size=(n_words, dim)).astype(np.float32)
            times = 10.0 + np.arange(n_words) * 1.0 + rng.uniform(-0.2, 0.2, n_words)
            n_trs = int(np.ceil((times[-1] + 12) / self.tr))
            cur = build_design(x, times, n_trs, self.tr, self.trim_start, self.trim_end)
            signal = np.zeros((cur.shape[0], n_vox))
            for v, d in enumerate(planted):
                signal[:, v] = 0.5 * cur @ beta_cur[:, v]
                if d is not None:
                    fut = build_design(forecast_window(x, d), times, n_trs, self.tr, 3, 3)
                    signal[:, v] += fut @ beta_fut[:, v]
            signal /= signal.std(axis=0)
            y = rng.normal(size=(n_trs, n_vox))
            y[self.trim_start : n_trs - self.trim_end] += 2 * signal
            self.features[story], self.times[story], self.y[story] = x, times, y
        self.hemi = np.array(["L"] * (n_vox // 2) + ["R"] * (n_vox - n_vox // 2))

    def words(self, story):
        t = self.times[story]
        return Words([f"w{i}" for i in range(t.size)], t - 0.1, t + 0.1)

    def responses(self, subject, story):
        return self.y[story]

    def test_target(self, subject, story):
        return self.y[story]

    def voxels(self, subject):
        return {"hemisphere": self.hemi, "roi": np.array(["X"] * self.hemi.size)}


PLANTED = [3] * 8 + [7] * 8 + [None] * 4  # voxel -> planted forecast distance (None: none)
DISTANCES = [0, 1, 3, 5, 7]
TEMPORAL = {"method": "lanczos", "delays": [1, 2, 3, 4], "window": 3}
FITTING = {"alphas": [1.0, 10.0, 100.0, 1000.0], "n_folds": 4, "backend": "numpy", "solver": "auto"}


@pytest.fixture(scope="module")
def planted():
    """One forecast fit (with the random-future control) of the planted toy data."""
    data = ToyDataset(PLANTED)
    result = fit_forecast(
        data,
        "S",
        lambda story, layer: data.features[story],
        current_layer=0,
        forecast_layers=[0],
        distances=DISTANCES,
        temporal=TEMPORAL,
        fitting=FITTING,
        control="random_future",
        seed=5,
    )
    return data, result


def test_planted_forecast_distance_recovered(planted):
    data, result = planted
    best = result["best_d"]
    np.testing.assert_array_equal(best[:8], 3)
    np.testing.assert_array_equal(best[8:16], 7)
    assert (result["best_k"][:16] == 0).all()
    F = result["F"][0]
    d3, d7 = 2, 4
    assert F[d3, :8].mean() > 0.1 and F[d7, 8:16].mean() > 0.1
    assert abs(F[:, 16:].mean()) < 0.05  # no planted forecast: no gain
    np.testing.assert_allclose(result["F"], result["r"] - result["r_base"], atol=1e-6)
    table = forecast_summary(result, data.voxels("S"), {"subject": "S"})
    left = table[(table.hemisphere == "L") & (table.roi == "all")].set_index("distance")
    np.testing.assert_allclose(left["mean_F"], F[:, :10].mean(axis=1), rtol=1e-5)
    assert left.loc[3, "share_best"] == pytest.approx(0.8)  # 8 of the 10 left voxels


def test_random_future_control(planted):
    """Responses that depend on the true future words: F > F_control; no forecast: both ~ 0."""
    _, result = planted
    F, Fc = result["F"][0], result["F_control"][0]
    np.testing.assert_allclose(
        result["F_control"], result["r_control"] - result["r_base"], atol=1e-6
    )
    d3, d7 = 2, 4
    assert (F[d3, :8] > Fc[d3, :8]).all() and (F[d7, 8:16] > Fc[d7, 8:16]).all()
    assert F[d3, :8].mean() - Fc[d3, :8].mean() > 0.1
    assert abs(Fc[:, :16].mean()) < 0.05  # random words carry none of the planted future
    assert abs(F[:, 16:].mean()) < 0.05 and abs(Fc[:, 16:].mean()) < 0.05
    assert str(result["control"]) == "random_future"
    table = forecast_summary(result, {"hemisphere": np.array(["L"] * 20)}, {})
    rows = table[table.hemisphere == "all"].set_index("distance")
    np.testing.assert_allclose(rows["mean_F_control"], Fc.mean(axis=1), rtol=1e-5)


def test_random_future_is_a_seeded_permutation():
    from lmbrain.forecast import random_future

    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    a = random_future(x, 0, "story")
    np.testing.assert_array_equal(np.sort(a[:, 0]), x[:, 0])  # same words, other order
    np.testing.assert_array_equal(a[:, 1] - a[:, 0], 1)  # rows move whole
    np.testing.assert_array_equal(a, random_future(x, 0, "story"))
    assert not np.array_equal(a, random_future(x, 1, "story"))
    assert not np.array_equal(a, random_future(x, 0, "other"))


def test_control_off_and_unknown():
    from lmbrain.errors import ConfigError

    data = ToyDataset([3, None], n_words=60)
    kwargs = dict(distances=[0, 3], temporal=TEMPORAL, fitting=FITTING)
    result = fit_forecast(data, "S", lambda s, k: data.features[s], 0, [0], **kwargs)
    assert np.isnan(result["F_control"]).all() and str(result["control"]) == "none"
    assert int(result["n_train_stories"]) == 4 and int(result["n_test_stories"]) == 1
    table = forecast_summary(result, data.voxels("S"), {})
    assert table["mean_F_control"].isna().all() and (table["n_subjects"] == 1).all()
    assert (table["n_train_stories"] == 4).all() and (table["n_test_stories"] == 1).all()
    assert table["resampling"].str.startswith("none").all()
    with pytest.raises(ConfigError, match="forecast.control"):
        fit_forecast(data, "S", lambda s, k: data.features[s], 0, [0], control="shuffle", **kwargs)


# --------------------------------------------------------------------------- maps


def toy_geometry(n_vox):
    from lmbrain.geometry import VolumeGeometry

    mask = np.zeros((6, 5, 4), bool)
    mask.flat[np.random.default_rng(3).choice(mask.size, n_vox, replace=False)] = True
    return VolumeGeometry(mask=mask, affine=np.diag([3.0, 3.0, 3.0, 1.0]))


def test_forecast_volume_map_recovers_planted_distance(planted, tmp_path):
    import json

    from lmbrain.brainmaps import read_volume_map
    from lmbrain.forecast_maps import write_forecast_map
    from lmbrain.io import save_npz

    data, result = planted
    save_npz(tmp_path / "f.npz", **result, hemisphere=data.hemi)
    geometry = toy_geometry(len(PLANTED))
    paths = write_forecast_map(tmp_path / "f.npz", geometry, tmp_path / "forecast" / "m")
    maps, affine = read_volume_map(paths["image"])
    np.testing.assert_array_equal(affine, geometry.affine)
    mask = geometry.mask
    best_d = maps["best_d"][mask]
    np.testing.assert_array_equal(best_d[:8], 3)  # the planted distance of each region
    np.testing.assert_array_equal(best_d[8:16], 7)
    assert np.isnan(maps["best_d"][~mask]).all()
    d_index = {d: i for i, d in enumerate(DISTANCES)}
    expected = [result["F"][0, d_index[int(d)], v] for v, d in enumerate(result["best_d"])]
    np.testing.assert_allclose(maps["F_best"][mask], expected, rtol=1e-6)
    np.testing.assert_allclose(maps["F_d5"][mask], result["F"][0, 3], rtol=1e-6)
    np.testing.assert_allclose(maps["F_control_d3"][mask], result["F_control"][0, 2], rtol=1e-6)
    np.testing.assert_allclose(maps["r_base"][mask], result["r_base"], rtol=1e-6)
    volumes = json.loads(open(paths["sidecar"]).read())["volumes"]
    assert volumes[0] == "r" and {"best_d", "best_k", "F_best", "F_control_best"} <= set(volumes)


def test_forecast_vector_map_and_figures(planted, tmp_path):
    from lmbrain.forecast_maps import plot_forecast_maps, write_forecast_map
    from lmbrain.io import save_npz

    data, result = planted
    save_npz(tmp_path / "f.npz", **result, hemisphere=data.hemi)
    paths = write_forecast_map(tmp_path / "f.npz", None, tmp_path / "m")
    with np.load(paths["vector"]) as npz:
        np.testing.assert_array_equal(npz["best_d"][:16], [3] * 8 + [7] * 8)
        np.testing.assert_array_equal(npz["hemisphere"], data.hemi)
    plot_forecast_maps("vector", {"m": str(tmp_path / "m")}, "S", tmp_path / "v.png")
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
    write_forecast_map(tmp_path / "f.npz", toy_geometry(len(PLANTED)), tmp_path / "vol")
    plot_forecast_maps("volume", {"m": str(tmp_path / "vol")}, "S", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_plan_forecast():
    from lmbrain.errors import ConfigError
    from lmbrain.forecast import plan_forecast

    models = {"m": {"model": "x"}, "u": {"model": "x", "untrained": True}, "b": {"baseline": "s"}}
    layers = {"m": [0, 2, 4], "u": [0, 2, 4], "b": [0]}
    n_layers = {"m": 4, "u": 4, "b": 1}.__getitem__
    assert plan_forecast({"enabled": False}, models, layers, n_layers) == {}
    assert plan_forecast({"enabled": True}, models, layers, n_layers) == {"m": (4, [4])}
    settings = {"enabled": True, "layer": -3, "forecast_layers": [0, -1], "models": ["u"]}
    assert plan_forecast(settings, models, layers, n_layers) == {"u": (2, [0, 4])}
    with pytest.raises(ConfigError, match="forecast.layer"):
        plan_forecast({"enabled": True, "layer": 1}, models, layers, n_layers)
    with pytest.raises(ConfigError, match="unknown model id"):
        plan_forecast({"enabled": True, "models": ["zz"]}, models, layers, n_layers)


def test_plot_forecast(tmp_path):
    from lmbrain.forecast import plot_forecast

    rows = [
        {
            "dataset": "d",
            "subject": s,
            "model": "m",
            "layer": 1,
            "distance": d,
            "hemisphere": h,
            "roi": "all",
            "mean_F": 0.01 * d,
        }
        for s in ["S1", "S2"]
        for d in range(4)
        for h in ["L", "R", "all"]
    ]
    import pandas as pd

    plot_forecast(pd.DataFrame(rows), tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_forecast_roi_and_control(planted, tmp_path):
    from lmbrain.forecast import plot_forecast, plot_forecast_roi

    data, result = planted
    voxels = {"hemisphere": data.hemi, "roi": np.array(["A"] * 10 + ["B"] * 10)}
    table = forecast_summary(result, voxels, {"dataset": "d", "subject": "S", "model": "m"})
    assert {"A", "B"} <= set(table["roi"])
    plot_forecast_roi(table, tmp_path / "roi.png")
    assert (tmp_path / "roi.png").stat().st_size > 10_000
    plot_forecast(table, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    plot_forecast_roi(table[table.roi == "all"], tmp_path / "none.png")  # no ROI rows
    assert (tmp_path / "none.png").read_bytes()[:4] == b"\x89PNG"
