"""Baseline feature spaces (exact vectors) and the trained-minus-untrained gap (brute force)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmbrain import plotting
from lmbrain.aggregate import SCORE_COLUMNS, model_summary
from lmbrain.baselines import (
    baseline_features,
    expand_model_entries,
    normalize_word,
    read_static_embeddings,
    untrained_gaps,
    untrained_twins,
)
from lmbrain.config import validate_config
from lmbrain.errors import ConfigError, InputError
from lmbrain.features import read_feature_info, read_features
from lmbrain.models import model_id

WORDS = ["The", "fox,", "saw", "the", "“Fox”", "--", "unknownword"]


def _normal(seed, key, shape):
    return np.random.default_rng([seed, zlib.crc32(key.encode())]).standard_normal(shape)


# --------------------------------------------------------------------------- features


def test_normalize_word():
    keys = [normalize_word(w) for w in WORDS]
    assert keys == ["the", "fox", "saw", "the", "fox", "", "unknownword"]
    assert normalize_word("don't") == "don't"


def test_random_vectors_exact():
    entry = {"name": "rv", "baseline": "random_vectors", "width": 5, "seed": 3}
    feats, info = baseline_features(entry, {"a": WORDS, "b": WORDS[:2]})
    np.testing.assert_array_equal(feats["a"], _normal(3, "story:a", (7, 5)).astype(np.float32))
    np.testing.assert_array_equal(feats["b"], _normal(3, "story:b", (2, 5)).astype(np.float32))
    assert not np.array_equal(feats["a"][0], feats["a"][3])  # one vector per occurrence
    assert info["n_params"] == 0 and info["n_layers"] == 1 and info["hidden_size"] == 5
    assert info["n_table_entries"] == 0


def test_random_word_embeddings_exact():
    entry = {"name": "re", "baseline": "random_word_embeddings", "width": 4, "seed": 1}
    feats, info = baseline_features(entry, {"a": WORDS, "b": ["fox"]})
    a = feats["a"]
    for i, key in enumerate(["the", "fox", "saw", "the", "fox"]):
        np.testing.assert_array_equal(a[i], _normal(1, f"word:{key}", 4).astype(np.float32))
    np.testing.assert_array_equal(a[5], np.zeros(4))  # pure punctuation
    np.testing.assert_array_equal(feats["b"][0], a[1])  # the same vector in every story
    assert info["n_table_entries"] == 4 * 4  # the, fox, saw, unknownword
    other, _ = baseline_features({**entry, "seed": 2}, {"a": WORDS})
    assert not np.allclose(other["a"][0], a[0])


def test_static_embeddings_exact(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 1 2 3\nfox 4 5 6\nSaw 7 8 9\nthe 0 0 0\nbird 1 1 1\n")
    entry = {"name": "glove", "baseline": "static", "path": str(glove)}
    feats, info = baseline_features(entry, {"a": WORDS})
    expected = np.array(
        [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 2, 3], [4, 5, 6], [0, 0, 0], [0, 0, 0]],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(feats["a"], expected)
    assert info["n_oov"] == 2  # "--" and "unknownword"
    assert info["n_table_entries"] == 3 * 3  # bird is not in the stories: not loaded
    assert info["hidden_size"] == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [("the 1 2\nfox 1 2 3\n", "line 2: 3 values"), ("the 1 x\n", "non-numeric"), ("", "no emb")],
)
def test_static_file_errors(tmp_path, text, problem):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        read_static_embeddings(path)
    assert str(path) in str(err.value)


def test_static_word2vec_header(tmp_path):
    path = tmp_path / "w2v.txt"
    path.write_text("2 3\nthe 1 2 3\nfox 4 5 6\n")
    table, dim = read_static_embeddings(path)
    assert dim == 3 and sorted(table) == ["fox", "the"]


def test_write_baseline_features_file(tmp_path):
    from lmbrain.baselines import write_baseline_features

    class Data:
        stories = ["s1"]

        def words(self, story):
            return type("W", (), {"words": WORDS})()

    entry = {"name": "rv", "baseline": "random_vectors", "width": 3, "seed": 0}
    write_baseline_features(tmp_path / "f.h5", entry, Data())
    np.testing.assert_array_equal(
        read_features(tmp_path / "f.h5", "s1", 0), _normal(0, "story:s1", (7, 3)).astype("f4")
    )
    assert read_feature_info(tmp_path / "f.h5")["baseline"] == "random_vectors"


# --------------------------------------------------------------------------- config


def test_expand_seeds_and_widths():
    cfg = validate_config(
        {
            "datasets": {"d": {"path": "/x"}},
            "models": [
                {"name": "rv", "baseline": "random_vectors", "width": [8, 16], "seeds": [0, 1]},
                {"model": "org/m", "untrained": True, "seeds": [0, 2]},
                {"name": "tw", "model": "org/m", "untrained": True, "seeds": [5]},
                {"model": "org/m", "family": "M"},
            ],
        }
    )
    ids = [model_id(e) for e in cfg["models"]]
    assert ids == [
        "rv-w8-s0",
        "rv-w8-s1",
        "rv-w16-s0",
        "rv-w16-s1",
        "org--m-untrained-s0",
        "org--m-untrained-s2",
        "tw-s5",
        "org--m",
    ]
    assert [e.get("width") for e in cfg["models"][:4]] == [8, 8, 16, 16]
    assert all(e["untrained"] for e in cfg["models"][:4])
    assert untrained_twins(cfg["models"]) == {
        "org--m-untrained-s0": "org--m",
        "org--m-untrained-s2": "org--m",
        "tw-s5": "org--m",
    }


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"baseline": "random_vectors", "width": 3}, "models.0.name"),
        ({"name": "r", "baseline": "random_vectors"}, "models.0.width"),
        ({"name": "g", "baseline": "static"}, "models.0.path"),
        ({"model": "org/m", "seeds": [0, 1]}, "models.0.seeds"),
    ],
)
def test_bad_baseline_entries(entry, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        expand_model_entries([entry])


# --------------------------------------------------------------------------- gaps

N_VOX = 40


def _gap_fixture(planted_gap=None, seed=0, subjects=("S1", "S2")):
    """Subjects; trained model T (2 layers) and twins U0, U1 (2 layers each)."""
    rng = np.random.default_rng(seed)
    voxels, rows = {}, []
    for subject in subjects:
        base = rng.normal(0.1, 0.1, N_VOX)
        for model, untrained in [("T", False), ("U0", True), ("U1", True)]:
            for layer in range(2):
                if planted_gap is None:
                    r = base + rng.normal(0, 0.05, N_VOX) + (0.1 if not untrained else 0)
                    r[rng.integers(0, N_VOX)] = np.nan
                else:
                    r = base + (planted_gap if not untrained else 0.0) + 0.01 * layer
                path = f"{subject}/{model}/{layer}.npz"
                voxels[path] = {"r": r}
                record = dict.fromkeys(SCORE_COLUMNS, 0)
                record.update(
                    dataset="ds",
                    subject=subject,
                    model=model,
                    family="fam",
                    untrained=untrained,
                    n_params=1000,
                    layer=layer,
                    train_fraction=1.0,
                    mean_r=float(np.nanmean(r)),
                    mean_cv_score=float(layer == (1 if model != "U1" else 0)),
                    fit_path=path,
                )
                rows.append(record)
    return pd.DataFrame(rows), voxels


def test_gap_point_estimate_and_ci_brute_force():
    scores, voxels = _gap_fixture()
    twins = {"U0": "T", "U1": "T"}
    table = untrained_gaps(scores, twins, load_voxels=voxels.__getitem__, n_boot=200, seed=4)
    assert len(table) == 1
    row = table.iloc[0]
    # brute force: best layer by CV is 1 for T and U0, 0 for U1
    chosen = {"T": 1, "U0": 1, "U1": 0}
    gaps, boot = [], np.zeros((200, 2))
    rng = np.random.default_rng([4, zlib.crc32(b"ds/T")])
    for j, subject in enumerate(["S1", "S2"]):
        r = {m: voxels[f"{subject}/{m}/{layer}.npz"]["r"] for m, layer in chosen.items()}
        gaps.append(np.nanmean(r["T"]) - (np.nanmean(r["U0"]) + np.nanmean(r["U1"])) / 2)
        for b in range(200):
            idx = rng.integers(0, N_VOX, size=N_VOX)
            t = np.nanmean(r["T"][idx])
            boot[b, j] = t - (np.nanmean(r["U0"][idx]) + np.nanmean(r["U1"][idx])) / 2
    assert row["gap"] == pytest.approx(np.mean(gaps), abs=1e-12)
    reps = boot.mean(axis=1)
    assert row["gap_ci_low_voxels"] == pytest.approx(np.percentile(reps, 2.5), abs=1e-12)
    assert row["gap_ci_high_voxels"] == pytest.approx(np.percentile(reps, 97.5), abs=1e-12)
    assert row["n_seeds"] == 2 and row["n_subjects"] == 2
    # two subjects: no subject-level interval or test, and the table says why
    assert np.isnan(
        row[["gap_ci_low", "gap_ci_high", "gap_ci_low_subjects", "gap_t_p"]].astype(float)
    ).all()
    assert "(have 2)" in row["note"]
    assert row["untrained_models"] == "U0,U1"


def test_gap_planted_constant_collapses_ci():
    scores, voxels = _gap_fixture(planted_gap=0.07)
    twins = {"U0": "T", "U1": "T"}
    row = untrained_gaps(scores, twins, load_voxels=voxels.__getitem__, n_boot=50).iloc[0]
    # T at layer 1 (+0.01), U0 at layer 1 (+0.01), U1 at layer 0: gap = 0.07 + 0.01 - 0.005
    assert row["gap"] == pytest.approx(0.075)
    assert row["gap_ci_low_voxels"] == pytest.approx(0.075)
    assert row["gap_ci_high_voxels"] == pytest.approx(0.075)


def test_gap_subject_level_inference_brute_force():
    subjects = ("S1", "S2", "S3", "S4")
    scores, voxels = _gap_fixture(seed=1, subjects=subjects)
    twins = {"U0": "T", "U1": "T"}
    row = untrained_gaps(scores, twins, load_voxels=voxels.__getitem__, n_boot=300, seed=2)
    row = row.iloc[0]
    chosen = {"T": 1, "U0": 1, "U1": 0}
    gaps = []
    for subject in subjects:
        r = {m: voxels[f"{subject}/{m}/{layer}.npz"]["r"] for m, layer in chosen.items()}
        gaps.append(np.nanmean(r["T"]) - (np.nanmean(r["U0"]) + np.nanmean(r["U1"])) / 2)
    gaps = np.array(gaps)
    # subjects only: replicate = mean of the drawn subjects' gaps, same stream as the code
    drawn = np.random.default_rng([2, zlib.crc32(b"ds/T"), 2]).integers(0, 4, size=(300, 4))
    reps = gaps[drawn].mean(axis=1)
    assert row["gap_ci_low_subjects"] == pytest.approx(np.percentile(reps, 2.5), abs=1e-12)
    assert row["gap_ci_high_subjects"] == pytest.approx(np.percentile(reps, 97.5), abs=1e-12)
    ref = stats.ttest_1samp(gaps, 0.0)
    assert row["gap_t"] == pytest.approx(ref.statistic) and row["gap_t_p"] == pytest.approx(
        ref.pvalue
    )
    assert row["gap_signflip_p"] == pytest.approx(2 / 16)  # four positive gaps, exact
    assert row["gap_ci_low"] < row["gap"] < row["gap_ci_high"] and row["note"] == ""
    hier = row["gap_ci_high"] - row["gap_ci_low"]
    assert hier > row["gap_ci_high_voxels"] - row["gap_ci_low_voxels"]


def test_gap_without_twins_is_empty():
    scores, voxels = _gap_fixture()
    assert untrained_gaps(scores, {}, load_voxels=voxels.__getitem__).empty


# --------------------------------------------------------------------------- plots


def test_baselines_drawn_as_labelled_lines():
    scores, _ = _gap_fixture()
    scores = scores.assign(mean_r_left=scores.mean_r, mean_r_right=scores.mean_r, n_layers=2)
    base = scores[scores.model == "U0"].assign(model="random-8", n_params=0)
    scores = pd.concat([scores, base], ignore_index=True)
    summary = model_summary(scores)
    expected = summary.set_index("model").loc["random-8", "mean_r"]
    fig = plotting._build_scaling_models(scores, pd.DataFrame(columns=["dataset"]))
    lines = [ln for ln in fig.axes[0].get_lines() if "baseline" in str(ln.get_label())]
    assert len(lines) == 1 and "random-8" in lines[0].get_label()
    np.testing.assert_allclose(lines[0].get_ydata(), [expected, expected])
    fig = plotting._build_layers(scores)
    labels = [str(ln.get_label()) for ln in fig.axes[0].get_lines()]
    assert any(lab.startswith("random-8 (baseline)") for lab in labels)
    assert "random-8" not in labels  # no depth curve for a baseline


def test_width_from_models(tmp_path):
    from lmbrain.baselines import expand_model_widths
    from lmbrain.testing import make_tiny_model

    a = make_tiny_model(tmp_path / "a", arch="gpt2", hidden_size=16, n_layers=1)
    b = make_tiny_model(tmp_path / "b", arch="llama", hidden_size=24, n_layers=1)
    cfg = validate_config(
        {
            "datasets": {"d": {"path": "/x"}},
            "models": [
                {"model": str(a)},
                {"model": str(b)},
                {"model": str(b), "untrained": True},
                {"name": "rv", "baseline": "random_vectors", "width": "models", "seeds": [0, 1]},
            ],
        }
    )
    entries = expand_model_widths(cfg["models"], tmp_path / "cache")
    base = [(model_id(e), e["width"], e["seed"]) for e in entries if e.get("baseline")]
    assert base == [
        ("rv-w16-s0", 16, 0),
        ("rv-w16-s1", 16, 1),
        ("rv-w24-s0", 24, 0),
        ("rv-w24-s1", 24, 1),
    ]
    assert all("seeds" not in e for e in entries)
    with pytest.raises(ConfigError, match="at least one trained model"):
        expand_model_widths(cfg["models"][2:], tmp_path / "cache")
