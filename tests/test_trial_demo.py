"""The simulated trial dataset: valid layout, reproducible, and the planted truth as documented."""

import numpy as np
import pytest

from lmbrain.datasets import open_dataset
from lmbrain.errors import ConfigError
from lmbrain.sentence_features import baseline_features, check_baselines
from lmbrain.trial_demo import load_scenes, make_trial_dataset, planted_features


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_trial_dataset(tmp_path_factory.mktemp("t") / "ds", voxels_per_hemisphere=6)


def test_layout_is_valid_and_reproducible(demo, tmp_path):
    ds = open_dataset(demo, "trials")
    manifest = ds.validate(ds.subjects)
    assert manifest["n_stimuli"] == 60 and len(ds.test_stimuli) == 12
    assert manifest["subjects"]["sub-01"]["n_trials"] == 180
    again = make_trial_dataset(tmp_path / "again", voxels_per_hemisphere=6)
    for sub in ds.subjects:
        a = np.load(demo / "responses" / sub / "betas.npy")
        b = np.load(again / "responses" / sub / "betas.npy")
        np.testing.assert_array_equal(a, b)


def test_planted_signal_lives_in_visual_voxels(demo):
    """Regressing session-z-scored image means on the planted features: R^2 high only in V."""
    from lmbrain.trial_encoding import stimulus_means, zscore_by_session

    ds = open_dataset(demo, "trials")
    x = np.load(demo / "ground_truth" / "features.npy")
    ids = (demo / "ground_truth" / "stimuli.txt").read_text().split()
    trials = ds.trials("sub-01")
    y = zscore_by_session(ds.betas("sub-01"), trials["session"])
    _, means, _ = stimulus_means(y, trials["stimulus"], ids)
    x1 = np.column_stack([x, np.ones(len(x))])
    resid = means - x1 @ np.linalg.lstsq(x1, means, rcond=None)[0]
    r2 = 1 - resid.var(0) / means.var(0)
    visual = ds.voxels("sub-01")["roi"] == "visual"
    assert r2[visual].min() > 0.5 and r2[~visual].max() < 0.4


def test_planted_features_are_caption_word_means():
    captions, categories = load_scenes()
    feats = planted_features(captions, sorted(captions))
    assert feats.shape == (60, 8) and len(set(categories.values())) == 6
    np.testing.assert_allclose(feats.mean(0), 0, atol=1e-12)


def test_baselines(demo):
    ds = open_dataset(demo, "trials")
    cat, info = baseline_features(ds, {"name": "c", "kind": "category"}, "unused")
    assert cat.shape == (60, 6) and info["n_params"] == 6 and info["baseline"]
    rnd, _ = baseline_features(ds, {"name": "r", "kind": "random", "dim": 5, "seed": 1}, "")
    assert rnd.shape == (60, 5)
    with pytest.raises(ConfigError, match="already used"):
        check_baselines([{"name": "m", "kind": "category"}], ["m"], "b")
    with pytest.raises(ConfigError, match="exactly one of model, glove"):
        check_baselines([{"name": "x", "kind": "bow"}], [], "b")
