"""Subject-level inference: bootstrap coverage on planted subjects, one-sample tests."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmbrain import inference
from lmbrain.aggregate import FIT_COLUMNS, _slopes, scaling_fits

LX = np.log10([1e7, 1e8, 1e9])
TRUE_SLOPE, BETWEEN_SD = 0.02, 0.01


def _study(rng, n_sub, n_vox=100):
    """Subjects whose slopes vary around TRUE_SLOPE; voxel effects shared by the points."""
    values = []
    for _ in range(n_sub):
        slope = TRUE_SLOPE + BETWEEN_SD * rng.standard_normal()
        offset = 0.1 + 0.05 * rng.standard_normal()
        voxel = rng.normal(0, 0.1, n_vox)
        noise = rng.normal(0, 0.02, (LX.size, n_vox))
        values.append(offset + slope * LX[:, None] + voxel[None, :] + noise)
    return values


def _slope_ci(values, level, rng, n_boot=300):
    means = inference.resample_subject_means(values, n_boot, rng, level)
    ys = inference.slot_mean(means[..., 0])
    return inference.percentile_ci(_slopes(LX, ys, np.zeros(LX.size)))


def test_hierarchical_ci_covers_the_population_slope_and_voxel_ci_does_not():
    rng = np.random.default_rng(0)
    n_sub, n_studies = 20, 200
    covered = dict.fromkeys(inference.LEVELS, 0)
    for _ in range(n_studies):
        values = _study(rng, n_sub)
        for level in inference.LEVELS:
            low, high = _slope_ci(values, level, rng)
            covered[level] += low <= TRUE_SLOPE <= high
    rate = {level: c / n_studies for level, c in covered.items()}
    # A percentile bootstrap over n subjects covers like a z interval with the plug-in SE,
    # P(|t_{n-1}| < 1.96 sqrt((n-1)/n)) = 0.93 at n = 20 (slightly under the nominal 95%).
    expected = 2 * stats.t.cdf(1.96 * np.sqrt((n_sub - 1) / n_sub), n_sub - 1) - 1
    assert abs(rate["hierarchical"] - expected) < 0.05, rate
    assert abs(rate["subjects"] - expected) < 0.05, rate
    # Voxels only: blind to the between-subject spread, far too narrow.
    assert rate["voxels"] < 0.5, rate


def test_levels_resample_what_they_say():
    rng = np.random.default_rng(1)
    values = [rng.normal(size=(2, 30)) + s for s in range(4)]
    observed = np.array([v.mean(axis=1) for v in values])  # (subject, point)
    subjects = inference.resample_subject_means(values, 50, rng, "subjects")[..., 0]
    for slot in subjects.reshape(-1, 2):  # every slot is one subject's observed means
        assert np.any(np.all(np.isclose(slot, observed), axis=1))
    voxels = inference.resample_subject_means(values, 50, rng, "voxels")[..., 0]
    # slot j stays subject j (offset j), only its voxels vary
    np.testing.assert_array_less(np.abs(voxels - observed[None]), 0.8)
    assert voxels.std(axis=0).min() > 0
    hier = inference.resample_subject_means(values, 2000, rng, "hierarchical")[..., 0]
    assert hier.std() > subjects.std() * 0.9  # both sources of variability
    # a subject drawn twice in one replicate gets independent voxel draws
    rows = hier[:, :, 0].round(12)
    assert np.mean([len(set(r)) for r in rows]) > np.mean(
        [len(set(r)) for r in subjects[:, :, 0].round(12)]
    )
    with pytest.raises(ValueError, match="unknown bootstrap level"):
        inference.resample_subject_means(values, 5, rng, "stories")


def test_stratum_means_match_explicit_resampling():
    values = np.arange(12.0).reshape(2, 6)
    values[1, 2] = np.nan
    strata = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    got = inference.stratum_means(values, strata, 5, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    for s, idx in enumerate(strata):  # same draw order: stratum by stratum
        draws = rng.integers(0, idx.size, size=(5, idx.size))
        for b in range(5):
            picked = values[:, idx[draws[b]]]
            np.testing.assert_allclose(got[b, :, s], np.nanmean(picked, axis=1))


def test_t_test_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.normal(0.3, 1, 7)
    out = inference.one_sample_tests(x)
    ref = stats.ttest_1samp(x, 0.0)
    assert out["t"] == pytest.approx(ref.statistic) and out["t_p"] == pytest.approx(ref.pvalue)
    assert out["n"] == 7
    too_few = inference.one_sample_tests(x[:2])
    assert np.isnan([too_few["t"], too_few["t_p"], too_few["signflip_p"]]).all()


@pytest.mark.parametrize("n", [3, 5, 8])
def test_sign_flip_p_is_exact(n):
    rng = np.random.default_rng(n)
    x = rng.normal(0.2, 1, n)
    # brute force: every subset of subjects flipped, counted by bit pattern
    hits = 0
    for code in range(2**n):
        flipped = np.array([-v if code >> i & 1 else v for i, v in enumerate(x)])
        hits += abs(flipped.sum()) >= abs(x.sum()) - 1e-12
    assert inference.sign_flip_pvalue(x) == pytest.approx(hits / 2**n)
    # closed form: same-signed values are beaten only by the all-+ and all-- patterns
    assert inference.sign_flip_pvalue(np.abs(x) + 0.1) == pytest.approx(2 / 2**n)


def test_sign_flip_monte_carlo_for_many_subjects():
    rng = np.random.default_rng(6)
    x = rng.normal(0, 1, 30)
    p = inference.sign_flip_pvalue(x, 4000, np.random.default_rng(0))
    # large n: the sign-flip distribution of the mean is close to normal with sd |x|_2 / n
    z = abs(x.mean()) / (np.sqrt(np.sum(x**2)) / x.size)
    assert p == pytest.approx(2 * stats.norm.sf(z), abs=0.03)
    assert p >= 1 / 4001


def _score_table(n_sub, seed=0, n_vox=60):
    """Best-layer rows of 3 models for n_sub subjects with their own planted slopes."""
    rng = np.random.default_rng(seed)
    rows, store, slopes = [], {}, {}
    for s in range(n_sub):
        subject = f"S{s}"
        slopes[subject] = TRUE_SLOPE + BETWEEN_SD * rng.standard_normal()
        voxel = rng.normal(0, 0.05, n_vox)
        for model, n_params in zip(["a", "b", "c"], [1e7, 1e8, 1e9], strict=True):
            r = 0.1 + slopes[subject] * np.log10(n_params) + voxel
            path = f"fits/{subject}/{model}.npz"
            store[path] = {"r": r, "hemisphere": np.array(["L", "R"] * (n_vox // 2))}
            rows.append(
                {
                    "dataset": "d",
                    "subject": subject,
                    "model": model,
                    "family": "f",
                    "untrained": False,
                    "n_params": n_params,
                    "layer": 1,
                    "train_fraction": 1.0,
                    "n_train_trs": 100,
                    "n_train_stories": 4,
                    "test_stories": "t1,t2",
                    "n_voxels": n_vox,
                    "mean_r": r.mean(),
                    "mean_r_left": r[::2].mean(),
                    "mean_r_right": r[1::2].mean(),
                    "mean_cv_score": 0.1,
                    "fit_path": path,
                }
            )
    return pd.DataFrame(rows), store, slopes


def test_scaling_fits_report_subject_level_inference():
    scores, store, slopes = _score_table(5)
    fits = scaling_fits(scores, store.__getitem__, n_boot=200, seed=0)
    assert list(fits.columns) == list(FIT_COLUMNS)
    row = fits[fits["fit"] == "params"].iloc[0]
    truth = np.array(list(slopes.values()))
    assert row["slope"] == pytest.approx(truth.mean())
    ref = stats.ttest_1samp(truth, 0.0)
    assert row["slope_t"] == pytest.approx(ref.statistic) and row["slope_t_p"] == pytest.approx(
        ref.pvalue
    )
    assert row["slope_signflip_p"] == pytest.approx(inference.sign_flip_pvalue(truth))
    assert row["slope_ci_low"] <= truth.mean() <= row["slope_ci_high"]
    # the voxel effects are shared by the models (paired), so voxel-only is ~0 wide
    width = row["slope_ci_high"] - row["slope_ci_low"]
    assert row["slope_ci_high_voxels"] - row["slope_ci_low_voxels"] < 0.01 * width
    assert row["slope_ci_high_subjects"] - row["slope_ci_low_subjects"] > 0.5 * width
    assert row["note"] == "" and row["resampling"] == inference.RESAMPLING
    assert (row["n_subjects"], row["n_voxels"], row["n_test_stories"]) == (5, 300, 2)
    assert row["n_train_stories"] == 4
    asym = fits[fits["fit"] == "asymmetry"].iloc[0]
    assert np.isfinite(asym["slope_ci_low"]) and asym["slope"] == pytest.approx(0, abs=1e-9)
