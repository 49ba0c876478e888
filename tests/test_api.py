"""The Python API from a notebook: top-level entry points, partial config sections."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import lmbrain
from lmbrain.config import section, validate_config
from lmbrain.errors import ConfigError


def test_entry_points_import_from_the_package():
    for name in lmbrain._API:
        value = getattr(lmbrain, name)
        assert value is getattr(importlib.import_module(lmbrain._API[name]), name), name
    from lmbrain import fit_encoding_model, load_model, open_dataset  # noqa: F401

    assert set(lmbrain._API) <= set(dir(lmbrain))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lmbrain.nope  # noqa: B018


def test_import_lmbrain_stays_light():
    code = "import sys, lmbrain; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_partial_sections_take_the_schema_defaults():
    full = validate_config({"datasets": {"d": {"simulate": {}}}, "models": [{"model": "gpt2"}]})
    assert section("fitting") == full["fitting"]
    assert section("temporal", {"method": "hrf"}) == {**full["temporal"], "method": "hrf"}
    with pytest.raises(ConfigError, match="fitting"):
        section("fitting", {"n_fold": 3})
    with pytest.raises(ConfigError, match="temporal.delays"):
        section("temporal", {"delays": "1"})
    with pytest.raises(ConfigError, match="not a configuration section"):
        section("seed")


def test_design_from_a_partial_temporal_section():
    from lmbrain.encoding import design_from_features

    class Dataset:
        tr, trim_start, trim_end = 2.0, 2, 1

    rng = np.random.default_rng(0)
    feats, times = rng.normal(size=(80, 3)), np.sort(rng.uniform(0, 55, 80))
    x = design_from_features(Dataset(), feats, times, 30, {})  # all defaults: lanczos, 4 delays
    assert x.shape == (27, 12)
    x = design_from_features(Dataset(), feats, times, 30, {"delays": [1, 2]})
    assert x.shape == (27, 6)
