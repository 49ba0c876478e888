"""Tests of per-voxel scores against scipy / scikit-learn."""

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score as sk_r2

from lmbrain import scoring


def _data(seed=0, n=60, v=6):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, v))
    pred = 0.5 * y + rng.normal(size=(n, v)) * np.linspace(0.1, 3.0, v)
    return y, pred


def test_pearson_r_matches_scipy():
    y, pred = _data()
    got = scoring.pearson_r(y, pred)
    want = [pearsonr(y[:, j], pred[:, j])[0] for j in range(y.shape[1])]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    got32 = scoring.pearson_r(y.astype(np.float32), pred.astype(np.float32))
    np.testing.assert_allclose(got32, want, atol=1e-6)


def test_r2_matches_sklearn():
    y, pred = _data(1)
    want = sk_r2(y, pred, multioutput="raw_values")
    np.testing.assert_allclose(scoring.r2_score(y, pred), want, rtol=1e-10)


def test_constant_and_nan_columns_give_nan_silently():
    y, pred = _data(2, v=5)
    y[:, 0] = 0.1  # constant truth (round-off in its mean)
    pred[:, 1] = 3.0  # constant prediction
    y[7, 2] = np.nan
    pred[3, 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = scoring.pearson_r(y, pred)
        r2 = scoring.r2_score(y, pred)
    assert np.all(np.isnan(r[:4])) and np.isfinite(r[4])
    assert r[4] == pytest.approx(pearsonr(y[:, 4], pred[:, 4])[0])
    assert np.isnan(r2[0]) and np.isnan(r2[2]) and np.isnan(r2[3])
    assert np.isfinite(r2[1]) and np.isfinite(r2[4])  # constant prediction: r2 is defined


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        scoring.pearson_r(np.zeros((5, 2)), np.zeros((5, 3)))


def test_summarize_scores_counts():
    vals = np.array([0.1, np.nan, 0.3, np.inf, 0.5, -0.1])
    out = scoring.summarize_scores(vals)
    assert out == {"mean": pytest.approx(0.2), "n_used": 4, "n_excluded": 2}
    mask = np.array([True, True, False, False, True, False])
    out = scoring.summarize_scores(vals, mask)
    assert out == {"mean": pytest.approx(0.3), "n_used": 2, "n_excluded": 1}
    empty = scoring.summarize_scores(np.array([np.nan, np.nan]))
    assert np.isnan(empty["mean"]) and empty["n_used"] == 0 and empty["n_excluded"] == 2
    assert isinstance(out["mean"], float) and isinstance(out["n_used"], int)


def test_normalized_r():
    r = np.array([0.2, 0.2, 0.2, 0.2, np.nan])
    cc = np.array([0.5, 0.05, np.nan, 0.1, 0.5])
    got = scoring.normalized_r(r, cc, min_cc_max=0.1)
    np.testing.assert_allclose(got, [0.4, np.nan, np.nan, 2.0, np.nan])


def test_hemisphere_selections_leave_out_empty_hemispheres():
    from lmbrain.scoring import hemisphere_selections

    both = dict(hemisphere_selections(["L", "R", "L"]))
    assert list(both) == ["all", "L", "R"]
    assert both["L"].tolist() == [True, False, True] and both["all"].all()
    assert [label for label, _ in hemisphere_selections(["L", "L"])] == ["all", "L"]
