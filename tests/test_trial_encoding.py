"""Trial encoding: session z-scoring, repeat averaging, NSD noise ceiling, planted fits."""

import numpy as np
import pytest

from lmbrain import trial_encoding as te
from lmbrain.fitting import story_folds

FITTING = {"alphas": [0.1, 1, 10, 100, 1000], "n_folds": 4, "backend": "numpy", "solver": "auto"}


def test_zscore_by_session_matches_loop():
    rng = np.random.default_rng(0)
    y = rng.normal(3, 2, size=(12, 4))
    y[:, 3] = 5.0  # constant voxel
    sess = np.array([1] * 5 + [2] * 7)
    got = te.zscore_by_session(y, sess)
    for s in (1, 2):
        block = y[sess == s, :3]
        want = (block - block.mean(0)) / block.std(0)
        np.testing.assert_allclose(got[sess == s, :3], want, rtol=1e-5, atol=1e-6)
    assert np.all(got[:, 3] == 0)


def test_stimulus_means_matches_loop():
    rng = np.random.default_rng(1)
    stim = np.array(["b", "a", "b", "c", "a", "b"])
    y = rng.normal(size=(6, 3))
    ids, means, counts = te.stimulus_means(y, stim, ["c", "b"])
    assert ids == ["c", "b"] and list(counts) == [1, 3]
    np.testing.assert_allclose(means[1], y[stim == "b"].mean(0))
    np.testing.assert_allclose(means[0], y[3])


def simulate(n_img=600, n_rep=3, signal_var=(0.05, 0.3, 0.6), seed=0):
    """Betas = signal (per image) + noise (per trial), total variance 1 per voxel."""
    rng = np.random.default_rng(seed)
    sv = np.asarray(signal_var)
    signal = rng.normal(size=(n_img, len(sv))) * np.sqrt(sv)
    stim = np.repeat(np.arange(n_img), n_rep).astype(str)
    noise = rng.normal(size=(n_img * n_rep, len(sv))) * np.sqrt(1 - sv)
    return signal, stim, signal[np.repeat(np.arange(n_img), n_rep)] + noise


def test_ncsnr_recovers_planted_signal_to_noise():
    signal, stim, y = simulate(n_img=5000)
    sv = np.array([0.05, 0.3, 0.6])
    z = te.zscore_by_session(y, np.zeros(len(stim)))
    snr = te.ncsnr(z, stim)
    # ncsnr^2 = signal / noise variance; noise variance = 1 / (1 + ncsnr^2) is planted at 1 - sv
    np.testing.assert_allclose(1 / (1 + snr**2), 1 - sv, atol=0.03)
    np.testing.assert_allclose(snr[1:], np.sqrt(sv / (1 - sv))[1:], rtol=0.1)
    # NC for 3-repeat averages = share of their variance due to the signal (empirical).
    nc = te.noise_ceiling(snr, 3)
    _, avg, _ = te.stimulus_means(z, stim, [str(i) for i in range(len(signal))])
    explained = np.array([np.corrcoef(avg[:, v], signal[:, v])[0, 1] ** 2 for v in range(3)])
    np.testing.assert_allclose(nc / 100, explained, atol=0.05)
    np.testing.assert_allclose(nc / 100, sv / (sv + (1 - sv) / 3), atol=0.05)


def test_ncsnr_is_zero_for_pure_noise():
    _, stim, y = simulate(signal_var=(0.0,), n_img=400)
    snr = te.ncsnr(te.zscore_by_session(y, np.zeros(len(stim))), stim)
    assert snr[0] < 0.15


def test_noise_ceiling_with_varying_repeats_is_nsd_formula():
    snr = np.array([0.5, 1.0])
    counts = [3] * 5 + [2] * 3 + [1] * 2  # A = 5, B = 3, C = 2
    a, b, c = 5, 3, 2
    inv = (a / 3 + b / 2 + c / 1) / (a + b + c)
    np.testing.assert_allclose(te.noise_ceiling(snr, counts), 100 * snr**2 / (snr**2 + inv))


def planted(n_img=120, n_rep=2, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_img, dim))
    w = rng.normal(size=(dim, 3))
    w[:, 2] = 0  # control voxel: noise only
    ids = [f"img{i:03d}" for i in range(n_img)]
    stim = np.repeat(ids, n_rep)
    y = (x @ w)[np.repeat(np.arange(n_img), n_rep)] + rng.normal(size=(n_img * n_rep, 3)) * 1.5
    return x, ids, stim, y


@pytest.mark.parametrize("train_on", ["stimulus", "trial"])
def test_fit_recovers_planted_voxels(train_on):
    x, ids, stim, y = planted()
    res = te.fit_trial_model(
        x, ids, y, stim, ids[:90], ids[90:], fitting=FITTING, train_on=train_on
    )
    assert res["r"][0] > 0.7 and res["r"][1] > 0.7
    assert abs(res["r"][2]) < 0.4
    assert res["n_train_trials"] == 180 and res["n_test_trials"] == 60
    assert res["n_train_rows"] == (90 if train_on == "stimulus" else 180)


def test_cv_groups_are_stimuli(monkeypatch):
    """Per-trial training: repeats of an image are never split between CV train and validation."""
    seen = {}
    real = te.fit_ridge_cv

    def spy(X, Y, groups, *args, **kwargs):
        seen["groups"] = list(groups)
        return real(X, Y, groups, *args, **kwargs)

    monkeypatch.setattr(te, "fit_ridge_cv", spy)
    x, ids, stim, y = planted(n_img=40, n_rep=3)
    te.fit_trial_model(x, ids, y, stim, ids[:30], ids[30:], fitting=FITTING, train_on="trial")
    groups = np.asarray(seen["groups"])
    assert len(groups) == 90
    for train, val in story_folds(groups, FITTING["n_folds"]):
        assert not set(groups[train]) & set(groups[val])


def test_train_and_test_must_be_disjoint():
    x, ids, stim, y = planted(n_img=20)
    with pytest.raises(ValueError, match="both train and test"):
        te.fit_trial_model(x, ids, y, stim, ids[:12], ids[11:], fitting=FITTING)
