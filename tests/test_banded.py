"""Banded ridge, split scores and variance partitioning against planted ground truth."""

import numpy as np
import pytest

from lmbrain.banded import fit_banded_ridge_cv, split_r2, variance_partition, winning_band
from lmbrain.fitting import fit_ridge_cv, predict


def _planted(seed=0, n_stories=6, per_story=80, n_feat=(12, 20), n_each=6, noise=1.0):
    """Voxels 0..n_each-1 driven by band A only, the next by B only, the last by both."""
    rng = np.random.default_rng(seed)
    n = n_stories * per_story
    Xa = rng.normal(size=(n, n_feat[0])).astype(np.float32)
    Xb = rng.normal(size=(n, n_feat[1])).astype(np.float32)
    wa = rng.normal(size=(n_feat[0], 3 * n_each)) / np.sqrt(n_feat[0])
    wb = rng.normal(size=(n_feat[1], 3 * n_each)) / np.sqrt(n_feat[1])
    wa[:, n_each : 2 * n_each] = 0  # B-only voxels
    wb[:, :n_each] = 0  # A-only voxels
    Y = Xa @ wa + Xb @ wb + noise * rng.normal(size=(n, 3 * n_each))
    groups = np.repeat(np.arange(n_stories), per_story)
    return Xa, Xb, Y.astype(np.float32), groups, n_each


def test_split_r2_sums_to_joint_and_matches_himalaya():
    from himalaya.scoring import r2_score_split

    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 4))
    parts = rng.normal(size=(3, 50, 4)) * 0.3 + y[None] * 0.2
    shares = split_r2(y, parts)
    joint = parts.sum(0)
    yc = y - y.mean(0)
    np.testing.assert_allclose(shares.sum(0), 1 - ((yc - joint) ** 2).sum(0) / (yc**2).sum(0))
    ref = r2_score_split(yc, parts)
    np.testing.assert_allclose(shares, np.asarray(ref), rtol=1e-6, atol=1e-8)


def test_variance_partition_closed_form():
    r2 = {
        frozenset({"a", "b"}): np.array([0.5, 0.3]),
        frozenset({"a"}): np.array([0.4, 0.1]),
        frozenset({"b"}): np.array([0.2, 0.25]),
    }
    parts = variance_partition(r2, ["a", "b"])
    np.testing.assert_allclose(parts["unique_a"], [0.3, 0.05])
    np.testing.assert_allclose(parts["unique_b"], [0.1, 0.2])
    np.testing.assert_allclose(parts["shared"], [0.4 + 0.2 - 0.5, 0.1 + 0.25 - 0.3])
    with pytest.raises(ValueError, match="band sets"):
        variance_partition({frozenset({"a", "b"}): np.zeros(2)}, ["a", "b"])


def test_banded_fit_recovers_which_band_drives_each_voxel():
    Xa, Xb, Y, groups, k = _planted()
    train, test = groups < 5, groups == 5
    fit = fit_banded_ridge_cv(
        [Xa[train], Xb[train]],
        Y[train],
        groups[train],
        np.logspace(-2, 4, 7),
        band_names=["text", "audio"],
        n_iter=12,
        n_folds=5,
        seed=0,
        backend="numpy",
    )
    pred = fit.predict_split([Xa[test], Xb[test]])
    shares = split_r2(Y[test], pred)
    assert list(winning_band(shares, fit.band_names)[:k]) == ["text"] * k
    assert list(winning_band(shares, fit.band_names)[k : 2 * k]) == ["audio"] * k
    # a band that does not drive a voxel gets (nearly) none of its variance
    assert np.all(shares[1, :k] < 0.05) and np.all(shares[0, k : 2 * k] < 0.05)
    assert np.all(shares[:, 2 * k :] > 0.05)
    # reruns with the same seed give identical numbers
    small = [Xa[train], Xb[train]], Y[train, :3], groups[train], np.logspace(-2, 4, 3)
    once = fit_banded_ridge_cv(*small, n_iter=4, seed=3, backend="numpy")
    again = fit_banded_ridge_cv(*small, n_iter=4, seed=3, backend="numpy")
    np.testing.assert_array_equal(again.coefs[1], once.coefs[1])

    # variance partitioning from single-band ridge fits on the same split
    r2 = {
        frozenset({"text", "audio"}): 1
        - ((Y[test] - pred.sum(0)) ** 2).sum(0) / ((Y[test] - Y[test].mean(0)) ** 2).sum(0)
    }
    for name, X in (("text", Xa), ("audio", Xb)):
        single = fit_ridge_cv(X[train], Y[train], groups[train], np.logspace(-2, 4, 7))
        p = predict(single, X[test])
        r2[frozenset({name})] = 1 - ((Y[test] - p) ** 2).sum(0) / (
            (Y[test] - Y[test].mean(0)) ** 2
        ).sum(0)
    parts = variance_partition(r2, ["text", "audio"])
    assert np.all(parts["unique_text"][:k] > 0.1) and np.all(parts["unique_audio"][:k] < 0.05)
    assert np.all(parts["unique_audio"][k : 2 * k] > 0.1)
    # independent bands share (almost) nothing: on average, far less than their unique parts
    assert abs(parts["shared"].mean()) < 0.05 < parts["unique_text"][:k].mean()


def test_winning_band_handles_nan_and_checks_inputs():
    shares = np.array([[0.1, np.nan, 0.0], [0.2, np.nan, -0.1]])
    assert list(winning_band(shares, ["a", "b"])) == ["b", "", "a"]
    with pytest.raises(ValueError, match="at least two"):
        fit_banded_ridge_cv([np.zeros((4, 2))], np.zeros((4, 1)), [0, 0, 1, 1], [1.0])


def test_banded_summary_states_its_sample():
    from lmbrain.aggregate import banded_summary

    vox = {
        "r2": np.array([0.1, 0.3, np.nan]),
        "split_r2_a": np.array([0.05, 0.2, 0.0]),
        "unique_a": np.array([0.01, 0.1, 0.0]),
        "shared": np.array([0.0, 0.1, 0.0]),
        "winner": np.array(["a", "a", "a"]),
        "hemisphere": np.array(["L", "R", "R"]),
        "n_train_stories": np.asarray(4),
        "n_test_stories": np.asarray(1),
    }
    table = banded_summary({("S1", "m"): vox}).set_index("hemisphere")
    assert (table["n_subjects"] == 1).all() and (table["n_train_stories"] == 4).all()
    assert (table["n_test_stories"] == 1).all() and table["resampling"].str.startswith("none").all()
    assert table.loc["all", "mean_joint_r2"] == pytest.approx(0.2)  # NaN voxel left out
    old = {k: v for k, v in vox.items() if not k.startswith("n_")}  # fits written before
    assert (banded_summary({("S1", "m"): old})["n_train_stories"] == -1).all()


def test_load_subject_npzs_keys_by_subject_and_name(tmp_path):
    """The summary scripts' reader: ``<kind>/<subject>/<name>.npz`` -> {(subject, name): arrays}."""
    from lmbrain.io import load_subject_npzs, save_npz

    paths = []
    for subject, name, value in [("sub-01", "a+b", 1.0), ("sub-02", "a+b", 2.0)]:
        path = tmp_path / "banded" / subject / f"{name}.npz"
        path.parent.mkdir(parents=True)
        save_npz(path, r2=np.full(3, value), hemisphere=np.array(["L", "R", "L"]))
        paths.append(str(path))
    tables = load_subject_npzs(paths)
    assert sorted(tables) == [("sub-01", "a+b"), ("sub-02", "a+b")]
    np.testing.assert_array_equal(tables[("sub-02", "a+b")]["r2"], [2.0, 2.0, 2.0])
    assert tables[("sub-01", "a+b")]["hemisphere"].tolist() == ["L", "R", "L"]
