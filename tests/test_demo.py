"""Tests of the simulated demo dataset (lmbrain.demo)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lmbrain import demo
from lmbrain.datasets.native import NativeDataset
from lmbrain.errors import InputError
from lmbrain.stimulus import read_word_table
from lmbrain.temporal import glover_hrf_at, tr_times

STORIES = ["01_farm", "02_fog", "03_kitchen"]
SMALL = dict(stories=STORIES, voxels_per_hemisphere=4, n_repeats=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return demo.make_demo_dataset(tmp_path_factory.mktemp("d") / "demo", seed=3, **SMALL)


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory) -> Path:
    """One subject, more voxels and repeats, white noise: for noise-ceiling checks."""
    return demo.make_demo_dataset(
        tmp_path_factory.mktemp("c") / "demo",
        seed=5,
        n_subjects=1,
        voxels_per_hemisphere=60,
        n_repeats=8,
        stories=["01_farm", "12_lighthouse"],
        noise_ar=0.0,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- #
# Text helpers
# --------------------------------------------------------------------------- #
def test_packaged_stories_load_sorted():
    stories = demo.load_stories()
    assert list(stories) == sorted(stories)
    assert len(stories) == 12 and list(stories)[-1] == "12_lighthouse"
    assert all(len(words) > 500 for words in stories.values())


def test_load_stories_errors(tmp_path):
    with pytest.raises(InputError, match="no story"):
        demo.load_stories(tmp_path)
    (tmp_path / "a.txt").write_text("  \n")
    with pytest.raises(InputError, match="no words"):
        demo.load_stories(tmp_path)


@pytest.mark.parametrize(
    ("word", "norm"),
    [('"You', "you"), ("grandmother's,", "grandmother's"), ('on."', "on"), ("Don't", "don't")],
)
def test_normalize_word(word, norm):
    assert demo.normalize_word(word) == norm


@pytest.mark.parametrize(
    ("word", "n"), [("a", 1), ("farm,", 1), ("silo", 2), ("grandmother's", 3), ("rhythm", 1)]
)
def test_count_syllables(word, n):
    assert demo.count_syllables(word) == n


def test_category_matrix_matches_inflections():
    cats = list(demo.SEMANTIC_CATEGORIES)
    m = demo.category_matrix(["cows", "kitchens", "walked", "the"])
    assert m[0, cats.index("nature")] == 1
    assert m[1, cats.index("places")] == 1
    assert m[2, cats.index("motion")] == 1
    assert m[3].sum() == 0


def test_bigram_surprisal_by_hand():
    seqs = [["a", "b", "a"], ["b", "b"]]
    k, v = 0.5, 2  # vocabulary {a, b}
    got = demo.bigram_surprisal(seqs, k=k)
    # contexts: <s> x2, a x1, b x2; pairs: (<s>,a) (a,b) (b,a) (<s>,b) (b,b)
    p = {("<s>", "a"): 1, ("a", "b"): 1, ("b", "a"): 1, ("<s>", "b"): 1, ("b", "b"): 1}
    c = {"<s>": 2, "a": 1, "b": 2}

    def s(prev, w):
        return -math.log((p.get((prev, w), 0) + k) / (c[prev] + k * v))

    np.testing.assert_allclose(got[0], [s("<s>", "a"), s("a", "b"), s("b", "a")])
    np.testing.assert_allclose(got[1], [s("<s>", "b"), s("b", "b")])


def test_ewma_matches_loop():
    x = np.random.default_rng(0).normal(size=(30, 2))
    a = math.exp(-1 / 4)
    y, prev = np.zeros_like(x), np.zeros(2)
    for t in range(len(x)):
        prev = a * prev + (1 - a) * x[t]
        y[t] = prev
    np.testing.assert_allclose(demo.ewma(x, 4), y)
    np.testing.assert_allclose(demo.ewma(np.ones(400), 16)[-1], 1.0, atol=1e-9)


# --------------------------------------------------------------------------- #
# Timing and regressors
# --------------------------------------------------------------------------- #
def test_word_timings_natural():
    words = demo.load_stories()["01_farm"]
    on, off = demo.word_timings(words, np.random.default_rng(0), words_per_second=2.6)
    dur = off - on
    assert on[0] == 0.0 and np.all(dur > 0.05) and np.all(np.diff(on) > 0)
    assert np.all(on[1:] >= off[:-1] - 1e-12)
    rate = len(words) / dur.sum()  # speech only
    assert 2.0 < rate < 3.5 and rate == pytest.approx(2.6)
    gaps = on[1:] - off[:-1]
    ends = np.array([w.rstrip('"').endswith((".", "!", "?")) for w in words[:-1]])
    commas = np.array([w.endswith(",") for w in words[:-1]])
    assert np.all((gaps[ends] >= 0.4) & (gaps[ends] <= 0.8))
    assert np.all((gaps[commas] >= 0.15) & (gaps[commas] <= 0.3))
    assert np.all(gaps[~ends & ~commas] < 0.3)
    # longer words last longer on average
    syl = np.array([demo.count_syllables(w) for w in words])
    assert dur[syl >= 3].mean() > 1.5 * dur[syl == 1].mean()


def test_word_timings_seeded():
    words = ["one", "two,", "three."] * 5
    a = demo.word_timings(words, np.random.default_rng(1))
    b = demo.word_timings(words, np.random.default_rng(1))
    c = demo.word_timings(words, np.random.default_rng(2))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])


def test_ar1_noise_is_stationary_unit_variance():
    e = demo._ar1_noise(np.random.default_rng(0), (4000, 50, 2), phi=0.5)
    assert e.shape == (4000, 50, 2)
    np.testing.assert_allclose(e.var(axis=(0, 2)), 1.0, atol=0.08)  # every time point, incl. t=0
    lag1 = (e[:, 1:] * e[:, :-1]).mean() / e.var()
    assert lag1 == pytest.approx(0.5, abs=0.02)


def test_story_regressors_single_impulse():
    feats = np.array([[2.0, -1.0]])
    reg = demo.story_regressors(feats, np.array([3.0]), n_trs=20, tr=2.0)
    lag = tr_times(20, 2.0) - 3.0
    expected = glover_hrf_at(lag) * demo.GRID_DT * (lag < demo.HRF_LENGTH)  # truncated at 32 s
    np.testing.assert_allclose(reg[:, 0], 2 * expected, atol=1e-10)
    np.testing.assert_allclose(reg[:, 1], -expected, atol=1e-10)
    assert 4.0 <= lag[np.argmax(reg[:, 0])] <= 6.0  # the HRF peaks ~5 s after the word


# --------------------------------------------------------------------------- #
# The dataset
# --------------------------------------------------------------------------- #
def test_layout_and_reader(small):
    meta = yaml.safe_load((small / "dataset.yaml").read_text())
    assert meta == {
        "name": "demo",
        "tr": 2.0,
        "trim": {"start": 5, "end": 5},
        "test_stories": ["03_kitchen"],
        "n_repeats": 3,
        "subjects": ["sub-01", "sub-02"],
    }
    ds = NativeDataset(small)
    manifest = ds.validate(ds.subjects)  # the workflow's own reader accepts it
    assert manifest["train_stories"] == ["01_farm", "02_fog"]
    for sub in ds.subjects:
        vox = pd.read_csv(small / "voxels" / f"{sub}.tsv", sep="\t")
        assert list(vox.columns) == ["voxel", "hemisphere", "roi"]
        assert list(vox.voxel) == list(range(8)) and list(vox.hemisphere) == ["L"] * 4 + ["R"] * 4
        assert set(vox.roi) <= set(demo.ROIS)
        for story in STORIES:
            y = np.load(small / "responses" / sub / f"{story}.npy")
            assert y.dtype == np.float32 and y.shape == (manifest["stories"][story]["n_trs"], 8)
        reps = np.load(small / "responses" / sub / "03_kitchen_repeats.npy")
        mean = np.load(small / "responses" / sub / "03_kitchen.npy")
        assert reps.dtype == np.float32 and reps.shape == (3, *mean.shape)
        np.testing.assert_allclose(mean, reps.mean(axis=0), atol=1e-5)
        assert not (small / "responses" / sub / "01_farm_repeats.npy").exists()


def test_stimuli_words_and_run_length(small):
    texts = demo.load_stories()
    for story in STORIES:
        words = read_word_table(small / "stimuli" / f"{story}.tsv")
        assert words.words == texts[story]  # punctuation and capitals kept
        assert 9.5 <= words.onsets[0] <= 10.5
        n_trs = np.load(small / "responses" / "sub-01" / f"{story}.npy").shape[0]
        assert n_trs * 2.0 >= words.end  # the TRs cover the last word
        assert 10.0 <= n_trs * 2.0 - words.end <= 15.0 + 2.0
        assert n_trs == math.ceil((n_trs * 2.0 - 1e-9) / 2.0)


def test_deterministic(small, tmp_path):
    again = demo.make_demo_dataset(tmp_path / "again", seed=3, **SMALL)
    other = demo.make_demo_dataset(tmp_path / "other", seed=4, **SMALL)
    ref = _files(small)
    assert _files(again) == ref
    different = _files(other)
    assert different.keys() == ref.keys()
    assert different["responses/sub-01/01_farm.npy"] != ref["responses/sub-01/01_farm.npy"]
    assert different["stimuli/01_farm.tsv"] != ref["stimuli/01_farm.tsv"]


def test_subjects_share_stimuli_not_voxels(small):
    g1 = pd.read_csv(small / "ground_truth" / "sub-01.tsv", sep="\t")
    g2 = pd.read_csv(small / "ground_truth" / "sub-02.tsv", sep="\t")
    assert not np.allclose(g1.signal_fraction, g2.signal_fraction)
    y1 = np.load(small / "responses" / "sub-01" / "01_farm.npy")
    y2 = np.load(small / "responses" / "sub-02" / "01_farm.npy")
    assert y1.shape == y2.shape and not np.allclose(y1, y2)


def test_noise_ceiling_matches_repeats(ceiling):
    gt = pd.read_csv(ceiling / "ground_truth" / "sub-01.tsv", sep="\t")
    reps = np.load(ceiling / "responses" / "sub-01" / "12_lighthouse_repeats.npy")[:, 5:-5]
    signal = np.load(ceiling / "ground_truth" / "sub-01" / "12_lighthouse_signal.npy")[5:-5]
    n = reps.shape[0]
    # closed form from the planted parameters
    s = signal.var(axis=0)
    np.testing.assert_allclose(gt.signal_var_test, s, rtol=1e-4)
    np.testing.assert_allclose(
        gt.true_cc_max, np.sqrt(n * s / (n * s + gt.noise_sd**2)), rtol=1e-4, atol=1e-6
    )
    # noise level: residuals around the planted signal
    resid_sd = (reps - signal).std(axis=(0, 1))
    np.testing.assert_allclose(resid_sd, gt.noise_sd, rtol=0.1)
    # empirical: correlation of the mean of repeats with the truth
    mean = reps.mean(axis=0)
    emp = np.array([np.corrcoef(signal[:, v], mean[:, v])[0, 1] for v in range(mean.shape[1])])
    assert abs(np.mean(emp - gt.true_cc_max)) < 0.02
    assert np.corrcoef(emp, gt.true_cc_max)[0, 1] > 0.95
    # empirical from the repeats alone (signal power, Sahani & Linden 2003)
    sp = (reps.sum(0).var(0) - reps.var(1).sum(0)) / (n * (n - 1))
    npow = reps.var(1).mean(0) - sp
    est = np.sqrt(np.clip(n * sp / (n * sp + npow), 0, 1))
    assert abs(np.median(est - gt.true_cc_max)) < 0.05


def test_signal_fraction_spread(ceiling):
    f = pd.read_csv(ceiling / "ground_truth" / "sub-01.tsv", sep="\t").signal_fraction
    assert 0.12 < f.mean() < 0.3 and f.min() < 0.05 and f.max() > 0.35
    np.testing.assert_allclose(
        pd.read_csv(ceiling / "ground_truth" / "sub-01.tsv", sep="\t").noise_sd ** 2,
        (1 - f) / f,
        rtol=1e-4,
    )


def test_planted_lateralisation(ceiling):
    gt = pd.read_csv(ceiling / "ground_truth" / "sub-01.tsv", sep="\t")
    left, right = gt[gt.hemisphere == "L"], gt[gt.hemisphere == "R"]
    assert left.long_timescale_weight.mean() > right.long_timescale_weight.mean() + 0.2
    assert left.mean_log2_timescale.mean() > right.mean_log2_timescale.mean() + 1.0
    ctx = ["share_semantic", "share_surprisal"]
    assert (left[ctx].sum(axis=1)).mean() > 2 * (right[ctx].sum(axis=1)).mean()
    assert right.share_prosody.mean() > 3 * left.share_prosody.mean()
    # ROI labels follow the timescale: AC short, AG long, in both hemispheres
    by_roi = gt.groupby("roi").mean_log2_timescale.mean()
    assert by_roi["AC"] < by_roi["STS"] < by_roi["IFG"] < by_roi["AG"]


def test_lateralisation_in_signal(ceiling):
    """Regressing the planted signal on the true long-timescale regressors explains more on the left."""
    texts = demo.load_stories()
    stims, regs = demo.simulation_design(texts, ["01_farm", "12_lighthouse"], seed=5)
    names = demo.feature_names()
    long_cols = [i for i, nm in enumerate(names) if nm.endswith(("_tau16", "_tau64"))]
    x = regs["12_lighthouse"][5:-5][:, long_cols]
    x = np.column_stack([np.ones(len(x)), x])
    y = np.load(ceiling / "ground_truth" / "sub-01" / "12_lighthouse_signal.npy")[5:-5]
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - ((y - x @ beta) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    hemi = pd.read_csv(ceiling / "voxels" / "sub-01.tsv", sep="\t").hemisphere.to_numpy()
    assert r2[hemi == "L"].mean() > r2[hemi == "R"].mean() + 0.2


def test_all_features_reconstruct_signal(ceiling):
    """The planted signal is a linear function of the generative regressors."""
    texts = demo.load_stories()
    _, regs = demo.simulation_design(texts, ["01_farm", "12_lighthouse"], seed=5)
    x = np.column_stack([np.ones(len(regs["12_lighthouse"])), regs["12_lighthouse"]])
    y = np.load(ceiling / "ground_truth" / "sub-01" / "12_lighthouse_signal.npy")
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(x @ beta, y, atol=1e-4)


# --------------------------------------------------------------------------- #
# Errors and atomicity
# --------------------------------------------------------------------------- #
def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="no stories"):
        demo.make_demo_dataset(tmp_path / "x", stories=["01_farm", "99_nope"])
    with pytest.raises(ValueError, match="subset"):
        demo.make_demo_dataset(tmp_path / "x", stories=STORIES, test_stories=["04_train"])
    with pytest.raises(ValueError, match="training story"):
        demo.make_demo_dataset(tmp_path / "x", stories=["01_farm"])
    with pytest.raises(ValueError, match="n_repeats"):
        demo.make_demo_dataset(tmp_path / "x", stories=STORIES, n_repeats=1)
    assert not (tmp_path / "x").exists()


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "_write_subject", boom)
    with pytest.raises(RuntimeError):
        demo.make_demo_dataset(tmp_path / "demo", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_replaces_dataset_but_not_other_folders(tmp_path):
    out = demo.make_demo_dataset(tmp_path / "demo", seed=1, **SMALL)
    first = _files(out)
    demo.make_demo_dataset(out, seed=2, **SMALL)
    assert _files(out) != first and sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a dataset"):
        demo.make_demo_dataset(other, **SMALL)
    assert (other / "notes.txt").read_text() == "keep me"


def test_demo_config_shows_the_statistics_it_promises():
    """README, "What the demo shows": the demo config turns on what the issue asks it to show.

    Hierarchical (subject-level) CIs exist only from ``inference.MIN_SUBJECTS`` subjects on; the
    reliable-voxel asymmetry needs ``reliable`` among the metrics; significance counts need
    permutations; per-voxel best layers need two or more fitted layers.
    """
    from lmbrain.config import section
    from lmbrain.inference import MIN_SUBJECTS

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    assert config["datasets"]["demo"]["simulate"]["n_subjects"] >= MIN_SUBJECTS
    assert "reliable" in section("aggregate", config.get("aggregate"))["metrics"]
    assert section("scoring", config.get("scoring"))["significance"]["n_permutations"] > 0
    assert section("aggregate", config.get("aggregate"))["voxel_best_layer"] is not False
    assert config["layers"]["count"] >= 2
