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


def test_planted_forecast_distance_recovered():
    planted = [3] * 8 + [7] * 8 + [None] * 4
    data = ToyDataset(planted)
    result = fit_forecast(
        data,
        "S",
        lambda story, layer: data.features[story],
        current_layer=0,
        forecast_layers=[0],
        distances=[0, 1, 3, 5, 7],
        temporal={"method": "lanczos", "delays": [1, 2, 3, 4], "window": 3},
        fitting={
            "alphas": [1.0, 10.0, 100.0, 1000.0],
            "n_folds": 4,
            "backend": "numpy",
            "solver": "auto",
        },
    )
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
