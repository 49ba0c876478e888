"""Model metadata and the x-axes of the model-scaling fits (``aggregate.x_variables``).

A model entry may carry numbers about the model in ``metadata:`` (perplexity, a benchmark
score, training tokens, a checkpoint's step). They change no feature file and no fit: the
workflow strips them from the entries the extraction and fit rules see
(:func:`without_metadata`) and hands them to the aggregate rules only, which add them to the
score table as ``meta_<key>`` columns (:func:`add_metadata_columns`). Any key can then be the
x of a scaling fit like the params fit (``fit=<key>`` rows of ``scaling_fits.tsv``,
:func:`lmbrain.aggregate.scaling_fits`).

The transform of each x is explicit (:func:`parse_x_variables`): a plain name is fitted
against log10(x), the scaling-law convention of the params fit; ``{name: <key>, log: false}``
against x itself. Bonnasse-Gahot & Pallier (2024) plot brain correlation against the number
of parameters on a log axis but against perplexity and HellaSwag accuracy on linear axes
(their repository l-bg/llms_brain_lateralization, ``analyze_results.ipynb``: ``plot_xy(...,
logx=False)`` for perplexity and HellaSwag, ``set_xscale('log')`` for parameters) and the
Pythia checkpoints against the training step on a linear axis, step 0 included
(``analyze_results_training.ipynb``), which a log axis cannot show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lmbrain.errors import ConfigError

PARAMS = "params"
"""The x-variable of the parameter count (score column ``n_params``), always fitted."""

META_PREFIX = "meta_"
"""Prefix of the score-table columns that hold model metadata."""


def meta_column(name: str) -> str:
    """Score-table column of metadata key ``name`` (``meta_<name>``; ``n_params`` for params)."""
    return "n_params" if name == PARAMS else f"{META_PREFIX}{name}"


def without_metadata(entry: Mapping) -> dict:
    """A model entry without its ``metadata`` (what the extraction and fit rules see)."""
    return {k: v for k, v in entry.items() if k != "metadata"}


def model_metadata(entries: Sequence[Mapping], ids: Sequence[str]) -> dict[str, dict]:
    """``{model id: {key: value}}`` of the entries that carry metadata, ids and keys sorted
    (canonical rule params: reordering the models reruns nothing)."""
    out = {}
    for mid, entry in zip(ids, entries, strict=True):
        meta = entry.get("metadata") or {}
        if meta:
            out[mid] = {str(k): float(meta[k]) for k in sorted(meta)}
    return dict(sorted(out.items()))


def parse_x_variables(items: Sequence, metadata: Mapping[str, Mapping] | None = None) -> list:
    """Canonical ``aggregate.x_variables``: ``[{"name", "log"}]``, params first, then by name.

    Parameters
    ----------
    items : sequence of str or mapping
        The config list: ``"perplexity"`` (log10 x) or ``{"name": "perplexity", "log":
        False}`` (linear x). ``params`` is always included, on a log axis.
    metadata : mapping, optional
        ``{model id: {key: value}}`` (:func:`model_metadata`); when given, every named key
        must be carried by at least one model and, on a log axis, be positive in every model.

    Returns
    -------
    list of dict

    Raises
    ------
    ConfigError
        ``aggregate.x_variables`` naming a key twice, ``params`` on a linear axis, a key no
        model carries; ``models[<id>].metadata.<key>`` for a non-positive or non-finite value
        on a log axis.
    """
    parsed: dict[str, bool] = {PARAMS: True}
    for i, item in enumerate(items):
        name, log = (item, True) if isinstance(item, str) else (item["name"], bool(item["log"]))
        key = f"aggregate.x_variables.{i}"
        if name == PARAMS:
            if not log:
                raise ConfigError(key, "params is fitted on a log10 axis (log: false not allowed)")
            continue
        if name in parsed:
            raise ConfigError(key, f"'{name}' is listed twice")
        parsed[name] = log
    out = [{"name": PARAMS, "log": True}]
    out += [{"name": n, "log": parsed[n]} for n in sorted(parsed) if n != PARAMS]
    if metadata is not None:
        _check_against_metadata(out, metadata)
    return out


def _check_against_metadata(xvars: list, metadata: Mapping[str, Mapping]) -> None:
    for x in xvars:
        if x["name"] == PARAMS:
            continue
        carriers = {mid: meta[x["name"]] for mid, meta in metadata.items() if x["name"] in meta}
        if not carriers:
            raise ConfigError(
                "aggregate.x_variables",
                f"'{x['name']}' is the `metadata` key of no model (add `metadata: "
                f"{{{x['name']}: <number>}}` to the model entries)",
            )
        for mid, value in sorted(carriers.items()):
            if not np.isfinite(value) or (x["log"] and value <= 0):
                need = "a positive number for a log10 axis" if x["log"] else "a finite number"
                hint = f" (or list {{name: {x['name']}, log: false}})" if x["log"] else ""
                raise ConfigError(
                    f"models[{mid}].metadata.{x['name']}", f"is {value!r}: needs {need}{hint}"
                )


def add_metadata_columns(scores: pd.DataFrame, metadata: Mapping[str, Mapping]) -> pd.DataFrame:
    """The score table with one ``meta_<key>`` column per metadata key (NaN where absent).

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (:func:`lmbrain.aggregate.read_score_rows`), with ``model``.
    metadata : mapping
        ``{model id: {key: value}}``.

    Returns
    -------
    pandas.DataFrame
        A copy with the columns appended in sorted key order (none when no model has
        metadata).
    """
    out = scores.copy()
    keys = sorted({k for meta in metadata.values() for k in meta})
    for key in keys:
        values = {mid: meta[key] for mid, meta in metadata.items() if key in meta}
        out[meta_column(key)] = out["model"].map(values).astype("float64")
    return out


def x_values(values, log: bool) -> np.ndarray:
    """The fitted x: log10 of ``values`` on a log axis, the values themselves otherwise."""
    values = np.asarray(values, dtype=np.float64)
    if not log:
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
