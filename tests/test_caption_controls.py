"""Doerig et al.'s control feature spaces: nouns only, verbs only, word-order scrambled.

POS extraction is checked on hand-tagged captions (tags as NLTK's Penn Treebank tagger gives
them), scrambling for being a seeded, reproducible permutation of each caption's words, and
the control features against the sentence model run by hand on the control texts.
"""

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from lmbrain import sentence_features as sf
from lmbrain.errors import ConfigError, InputError
from lmbrain.models import load_model

# Hand-checked tags (Penn Treebank, as nltk.pos_tag tags these captions).
TAGGED = """stimulus\ttagged
img1\tA/DT man/NN riding/VBG a/DT horse/NN on/IN the/DT beach/NN ./.
img1\tTwo/CD dogs/NNS are/VBP playing/VBG in/IN the/DT snow/NN
img2\tA/DT plate/NN of/IN food/NN in/IN New/NNP York/NNP
img3\tRed/JJ and/CC blue/JJ
"""


def write_tagged(tmp_path, text=TAGGED):
    path = tmp_path / "tagged.tsv"
    path.write_text(text)
    return path


def test_nouns_and_verbs_of_hand_tagged_captions(tmp_path):
    tagged = sf.read_tagged_captions(write_tagged(tmp_path), ["img1", "img2", "img3"])
    assert sf.pos_words(tagged["img1"], "nouns") == ["man", "horse", "beach", "dogs", "snow"]
    assert sf.pos_words(tagged["img1"], "verbs") == ["riding", "are", "playing"]
    assert sf.pos_words(tagged["img2"], "nouns") == ["plate", "food"]  # proper nouns are not
    assert sf.pos_words(tagged["img2"], "verbs") == []
    assert sf.pos_words(tagged["img3"], "nouns") == []


def test_pos_features_mean_over_all_captions_with_fallback(tmp_path):
    tagged = sf.read_tagged_captions(write_tagged(tmp_path), ["img1", "img2", "img3"])
    rng = np.random.default_rng(0)
    table = {}

    def embed(texts):
        for t in texts:
            table.setdefault(t, rng.standard_normal(4))
        return np.stack([table[t] for t in texts])

    nouns = sf.pos_features(tagged, ["img1", "img2", "img3"], "nouns", embed)
    want = np.mean([table[w] for w in ["man", "horse", "beach", "dogs", "snow"]], axis=0)
    np.testing.assert_allclose(nouns[0], want, rtol=1e-6)
    np.testing.assert_allclose(nouns[1], (table["plate"] + table["food"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(nouns[2], table["something"], rtol=1e-6)
    verbs = sf.pos_features(tagged, ["img1", "img2"], "verbs", embed)
    np.testing.assert_allclose(verbs[1], table["is"], rtol=1e-6)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stimulus\ttagged\nimg1\tA/DT dog\n", "not word/TAG"),
        ("stimulus\ttext\nimg1\tA/DT\n", "columns"),
        ("stimulus\ttagged\nimg1\tA/DT dog/NN\n", "img9"),
    ],
)
def test_bad_tagged_file_names_the_problem(tmp_path, text, problem):
    with pytest.raises(InputError, match=problem):
        sf.read_tagged_captions(write_tagged(tmp_path, text), ["img1", "img9"])


def test_without_tags_or_nltk_the_error_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)  # import nltk raises ImportError
    with pytest.raises(ConfigError, match="nltk"):
        sf.nltk_tagged_captions({"a": ["a dog"]}, ["a"])


def test_scrambling_is_a_seeded_permutation_of_the_words():
    caption = "A man riding a horse on the beach, at sunset."
    words = sf.caption_words(caption)
    got = sf.scramble_caption(caption, 0, "img1", 0)
    assert sorted(got.split()) == sorted(words)
    assert got == sf.scramble_caption(caption, 0, "img1", 0)  # reproducible
    others = {sf.scramble_caption(caption, seed, "img1", 0) for seed in range(1, 6)}
    assert len(others | {got}) > 1  # the seed matters
    # a caption is scrambled the same way whatever the other captions are
    both = sf.scrambled_captions({"img1": [caption], "img2": ["a cat"]}, ["img1", "img2"], 0)
    alone = sf.scrambled_captions({"img1": [caption]}, ["img1"], 0)
    assert both["img1"] == alone["img1"] == [got]


def test_controls_need_a_model():
    with pytest.raises(ConfigError, match="needs model"):
        sf.check_baselines([{"name": "n", "kind": "nouns"}], [], "datasets.x.trials.baselines")


def test_control_features_embed_the_control_texts(tiny_model_dirs, tmp_path):
    dataset = SimpleNamespace(
        stimuli=["img1", "img2", "img3"],
        captions={
            "img1": ["A man riding a horse on the beach.", "Two dogs are playing in the snow"],
            "img2": ["A plate of food in New York"],
            "img3": ["Red and blue"],
        },
    )
    path = str(tiny_model_dirs["bert"])
    model, tok, _ = load_model({"model": path}, "unused-cache")
    spec = {"name": "s", "kind": "scrambled", "model": path, "seed": 3}
    feats, info = sf.baseline_features(dataset, spec, "unused-cache", "mean")
    texts = sf.scrambled_captions(dataset.captions, dataset.stimuli, 3)
    want = sf.stimulus_embeddings(model, tok, texts, dataset.stimuli, [2], "mean")[2]
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    assert info["baseline"] and info["kind"] == "scrambled"

    spec = {"name": "n", "kind": "verbs", "model": path, "pos": str(write_tagged(tmp_path))}
    feats, _ = sf.baseline_features(dataset, spec, "unused-cache", "mean")
    each = sf.caption_embeddings(model, tok, ["riding", "are", "playing", "is"], [2], "mean")[2]
    np.testing.assert_allclose(feats[0], each[:3].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[1], each[3], rtol=1e-5, atol=1e-6)
