"""Workflow configuration: JSON-schema validation with defaults, and the DAG's expansions.

The schema lives in ``lmbrain/schemas/config.schema.yaml``. :func:`load_config` validates a
config mapping, fills in defaults and raises :class:`~lmbrain.errors.ConfigError` naming the
offending key as a dotted path (``models.2.gguf_file``), so a typo is caught before any job runs.
"""

from __future__ import annotations

import copy
import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml

from lmbrain.alphas import alpha_grid
from lmbrain.baselines import expand_model_entries
from lmbrain.errors import ConfigError

SCHEMA_FILE = "config.schema.yaml"
#: OpenNeuro accession fetched by default per dataset format (`source: openneuro`).
FETCH_ACCESSIONS = {"lebel": "ds003020", "lpp": "ds003643", "narratives": "ds002345"}
#: A name that becomes one component of an output path (dataset, subject, model id; banded
#: names also allow "+", in the schema): never ``.`` or ``..``, no separator, not hidden.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
NAME_RULE = (
    "must be one plain path component: letters, digits, '_', '.', '-' (and '+' in banded "
    "names), not starting with '.' or '-' (so never '.' or '..')"
)


def check_name(key: str, name, source: str | Path | None = None) -> str:
    """Return ``name`` if it is one plain path component (see :data:`NAME_RULE`).

    Raises
    ------
    ConfigError
        Naming ``key``, when ``name`` could leave its folder (``..``), be hidden or empty.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(key, f"{name!r} {NAME_RULE}", source)
    return name


#: libyaml's parser when PyYAML was built with it (about 10x faster than the pure-Python one).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema() -> dict:
    """Return the configuration JSON schema as a mapping (a fresh copy: callers may edit it)."""
    return copy.deepcopy(_parsed_schema())


@functools.cache
def _parsed_schema() -> dict:
    """The schema file, parsed once per process.

    Every :func:`section` call needs it, and a fit job calls it once per story: parsing the
    1,070-line YAML each time cost a demo fit job 2.4 of its 6.5 CPU seconds (profiled).
    """
    text = resources.files("lmbrain.schemas").joinpath(SCHEMA_FILE).read_text()
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 (a safe loader, C or Python)


def section(name: str, values: dict | None = None) -> dict:
    """One config section (``temporal``, ``fitting``, ``features``...) with its defaults.

    For the Python API (a notebook): the functions that take a section accept a partial one,
    e.g. ``fit_encoding_model(..., fitting={"n_folds": 3})``, and fill the rest here.

    Parameters
    ----------
    name : str
        A top-level key of the schema that holds an object.
    values : dict, optional
        The keys given; None or ``{}`` for all defaults.

    Returns
    -------
    dict
        A validated copy with every default filled in.

    Raises
    ------
    ConfigError
        Unknown section, unknown key or bad value, named as ``<name>.<key>``.
    """
    schema = _parsed_schema()  # read only here: defaults are deep-copied by _fill_defaults
    sub = schema["properties"].get(name)
    if sub is None or sub.get("type") != "object":
        raise ConfigError(name, "not a configuration section (see config/README.md)")
    cfg = copy.deepcopy(dict(values or {}))
    validator = jsonschema.Draft202012Validator({**sub, "$defs": schema.get("$defs", {})})
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        best = _best_error(errors[0])
        key = ".".join([name, *map(str, best.absolute_path)])
        raise ConfigError(key, best.message)
    _fill_defaults(cfg, sub)
    return cfg


def _fill_defaults(instance: Any, schema: dict) -> None:
    """Fill literal ``default`` values of ``properties`` into ``instance`` (in place), recursively."""
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
            if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
                for item in instance[key] if isinstance(instance[key], list) else []:
                    _fill_defaults(item, sub["items"])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _best_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Pick the most specific error of a ``oneOf`` failure for the message."""
    if error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return _best_error(deepest)
    return error


def validate_config(config: dict, source: str | Path | None = None) -> dict:
    """Validate ``config`` against the schema and return a copy with defaults filled in.

    Parameters
    ----------
    config : dict
        The configuration as loaded from YAML (Snakemake's ``config``).
    source : str or Path, optional
        The config file, for error messages.

    Returns
    -------
    dict
        Validated configuration with defaults.

    Raises
    ------
    ConfigError
        Naming the first wrong key as a dotted path and the problem.
    """
    schema = _parsed_schema()  # read only
    cfg = copy.deepcopy(dict(config))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        best = _best_error(err)
        key = _dotted(best.absolute_path)
        problem = best.message
        if best.validator == "pattern" and "A-Za-z0-9_" in str(best.validator_value):
            problem = f"{best.instance!r} {NAME_RULE}"
        if best is not err and err.validator == "oneOf":
            problem = f"{problem} (expected one of the forms described in the schema: " + (
                f"{err.schema.get('description', '').strip()})"
            )
        raise ConfigError(key, problem, source)
    _fill_defaults(cfg, schema)
    cfg.setdefault("layers", "all")
    cfg["models"] = expand_model_entries(cfg["models"])
    _check_semantics(cfg, source)
    return cfg


def _check_semantics(cfg: dict, source) -> None:
    """Checks the schema cannot express: unique model ids, story-level constraints."""
    from lmbrain.models import model_id

    seen: dict[str, int] = {}
    for i, entry in enumerate(cfg["models"]):
        mid = model_id(entry)
        if mid in seen:
            raise ConfigError(
                f"models.{i}",
                f"model id '{mid}' is already used by models.{seen[mid]}; give one a distinct `name`",
                source,
            )
        seen[mid] = i
        check_name(f"models.{i}.name", mid, source)
    for name, spec in cfg["datasets"].items():
        if "simulate" in spec:
            spec["path"] = str(Path(cfg["results"]) / name / "dataset")
        elif "path" not in spec:
            raise ConfigError(
                f"datasets.{name}.path", "required (the dataset's root folder)", source
            )
        if "source" in spec and spec.get("format") not in FETCH_ACCESSIONS:
            raise ConfigError(
                f"datasets.{name}.source",
                f"fetching needs format {', '.join(sorted(FETCH_ACCESSIONS))}",
                source,
            )
        if "source" in spec:
            spec.setdefault("accession", FETCH_ACCESSIONS[spec["format"]])
    _check_banded(cfg, seen, source)
    _check_stacking(cfg, seen, source)
    _check_alphas(cfg, source)
    fractions = cfg["train_fractions"]
    if len(set(fractions)) != len(fractions):
        raise ConfigError("train_fractions", "fractions must be distinct", source)


def _check_alphas(cfg: dict, source) -> None:
    """The ridge penalty grid is non-empty, positive and finite (``{logspace: [0, 400, 3]}``
    overflows to inf, ``[0, 4, 0]`` is empty, ``[0, 4, 2.5]`` has no whole count): checked
    here, when the workflow starts, rather than inside the first fit after extraction."""
    try:
        with np.errstate(over="ignore"):
            alpha_grid(cfg["fitting"]["alphas"], key="fitting.alphas")
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.problem, source) from None


def _check_banded(cfg: dict, model_ids: dict, source) -> None:
    """Banded models name existing models, distinct bands, and distinct ids."""
    _check_joint_specs(cfg, "banded", "bands", "band", model_ids, source)


def _check_stacking(cfg: dict, model_ids: dict, source) -> None:
    """Stacked models name existing models, distinct spaces (not `stacked`), distinct ids."""
    for i, spec in enumerate(cfg.get("stacking", [])):
        if not NAME_PATTERN.match(str(spec["name"]).replace("+", "_")):
            raise ConfigError(f"stacking.{i}.name", f"{spec['name']!r} {NAME_RULE}", source)
    _check_joint_specs(
        cfg, "stacking", "spaces", "space", model_ids, source, reserved="stacked", plain_labels=True
    )


def _check_joint_specs(
    cfg: dict,
    key: str,
    members: str,
    noun: str,
    model_ids: dict,
    source,
    reserved: str | None = None,
    plain_labels: bool = False,
) -> None:
    """Entries of ``cfg[key]`` (banded or stacked models) that join several feature spaces.

    Each entry's ``name`` is used once; each of its ``members`` names a model id of `models`;
    their labels (``name``, default the model id) are distinct, not ``reserved`` (a label the
    outputs use for the joint model) and, with ``plain_labels``, plain names.
    """
    names = set()
    for i, spec in enumerate(cfg.get(key, [])):
        if spec["name"] in names:
            raise ConfigError(f"{key}.{i}.name", f"'{spec['name']}' is used twice", source)
        names.add(spec["name"])
        labels = []
        for j, member in enumerate(spec[members]):
            if member["model"] not in model_ids:
                raise ConfigError(
                    f"{key}.{i}.{members}.{j}.model",
                    f"'{member['model']}' is not a model id of `models` ({sorted(model_ids)})",
                    source,
                )
            label = member.get("name", member["model"])
            if plain_labels:
                check_name(f"{key}.{i}.{members}.{j}.name", label, source)
            if label == reserved:
                raise ConfigError(
                    f"{key}.{i}.{members}.{j}",
                    f"the label '{reserved}' is reserved for the joint model; give it a `name`",
                    source,
                )
            labels.append(label)
        if len(set(labels)) != len(labels):
            raise ConfigError(
                f"{key}.{i}.{members}",
                f"{noun} labels {labels} repeat; give each a `name`",
                source,
            )


def canonical(obj: Any) -> Any:
    """``obj`` with every mapping's keys in sorted order, recursively (tuples become lists).

    Snakemake decides whether a job's ``params`` changed by comparing their ``repr``, and a
    dict's ``repr`` follows insertion order: the YAML's key order. Rules take their params
    from the canonical config, so reordering keys (values unchanged) reruns nothing, while any
    change of a value still does. Lists keep their order (it can matter: models, bands).
    """
    if isinstance(obj, dict):
        return {str(key): canonical(obj[key]) for key in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonical(item) for item in obj]
    return obj


def load_config_file(path: str | Path) -> dict:
    """Read a YAML config file and validate it (see :func:`validate_config`)."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 (safe loader)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"not valid YAML: {exc}", path) from exc
    return validate_config(raw or {}, source=path)


def resolve_layers(spec, n_layers: int) -> list[int]:
    """Turn a layer specification into sorted hidden-state indices.

    Parameters
    ----------
    spec : "all", list of int, {"every": k} or {"count": n}
        ``all`` gives 0..n_layers (0 = embeddings). ``{"every": k}`` gives 0, k, 2k, ... and
        always the last layer. ``{"count": n}`` gives n layers evenly spaced in relative depth
        (rounded), always including 0 and the last layer when n >= 2.
    n_layers : int
        Number of transformer blocks; valid indices are 0..n_layers.

    Returns
    -------
    list of int
    """
    top = n_layers
    if spec == "all":
        return list(range(top + 1))
    if isinstance(spec, dict) and "every" in spec:
        layers = set(range(0, top + 1, int(spec["every"])))
        layers.add(top)
        return sorted(layers)
    if isinstance(spec, dict) and "count" in spec:
        n = int(spec["count"])
        if n == 1:
            return [top]
        return sorted({int(round(x)) for x in np.linspace(0, top, n)})
    if isinstance(spec, list):
        out = set()
        for layer in spec:
            idx = layer + top + 1 if layer < 0 else layer
            if not 0 <= idx <= top:
                raise ValueError(
                    f"layer {layer} is out of range for a model with {n_layers} layers"
                )
            out.add(idx)
        return sorted(out)
    raise ValueError(f"unknown layer specification {spec!r}")


def fraction_label(fraction: float) -> str:
    """Filesystem label of a train fraction (``0.25`` -> ``"0.25"``, ``1`` -> ``"1"``)."""
    return f"{float(fraction):g}"
