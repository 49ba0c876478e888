"""Aggregation and scaling fits, checked against closed forms and planted truths."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lmbrain.aggregate import (
    FIT_COLUMNS,
    SCORE_COLUMNS,
    best_layers,
    bootstrap_slope,
    loglinear_fit,
    model_summary,
    read_score_rows,
    scaling_fits,
)
from lmbrain.errors import InputError

# --------------------------------------------------------------------------- synthetic data

SIZES = {"m1": 1e6, "m2": 1e7, "m3": 1e8, "m4": 1e9}
DATA_SLOPES = {"m1": 0.01, "m2": 0.02, "m3": 0.03, "m4": 0.04}  # pooled (balanced): 0.025
PARAM_SLOPE = 0.02
ASYM_SLOPE, ASYM_0 = 0.003, 0.004
FRACTIONS = {0.25: 250, 0.5: 500, 1.0: 1000}
SUBJECT_OFFSET = {"S1": 0.0, "S2": 0.01}
N_LAYERS, BEST_LAYER, N_VOX = 4, 2, 200


def _centered(rng, n, scale):
    e = rng.normal(0.0, scale, n)
    return e - e.mean()


def _voxels(rng, base, left, right):
    """Per-voxel r whose left / right means are exactly ``left`` / ``right``."""
    half = N_VOX // 2
    r = np.empty(N_VOX)
    r[:half] = left + base[:half] + _centered(rng, half, 0.02)
    r[half:] = right + base[half:] + _centered(rng, half, 0.02)
    return {"r": r.astype(np.float32), "hemisphere": np.array(["L"] * half + ["R"] * half)}


def make_scores(models=SIZES, untrained=None, seed=0):
    """Score table + voxel store with planted params, data and asymmetry slopes.

    Best layer (by CV) is layer 2; layer 3 has a *higher test* r (scrambled across
    models) but a lower CV score, so selecting by the test score breaks the slopes.
    ``untrained`` maps extra untrained model names to (n_params, mean_r).
    """
    rng = np.random.default_rng(seed)
    untrained = untrained or {}
    bases = {}
    for s in SUBJECT_OFFSET:
        bases[s] = np.concatenate(
            [_centered(rng, N_VOX // 2, 0.1), _centered(rng, N_VOX // 2, 0.1)]
        )
    rows, store = [], {}
    for model in list(models) + list(untrained):
        is_untrained = model in untrained
        n_params = untrained[model][0] if is_untrained else models[model]
        for subject, offset in SUBJECT_OFFSET.items():
            for fraction, trs in FRACTIONS.items():
                for layer in range(N_LAYERS):
                    if is_untrained:
                        best_r = untrained[model][1] + offset
                        asym = -0.05
                    else:
                        best_r = (
                            0.1
                            + PARAM_SLOPE * np.log10(n_params / 1e6)
                            + DATA_SLOPES[model] * np.log10(trs / 1000)
                            + offset
                        )
                        asym = ASYM_0 + ASYM_SLOPE * np.log10(n_params / 1e6)
                    if layer == BEST_LAYER:
                        mean_r, cv = best_r, 0.3
                    elif layer == N_LAYERS - 1:
                        mean_r, cv = best_r + rng.uniform(0.05, 0.2), 0.2
                    else:
                        mean_r, cv = best_r - 0.05 * abs(layer - BEST_LAYER), 0.1 + 0.01 * layer
                    left, right = mean_r + asym / 2, mean_r - asym / 2
                    path = f"fits/{subject}/{model}/{layer}/{fraction}.npz"
                    store[path] = _voxels(rng, bases[subject], left, right)
                    rows.append(
                        {
                            "dataset": "ds",
                            "subject": subject,
                            "model": model,
                            "family": "fam",
                            "untrained": is_untrained,
                            "n_params": int(n_params),
                            "n_params_nonembedding": int(n_params * 0.8),
                            "n_layers": N_LAYERS,
                            "layer": layer,
                            "depth": layer / N_LAYERS,
                            "train_fraction": fraction,
                            "n_train_stories": int(fraction * 8),
                            "n_train_trs": trs,
                            "n_voxels": N_VOX,
                            "mean_r": mean_r,
                            "mean_r_left": left,
                            "mean_r_right": right,
                            "mean_r2": mean_r**2,
                            "mean_r_norm": mean_r / 0.5,
                            "n_voxels_excluded": 0,
                            "n_voxels_ceiling": N_VOX,
                            "mean_cv_score": cv,
                            "fit_path": path,
                        }
                    )
    return pd.DataFrame(rows)[list(SCORE_COLUMNS)], store


def _row(fits, fit, group="trained"):
    hit = fits[(fits["fit"] == fit) & (fits["group"] == group)]
    assert len(hit) == 1, (fit, group)
    return hit.iloc[0]


# --------------------------------------------------------------------------- reading


def test_read_score_rows_orders_columns_and_rows(tmp_path):
    scores, _ = make_scores(models={"m2": 1e7, "m1": 1e6})
    shuffled = scores.sample(frac=1.0, random_state=1)
    paths = []
    for i, (_, row) in enumerate(shuffled.iterrows()):
        record = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        record["extra_key"] = i
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(dict(reversed(list(record.items())))))
        paths.append(path)
    table = read_score_rows(paths)
    assert list(table.columns) == [*SCORE_COLUMNS, "extra_key"]
    expected = scores.sort_values(["dataset", "subject", "model", "layer", "train_fraction"])
    np.testing.assert_array_equal(table["fit_path"], expected["fit_path"])
    np.testing.assert_allclose(table["mean_r"], expected["mean_r"])
    assert table["untrained"].dtype == bool


def test_read_score_rows_names_file_and_missing_key(tmp_path):
    scores, _ = make_scores(models={"m1": 1e6})
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in scores.iloc[0].items()}
    del record["mean_cv_score"]
    bad = tmp_path / "bad_row.json"
    bad.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"bad_row\.json.*mean_cv_score"):
        read_score_rows([bad])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="broken.json"):
        read_score_rows([tmp_path / "broken.json"])


def test_read_score_rows_empty():
    table = read_score_rows([])
    assert list(table.columns) == list(SCORE_COLUMNS) and table.empty


# --------------------------------------------------------------------------- best layers


def test_best_layers_uses_cv_not_test_score():
    scores, _ = make_scores()
    best = best_layers(scores)
    assert len(best) == 4 * 2 * 3
    assert (best["layer"] == BEST_LAYER).all()
    # By the (optimistic) test score the planted decoy layer wins instead.
    assert (best_layers(scores, by="mean_r")["layer"] == N_LAYERS - 1).all()


def test_best_layers_ties_nan_and_bad_column():
    base = {"dataset": "d", "subject": "s", "model": "m", "train_fraction": 1.0}
    scores = pd.DataFrame(
        [
            {**base, "layer": 0, "mean_cv_score": 0.2, "mean_r": 0.1},
            {**base, "layer": 1, "mean_cv_score": 0.2, "mean_r": 0.3},
            {**base, "layer": 2, "mean_cv_score": np.nan, "mean_r": 0.9},
            {**base, "model": "n", "layer": 0, "mean_cv_score": np.nan, "mean_r": 0.9},
        ],
        index=[5, 5, 7, 8],  # a non-unique index must not matter
    )
    best = best_layers(scores)
    assert best["model"].tolist() == ["m"] and best["layer"].tolist() == [0]
    with pytest.raises(ValueError, match="no_such"):
        best_layers(scores, by="no_such")


# --------------------------------------------------------------------------- log-linear fit


def test_loglinear_fit_exact_on_noise_free_data():
    x = np.array([1e5, 3e6, 1e8, 2e9])
    slope, intercept, r2 = loglinear_fit(x, 0.3 - 0.05 * np.log10(x))
    assert slope == pytest.approx(-0.05, abs=1e-12)
    assert intercept == pytest.approx(0.3, abs=1e-12)
    assert r2 == pytest.approx(1.0, abs=1e-12)


def test_loglinear_fit_matches_polyfit_on_noisy_data():
    rng = np.random.default_rng(3)
    x = 10 ** rng.uniform(5, 10, 30)
    y = 0.1 + 0.015 * np.log10(x) + rng.normal(0, 0.01, 30)
    slope, intercept, r2 = loglinear_fit(x, y)
    b, a = np.polyfit(np.log10(x), y, 1)
    assert slope == pytest.approx(b, rel=1e-10) and intercept == pytest.approx(a, rel=1e-10)
    assert r2 == pytest.approx(np.corrcoef(np.log10(x), y)[0, 1] ** 2, rel=1e-10)
    assert slope == pytest.approx(0.015, abs=0.003)


def test_loglinear_fit_degenerate_inputs():
    assert np.isnan(loglinear_fit([1e6], [0.1])).all()
    assert np.isnan(loglinear_fit([1e6, 1e6], [0.1, 0.2])).all()
    slope, _, _ = loglinear_fit([10, 100, np.nan, 1000], [1.0, 2.0, 5.0, np.nan])
    assert slope == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        loglinear_fit([0, 10], [1, 2])


# --------------------------------------------------------------------------- bootstrap


def _planted_voxels(rng, n_vox, x, slope, noise=0.1):
    lx = np.log10(x)
    return [0.2 + slope * v + rng.normal(0, noise, n_vox) for v in lx]


def _normal_ci(x, values, z=1.959964):
    """Closed form: the slope is the voxel mean of per-voxel slopes."""
    lx = np.log10(x)
    c = (lx - lx.mean()) / np.sum((lx - lx.mean()) ** 2)
    per_voxel = c @ np.vstack(values)
    se = per_voxel.std() / np.sqrt(per_voxel.size)
    return per_voxel.mean() - z * se, per_voxel.mean() + z * se


def test_bootstrap_matches_normal_theory_and_covers_truth():
    rng = np.random.default_rng(0)
    x = np.array([1e6, 1e7, 1e8, 1e9])
    values = _planted_voxels(rng, 2000, x, 0.01)
    low, high = bootstrap_slope(x, values, n_boot=2000, seed=1)
    exp_low, exp_high = _normal_ci(x, values)
    half = (exp_high - exp_low) / 2
    assert abs(low - exp_low) < 0.1 * half and abs(high - exp_high) < 0.1 * half
    assert low < 0.01 < high


def test_bootstrap_narrower_with_more_voxels():
    rng = np.random.default_rng(1)
    x = np.array([1e6, 1e7, 1e8])
    few = bootstrap_slope(x, _planted_voxels(rng, 300, x, 0.02), n_boot=500)
    many = bootstrap_slope(x, _planted_voxels(rng, 4800, x, 0.02), n_boot=500)
    assert few[0] < 0.02 < few[1] and many[0] < 0.02 < many[1]
    assert (many[1] - many[0]) < 0.5 * (few[1] - few[0])


def test_bootstrap_is_paired():
    # A voxel effect shared by all points cancels in a paired bootstrap: zero-width CI.
    rng = np.random.default_rng(2)
    x = np.array([1e6, 1e7, 1e8])
    shared = rng.normal(0, 0.3, 500)
    values = [shared + 0.01 * np.log10(v) for v in x]
    low, high = bootstrap_slope(x, values, n_boot=200)
    assert low == pytest.approx(0.01, abs=1e-10) and high == pytest.approx(0.01, abs=1e-10)


def test_bootstrap_groups_stratify():
    rng = np.random.default_rng(4)
    x = np.array([1e6, 1e8, 1e10])
    a = _planted_voxels(rng, 300, x, 0.01, noise=0.05)
    b = _planted_voxels(rng, 3000, x, 0.03, noise=0.2)
    values = [np.concatenate([va, vb]) for va, vb in zip(a, b, strict=True)]
    groups = np.repeat(["A", "B"], [300, 3000])
    low, high = bootstrap_slope(x, values, n_boot=3000, seed=5, groups=groups)
    # Closed form: mean of the two subjects' slopes, SE from both.
    lo_a, hi_a = _normal_ci(x, a)
    lo_b, hi_b = _normal_ci(x, b)
    centre = ((lo_a + hi_a) / 2 + (lo_b + hi_b) / 2) / 2
    half = np.hypot((hi_a - lo_a) / 2, (hi_b - lo_b) / 2) / 2
    assert abs(low - (centre - half)) < 0.1 * half and abs(high - (centre + half)) < 0.1 * half


def test_bootstrap_reproducible_and_handles_nan():
    rng = np.random.default_rng(6)
    x = np.array([1e6, 1e7, 1e8])
    values = _planted_voxels(rng, 400, x, 0.02)
    for v in values:
        v[:40] = np.nan
    first = bootstrap_slope(x, values, n_boot=300, seed=9)
    assert first == bootstrap_slope(x, values, n_boot=300, seed=9)
    assert first != bootstrap_slope(x, values, n_boot=300, seed=10)
    assert np.all(np.isfinite(first)) and first[0] < 0.02 < first[1]
    assert np.isnan(bootstrap_slope([1e6, 1e6], values[:2], n_boot=50)).all()
    with pytest.raises(ValueError, match="same voxels"):
        bootstrap_slope(x, [values[0], values[1][:10], values[2]])


# --------------------------------------------------------------------------- scaling fits


def test_scaling_fits_recovers_planted_slopes():
    scores, store = make_scores()
    fits = scaling_fits(scores, store.__getitem__, n_boot=300, seed=0)
    assert list(fits.columns) == list(FIT_COLUMNS)
    checks = {
        ("params", "trained"): PARAM_SLOPE,
        ("data", "trained"): np.mean(list(DATA_SLOPES.values())),
        ("asymmetry", "trained"): ASYM_SLOPE,
        **{("data", m): s for m, s in DATA_SLOPES.items()},
    }
    for (fit, group), truth in checks.items():
        row = _row(fits, fit, group)
        assert row["slope"] == pytest.approx(truth, abs=1e-9), (fit, group)
        # two subjects: voxel-only CI; the subject-level ones are withheld, with a note
        assert row["slope_ci_low_voxels"] <= truth <= row["slope_ci_high_voxels"], (fit, group)
        assert row["slope_ci_high_voxels"] - row["slope_ci_low_voxels"] > 0
        subject_level = ["slope_ci_low", "slope_ci_high", "slope_ci_low_subjects", "slope_t_p"]
        assert row[subject_level].isna().all() and ">= 3 subjects (have 2)" in row["note"]
        assert row["n_subjects"] == 2 and row["n_voxels"] == 2 * N_VOX
        if (fit, group) != ("data", "trained"):
            assert row["r2"] == pytest.approx(1.0, abs=1e-9)
        assert row["n_boot"] == 300
    # Pooled data fit: common slope b_bar, so the within-model R^2 is (balanced design)
    # 1 - sum (b_m - b_bar)^2 / sum b_m^2.
    b = np.array(list(DATA_SLOPES.values()))
    within_r2 = 1 - np.sum((b - b.mean()) ** 2) / np.sum(b**2)
    assert _row(fits, "data")["r2"] == pytest.approx(within_r2, abs=1e-9)
    assert _row(fits, "params")["intercept"] == pytest.approx(0.1 + 0.005 - 6 * PARAM_SLOPE)
    assert _row(fits, "params")["n_points"] == 4 and _row(fits, "data")["n_points"] == 12
    assert _row(fits, "asymmetry")["y_variable"] == "mean_r_left_minus_right"
    assert _row(fits, "data", "m2")["x_variable"] == "n_train_trs"


def test_scaling_fits_excludes_untrained():
    # Untrained models this large with such high scores would flatten every trained slope.
    extra = {"m3-untrained": (1e8, 0.6), "m4-untrained": (1e9, 0.9)}
    scores, store = make_scores(untrained=extra)
    fits = scaling_fits(scores, store.__getitem__, n_boot=50)
    assert _row(fits, "params")["slope"] == pytest.approx(PARAM_SLOPE, abs=1e-9)
    assert _row(fits, "asymmetry")["slope"] == pytest.approx(ASYM_SLOPE, abs=1e-9)
    assert _row(fits, "data")["slope"] == pytest.approx(0.025, abs=1e-9)
    assert _row(fits, "data", "m4-untrained")["slope"] == pytest.approx(0.0, abs=1e-9)
    # Sanity: had they been included, the params slope would differ.
    summary = model_summary(scores)
    assert abs(loglinear_fit(summary["n_params"], summary["mean_r"])[0] - PARAM_SLOPE) > 0.01


def test_scaling_fits_single_model_gives_nan_row():
    scores, store = make_scores(models={"m2": 1e7})
    fits = scaling_fits(scores, store.__getitem__, n_boot=50)
    for fit in ("params", "asymmetry"):
        row = _row(fits, fit)
        numbers = row[["slope", "intercept", "slope_ci_low_voxels", "slope_ci_high_voxels", "r2"]]
        assert np.isnan(numbers.to_numpy(dtype=float)).all()
        assert row["n_points"] == 1 and row["n_boot"] == 0
    assert _row(fits, "data", "m2")["slope"] == pytest.approx(DATA_SLOPES["m2"], abs=1e-9)


def test_scaling_fits_single_fraction_and_nan_scores():
    scores, store = make_scores()
    one = scores[scores["train_fraction"] == 1.0].copy()
    one.loc[one["model"] == "m1", "mean_r"] = np.nan
    fits = scaling_fits(one, store.__getitem__, n_boot=50)
    assert _row(fits, "params")["n_points"] == 3
    assert _row(fits, "params")["slope"] == pytest.approx(PARAM_SLOPE, abs=1e-9)
    data = fits[fits["fit"] == "data"]
    assert data["slope"].isna().all() and (data["n_boot"] == 0).all()
    assert scaling_fits(one.iloc[0:0], store.__getitem__).empty


def test_scaling_fits_deterministic():
    scores, store = make_scores()
    a = scaling_fits(scores, store.__getitem__, n_boot=100, seed=3)
    b = scaling_fits(scores.sample(frac=1.0, random_state=0), store.__getitem__, n_boot=100, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = scaling_fits(scores, store.__getitem__, n_boot=100, seed=4)
    assert not np.allclose(a["slope_ci_low_voxels"], c["slope_ci_low_voxels"], equal_nan=True)
    pd.testing.assert_series_equal(a["slope"], c["slope"])


def test_scaling_fits_rejects_mismatched_voxels():
    scores, store = make_scores(models={"m1": 1e6, "m2": 1e7})
    path = scores[(scores["model"] == "m2") & (scores["layer"] == BEST_LAYER)]["fit_path"].iloc[0]
    store[path] = {"r": np.zeros(N_VOX - 1), "hemisphere": np.array(["L"] * (N_VOX - 1))}
    with pytest.raises(InputError, match="same voxels"):
        scaling_fits(scores, store.__getitem__, n_boot=10)
