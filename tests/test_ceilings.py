"""Tests of the Schoppe et al. (2016) noise ceiling against a planted signal."""

import warnings

import numpy as np
import pytest

from lmbrain import ceilings


def _simulate(seed, n_repeats, n_trs, signal_var, noise_var):
    """Repeats = shared signal + independent noise, with known variances per voxel."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n_trs, signal_var.size)) * np.sqrt(signal_var)
    noise = rng.normal(size=(n_repeats, n_trs, signal_var.size)) * np.sqrt(noise_var)
    return signal, signal[None] + noise


def _corr_columns(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))


def test_cc_max_matches_theory_and_empirical_correlation(monkeypatch):
    monkeypatch.setattr(ceilings, "VOXEL_CHUNK", 4)  # exercise the voxel chunking
    n_rep, n_trs = 5, 4000
    s2 = np.array([1.0, 1.0, 0.5, 2.0, 0.2, 1.0])
    n2 = np.array([0.5, 4.0, 5.0, 1.0, 3.0, 20.0])
    signal, reps = _simulate(0, n_rep, n_trs, s2, n2)
    cc = ceilings.cc_max(reps.astype(np.float32))
    theory = np.sqrt(n_rep * s2 / (n_rep * s2 + n2))
    np.testing.assert_allclose(cc, theory, atol=0.04)
    empirical = _corr_columns(signal, reps.mean(0))
    np.testing.assert_allclose(cc, empirical, atol=0.04)
    single = ceilings.cc_max_single(reps)
    np.testing.assert_allclose(single, np.sqrt(s2 / (s2 + n2)), atol=0.04)
    np.testing.assert_allclose(single, _corr_columns(signal, reps[0]), atol=0.05)
    np.testing.assert_allclose(ceilings.signal_power(reps), s2, rtol=0.15, atol=0.05)


def test_formula_on_small_case_by_hand():
    rng = np.random.default_rng(1)
    reps = rng.normal(size=(3, 20, 1)) + rng.normal(size=(1, 20, 1))
    r = reps[:, :, 0]
    n = 3
    tp = np.mean([r[i].var() for i in range(n)])
    sp = (r.sum(0).var() - sum(r[i].var() for i in range(n))) / (n * (n - 1))
    assert ceilings.signal_power(reps)[0] == pytest.approx(sp)
    assert ceilings.cc_max(reps)[0] == pytest.approx(np.sqrt(n * sp / (tp + (n - 1) * sp)))
    assert ceilings.cc_max_single(reps)[0] == pytest.approx(np.sqrt(sp / tp))


def test_negative_signal_power_constant_and_nan_voxels_give_nan():
    rng = np.random.default_rng(2)
    x = rng.normal(size=50)
    reps = rng.normal(size=(2, 50, 4))
    reps[0, :, 0], reps[1, :, 0] = x, -x  # anti-correlated repeats: SP < 0
    reps[:, :, 1] = 0.3  # constant voxel
    reps[1, 4, 2] = np.nan
    reps[:, :, 3] += 3 * rng.normal(size=50)  # good voxel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cc = ceilings.cc_max(reps)
        sp = ceilings.signal_power(reps)
        single = ceilings.cc_max_single(reps)
    assert np.all(np.isnan(cc[:3])) and np.all(np.isnan(sp[:3])) and np.all(np.isnan(single[:3]))
    assert 0.9 < cc[3] <= 1.0


def test_needs_two_repeats():
    with pytest.raises(ValueError):
        ceilings.cc_max(np.zeros((1, 10, 2)))
