"""Voxel significance: surrogate nulls against brute force, calibration and power, BH."""

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from lmbrain.scoring import pearson_r
from lmbrain.significance import (
    block_cross_products,
    block_permutations,
    cross_spectra,
    fdr_bh,
    null_correlations,
    permutation_pvalues,
    random_phases,
    surrogate_correlations,
    voxel_significance,
)


def _ar1(rng, phi, shape):
    """AR(1) noise along axis 0 (stationary start)."""
    e = rng.standard_normal(shape)
    e[0] /= np.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], e, axis=0)


def test_phase_surrogate_r_matches_explicit_surrogates():
    rng = np.random.default_rng(0)
    for n in (40, 41):  # even length has a Nyquist coefficient, odd has none
        y, pred = rng.standard_normal((n, 5)), _ar1(rng, 0.7, (n, 5))
        phases = random_phases(n, 7, rng)
        fast = surrogate_correlations(cross_spectra(y, pred), phases)
        spectrum = np.fft.rfft(pred - pred.mean(axis=0), axis=0)
        for k in range(7):
            surrogate = np.fft.irfft(spectrum * np.exp(1j * phases[k])[:, None], n=n, axis=0)
            np.testing.assert_allclose(fast[k], pearson_r(y, surrogate), atol=1e-12)
        # zero phases give back the observed r
        observed = surrogate_correlations(cross_spectra(y, pred), np.zeros((1, n // 2 + 1)))
        np.testing.assert_allclose(observed[0], pearson_r(y, pred), atol=1e-12)


@pytest.mark.parametrize("n_blocks", [6, 70])  # one-hot product, and the gather path (> 64)
def test_block_null_matches_brute_force_permutation(n_blocks):
    rng = np.random.default_rng(1)
    block = 3
    n = n_blocks * block + 2  # a remainder, left out
    y, pred = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
    perms = block_permutations(n_blocks, 5, rng)
    fast = null_correlations(block_cross_products(y, pred, block), perms)
    used_y, used_p = y[: n_blocks * block], pred[: n_blocks * block]
    for k, perm in enumerate(perms):
        order = np.concatenate([np.arange(i * block, (i + 1) * block) for i in perm])
        np.testing.assert_allclose(fast[k], pearson_r(used_y[order], used_p), atol=1e-12)


def test_pvalue_counts_exceedances_plus_one():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((60, 3))
    pred = np.column_stack([y[:, 0], -y[:, 1], rng.standard_normal(60)])
    p, observed = permutation_pvalues([(y, pred)], n_permutations=99, rng=rng)
    np.testing.assert_allclose(observed, pearson_r(y, pred), atol=1e-12)
    assert p[0] == pytest.approx(1 / 100)  # perfect prediction: nothing beats it
    assert p[1] == pytest.approx(1.0)  # r = -1: everything beats it (one-sided test)
    assert 0 < p[2] <= 1


def test_undefined_r_gets_nan_p():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((50, 3))
    y[:, 1] = 2.0  # constant voxel
    pred = rng.standard_normal((50, 3))
    for method in ("phase_randomization", "block_permutation"):
        p, _ = permutation_pvalues([(y, pred)], method, 20, 5, rng)
        assert np.isnan(p[1]) and np.isfinite(p[[0, 2]]).all()


def _null_pvalues(method, block_trs, seed=4, n=240, n_vox=1500, n_perm=300):
    """p of voxels whose response and prediction are independent AR(1) series."""
    rng = np.random.default_rng(seed)
    y, pred = _ar1(rng, 0.8, (n, n_vox)), _ar1(rng, 0.9, (n, n_vox))
    p, _ = permutation_pvalues([(y, pred)], method, n_perm, block_trs, rng)
    return p


def test_phase_randomization_is_calibrated_where_a_shuffle_is_not():
    p = _null_pvalues("phase_randomization", 10)
    # binomial sd of the proportion at 0.05 over 1500 voxels is 0.0056
    assert abs(np.mean(p < 0.05) - 0.05) < 0.02
    assert abs(np.mean(p < 0.2) - 0.2) < 0.04
    assert stats.kstest(p, "uniform").pvalue > 1e-3
    # the naive i.i.d. shuffle (blocks of one TR) on the same data: far too many rejections
    shuffled = _null_pvalues("block_permutation", 1)
    assert np.mean(shuffled < 0.05) > 0.15
    # 20-TR blocks sit in between (covariance across block edges is lost)
    blocks = _null_pvalues("block_permutation", 20)
    assert np.mean(p < 0.05) < np.mean(blocks < 0.05) < np.mean(shuffled < 0.05)


def test_planted_signal_is_found_and_fdr_holds():
    rng = np.random.default_rng(5)
    n, n_vox, n_signal = 240, 400, 100
    pred = _ar1(rng, 0.9, (n, n_vox))
    y = _ar1(rng, 0.8, (n, n_vox))
    y[:, :n_signal] += 1.5 * pred[:, :n_signal] / pred[:, :n_signal].std(axis=0)
    arrays, row = voxel_significance(
        [(y, pred)], {"n_permutations": 500, "alpha": 0.05}, seed=0, key="s/m/1/1.0"
    )
    significant = arrays["q"] < 0.05
    assert significant[:n_signal].mean() > 0.9  # power
    false = significant[n_signal:].sum()
    assert false / max(significant.sum(), 1) < 0.1  # realised FDR near or below alpha
    assert row["n_voxels_significant"] == int(significant.sum())
    assert row["significance_method"] == "phase_randomization"
    assert row["perm_block_trs"] is None


def test_voxel_significance_is_seeded_and_can_be_off():
    rng = np.random.default_rng(6)
    folds = [(rng.standard_normal((30, 8)), rng.standard_normal((30, 8))) for _ in range(2)]
    settings = {"n_permutations": 50, "method": "block_permutation", "block_trs": 5}
    a, row = voxel_significance(folds, settings, seed=1, key="k")
    b, _ = voxel_significance(folds, settings, seed=1, key="k")
    c, _ = voxel_significance(folds, settings, seed=1, key="other")
    np.testing.assert_array_equal(a["p"], b["p"])
    assert not np.array_equal(a["p"], c["p"])
    assert row["perm_block_trs"] == 5
    off, row = voxel_significance(folds, {"n_permutations": 0}, seed=1, key="k")
    assert np.isnan(off["p"]).all() and np.isnan(off["q"]).all()
    assert row["n_voxels_significant"] is None and row["significance_method"] == "none"


def test_several_folds_test_the_mean_r():
    rng = np.random.default_rng(7)
    folds = [(rng.standard_normal((n, 4)), rng.standard_normal((n, 4))) for n in (30, 37)]
    _, observed = permutation_pvalues(folds, n_permutations=10, rng=rng)
    expected = np.mean([pearson_r(y, pred) for y, pred in folds], axis=0)
    np.testing.assert_allclose(observed, expected, atol=1e-12)


def test_voxel_chunks_do_not_change_the_result(monkeypatch):
    import lmbrain.significance as sig

    rng = np.random.default_rng(8)
    folds = [(rng.standard_normal((40, 9)), rng.standard_normal((40, 9)))]
    whole, _ = permutation_pvalues(folds, n_permutations=30, rng=np.random.default_rng(0))
    monkeypatch.setattr(sig, "_VOXEL_CHUNK_ELEMENTS", 80)  # two voxels per chunk
    monkeypatch.setattr(sig, "_CHUNK_ELEMENTS", 7)
    chunked, _ = permutation_pvalues(folds, n_permutations=30, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(whole, chunked)


def test_bad_settings_are_refused():
    y = np.zeros((3, 2)) + np.arange(3)[:, None]
    with pytest.raises(ValueError, match="unknown significance method"):
        permutation_pvalues([(y, y)], method="shuffle")
    with pytest.raises(ValueError, match="block_trs"):
        permutation_pvalues([(y, y)], method="block_permutation", block_trs=10)


def test_bh_matches_scipy_and_brute_force():
    rng = np.random.default_rng(9)
    p = rng.uniform(size=200) ** 3
    p[[3, 50]] = np.nan
    q = fdr_bh(p)
    finite = np.isfinite(p)
    np.testing.assert_allclose(q[finite], stats.false_discovery_control(p[finite]), atol=1e-12)
    assert np.isnan(q[[3, 50]]).all()
    # brute force of the step-up rule: the largest k with p_(k) <= k alpha / m
    values, m = p[finite], finite.sum()
    for alpha in (0.01, 0.05, 0.2):
        ranked = np.sort(values)
        passing = [k for k in range(1, m + 1) if ranked[k - 1] <= k * alpha / m]
        threshold = ranked[max(passing) - 1] if passing else -1.0
        np.testing.assert_array_equal(q[finite] <= alpha, values <= threshold)
    assert np.isnan(fdr_bh(np.array([np.nan]))).all()
