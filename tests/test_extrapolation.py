"""Extrapolation to 90% of the noise ceiling: planted slopes (closed form), brute-force bootstrap."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lmbrain.aggregate import SCORE_COLUMNS
from lmbrain.extrapolation import (
    NOTE_FLAT,
    extrapolate,
    log10_x_at,
    scaling_extrapolations,
    two_level_bootstrap,
)


def test_log10_x_at_closed_form():
    assert log10_x_at(0.9, 0.1, 0.3) == pytest.approx(6.0)
    assert log10_x_at(0.9, 0.0, 0.3) == np.inf
    assert log10_x_at(0.9, -0.1, 0.3) == np.inf
    np.testing.assert_allclose(log10_x_at(0.5, np.array([0.1, 0.05]), 0.0), [5.0, 10.0])


def _planted(a, b, lx, rng, n_sub=3, n_vox=50):
    """Per subject (n_points, n_voxels) = a + b * lx + e_v (e the same for every point)."""
    values, offsets = [], []
    for _ in range(n_sub):
        e = rng.normal(0, 0.05, n_vox)
        values.append(a + b * lx[:, None] + e[None, :])
        offsets.append(e)
    return values, offsets


def test_extrapolate_planted_slope():
    rng = np.random.default_rng(0)
    a, b = 0.1, 0.05
    x = np.array([1e6, 1e7, 1e8, 1e9])
    lx = np.log10(x)
    values, offsets = _planted(a, b, lx, rng)
    y = np.mean([v.mean(axis=1) for v in values], axis=0)
    ebar = np.mean([e.mean() for e in offsets])
    out = extrapolate(x, y, values, target=0.9, n_boot=300, rng=np.random.default_rng(1))
    assert out["slope"] == pytest.approx(b)
    assert out["intercept"] == pytest.approx(a + ebar)
    assert out["log10_x_target"] == pytest.approx((0.9 - a - ebar) / b)
    assert out["x_target"] == pytest.approx(10 ** ((0.9 - a - ebar) / b))
    # every replicate keeps the exact slope; only the intercept moves with the drawn offsets
    assert out["slope_ci_low"] == pytest.approx(b) and out["slope_ci_high"] == pytest.approx(b)
    e_all = np.concatenate(offsets)
    assert (0.9 - a - e_all.max()) / b <= out["log10_x_target_ci_low"]
    assert out["log10_x_target_ci_low"] < out["log10_x_target"] < out["log10_x_target_ci_high"]
    assert out["log10_x_target_ci_high"] <= (0.9 - a - e_all.min()) / b
    assert out["note"] == ""
    # subjects only: every subject has the same slope, so that interval is exact too; the
    # voxel-only interval keeps the subjects and is narrower than the hierarchical one
    assert out["slope_ci_low_subjects"] == pytest.approx(b)
    hier = out["log10_x_target_ci_high"] - out["log10_x_target_ci_low"]
    vox = out["log10_x_target_ci_high_voxels"] - out["log10_x_target_ci_low_voxels"]
    assert 0 < vox < hier


def test_extrapolate_flat_or_decreasing():
    x = np.array([1e6, 1e7, 1e8])
    values, _ = _planted(0.5, -0.02, np.log10(x), np.random.default_rng(2))
    y = np.mean([v.mean(axis=1) for v in values], axis=0)
    out = extrapolate(x, y, values, n_boot=50, rng=np.random.default_rng(0))
    assert out["slope"] < 0 and out["x_target"] == np.inf and out["note"] == NOTE_FLAT
    assert out["log10_x_target_ci_high"] == np.inf
    single = extrapolate(x[:1], y[:1], [], n_boot=50)
    assert np.isnan(single["slope"]) and single["n_boot"] == 0


def test_two_level_bootstrap_brute_force():
    rng = np.random.default_rng(3)
    values = [rng.normal(size=(3, 7)), rng.normal(size=(3, 5)), rng.normal(size=(3, 6))]
    values[1][0, 2] = np.nan
    values[2][1] = np.nan  # subject 3 lacks point 2
    got = two_level_bootstrap(values, 40, np.random.default_rng(9))
    draw = np.random.default_rng(9)
    expected = np.zeros((40, 3))
    for b in range(40):
        subjects = draw.integers(0, 3, size=3)
        per = []
        for s in subjects:
            idx = draw.integers(0, values[s].shape[1], size=values[s].shape[1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
                per.append(np.nanmean(values[s][:, idx], axis=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected[b] = np.nanmean(np.vstack(per), axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# --------------------------------------------------------------------------- score tables

FAMILIES = {"A": ({"a1": 1e6, "a2": 1e7, "a3": 1e8}, 0.04), "B": ({"b1": 1e7, "b2": 1e9}, 0.02)}
FRACTIONS = {0.5: 100, 1.0: 400}


def _scores(n_vox=30):
    rng = np.random.default_rng(5)
    rows, voxels = [], {}
    entries = [
        (m, n, fam, slope, False) for fam, (ms, slope) in FAMILIES.items() for m, n in ms.items()
    ]
    entries += [("a3-untrained", 1e8, "A", 0.0, True), ("random", 0, "random", 0.0, True)]
    for subject in ["S1", "S2"]:
        e = rng.normal(0, 0.03, n_vox)
        for model, n_params, family, slope, untrained in entries:
            for fraction, trs in FRACTIONS.items():
                base = 0.2 + slope * np.log10(max(n_params, 1)) + 0.03 * np.log10(trs)
                r_norm = base + e
                path = f"{subject}/{model}/{fraction}"
                voxels[path] = {"r_norm": r_norm}
                record = dict.fromkeys(SCORE_COLUMNS, 0)
                record.update(
                    dataset="ds",
                    subject=subject,
                    model=model,
                    family=family,
                    untrained=untrained,
                    n_params=int(n_params),
                    layer=0,
                    train_fraction=fraction,
                    n_train_trs=trs,
                    mean_r_norm=r_norm.mean(),
                    mean_cv_score=1.0,
                    fit_path=path,
                )
                rows.append(record)
    return pd.DataFrame(rows), voxels


def test_scaling_extrapolations_families_and_data():
    scores, voxels = _scores()
    table = scaling_extrapolations(scores, voxels.__getitem__, n_boot=100, seed=1)
    params = table[table.fit == "params"].set_index("group")
    assert set(params.index) == {"trained", "A", "B"}
    assert params.loc["A", "slope"] == pytest.approx(0.04)
    assert params.loc["B", "slope"] == pytest.approx(0.02)
    assert params.loc["A", "n_points"] == 3 and params.loc["trained", "n_points"] == 5
    a = params.loc["A"]
    assert a["log10_x_target"] == pytest.approx((0.9 - a["intercept"]) / 0.04)
    # two subjects: the voxel-only interval, the hierarchical one withheld with a note
    assert a["slope_ci_low_voxels"] == pytest.approx(0.04)
    assert a["slope_ci_high_voxels"] == pytest.approx(0.04)
    assert np.isnan(a["slope_ci_low"]) and np.isnan(a["log10_x_target_ci_low_subjects"])
    assert "(have 2)" in a["note"] and a["n_subjects"] == 2 and a["n_voxels"] == 0
    assert a["resampling"].startswith("subjects")
    data = table[table.fit == "data"].set_index("group")
    assert "random" in data.index and "a3-untrained" in data.index
    np.testing.assert_allclose(data["slope"], 0.03)
    assert (data["x_variable"] == "n_train_trs").all()
    again = scaling_extrapolations(scores, voxels.__getitem__, n_boot=100, seed=1)
    pd.testing.assert_frame_equal(table, again)
