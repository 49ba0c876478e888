"""Config validation: defaults, dotted-key errors, layer specifications."""

import pytest

from lmbrain.config import fraction_label, resolve_layers, validate_config
from lmbrain.errors import ConfigError


def minimal(**extra):
    cfg = {
        "datasets": {"demo": {"simulate": {}}},
        "models": [{"model": "gpt2"}],
    }
    cfg.update(extra)
    return cfg


def test_defaults_are_filled():
    cfg = validate_config(minimal())
    assert cfg["fitting"]["n_folds"] == 5
    assert cfg["temporal"]["delays"] == [1, 2, 3, 4]
    assert cfg["layers"] == "all"
    assert cfg["datasets"]["demo"]["simulate"]["n_subjects"] == 2
    assert cfg["datasets"]["demo"]["path"] == "results/demo/dataset"
    assert cfg["models"][0]["untrained"] is False


def test_model_level_layers_not_overwritten_by_default():
    cfg = validate_config(minimal(layers={"every": 2}))
    assert "layers" not in cfg["models"][0]
    assert cfg["layers"] == {"every": 2}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"models": [{"model": "gpt2", "gguf_fil": "x"}]}, "models.0"),
        ({"models": [{"model": "gpt2", "untrained": "yes"}]}, "models.0.untrained"),
        ({"fitting": {"n_folds": 1}}, "fitting.n_folds"),
        ({"train_fractions": [0.5, 1.5]}, "train_fractions.1"),
        ({"temporal": {"method": "boxcar"}}, "temporal.method"),
        ({"datasets": {"real": {"format": "native"}}}, "datasets.real.path"),
    ],
)
def test_errors_name_the_key(change, key):
    with pytest.raises(ConfigError) as info:
        validate_config(minimal(**change))
    assert f"'{key}'" in str(info.value)


def test_duplicate_model_ids_rejected():
    models = [{"model": "org/a"}, {"model": "org/a"}]
    with pytest.raises(ConfigError, match="already used"):
        validate_config(minimal(models=models))


def test_resolve_layers():
    assert resolve_layers("all", 4) == [0, 1, 2, 3, 4]
    assert resolve_layers({"every": 3}, 7) == [0, 3, 6, 7]
    assert resolve_layers({"count": 3}, 6) == [0, 3, 6]
    assert resolve_layers({"count": 1}, 6) == [6]
    assert resolve_layers([0, -1, 2], 6) == [0, 2, 6]
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers([9], 6)


def test_fraction_label():
    assert fraction_label(0.25) == "0.25"
    assert fraction_label(1.0) == "1"
