"""Dataset adapters. Each turns one on-disk layout into the same reading interface.

Every adapter returns an object with ``name``, ``tr``, ``trim_start``, ``trim_end``,
``stories``, ``train_stories``, ``test_stories``, ``subjects`` and the methods ``words(story)``,
``responses(subject, story)``, ``test_target(subject, story)``, ``repeats(subject, story)``,
``voxels(subject)``, ``validate(subjects)`` and ``stimulus_path(story)``. The public-dataset
adapters (``lebel``, ``lpp``, ``narratives``) add ``geometry(subject)``,
``subject_stories(subject)``, ``index_path`` and, where subjects can be pooled,
``group_responses(story, subjects)`` (see :mod:`lmbrain.datasets.base`).

An adapter class declares its config options in ``OPTIONS`` (key -> default); the keys of a
dataset's config block that an adapter declares are passed to it (:func:`adapter_options`).
Trial-based adapters (``kind == "trials"``:
:mod:`lmbrain.datasets.trials`, :mod:`lmbrain.datasets.nsd`) instead offer ``stimuli``,
``captions``, ``trials(subject)``, ``betas(subject)``, ``voxels(subject)`` and
``validate(subjects)``.
"""

from __future__ import annotations

from pathlib import Path

from lmbrain.datasets.lebel import LebelDataset
from lmbrain.datasets.lpp import LppDataset
from lmbrain.datasets.narratives import NarrativesDataset
from lmbrain.datasets.native import NativeDataset
from lmbrain.datasets.nsd import NSDDataset
from lmbrain.datasets.trials import TrialDataset

ADAPTERS = {
    "native": NativeDataset,
    "lebel": LebelDataset,
    "lpp": LppDataset,
    "narratives": NarrativesDataset,
    "trials": TrialDataset,
    "nsd": NSDDataset,
}


def adapter_options(spec: dict) -> dict:
    """The options of a dataset's config block that its adapter takes (``OPTIONS`` keys)."""
    adapter = ADAPTERS.get(spec.get("format", "native"))
    declared = getattr(adapter, "OPTIONS", {})
    return {k: v for k, v in spec.items() if k in declared}


def open_dataset(path: str | Path, format: str = "native", options: dict | None = None):  # noqa: A002 - config key name
    """Open the dataset at ``path`` with the adapter named by ``format``.

    Parameters
    ----------
    path : str or Path
        The dataset's root folder.
    format : str
        A key of :data:`ADAPTERS`.
    options : dict, optional
        Adapter options (the dataset's config block, filtered by :func:`adapter_options`).
    """
    try:
        adapter = ADAPTERS[format]
    except KeyError:
        raise ValueError(f"unknown dataset format {format!r}; known: {sorted(ADAPTERS)}") from None
    if getattr(adapter, "OPTIONS", None) is None:
        return adapter(path)
    return adapter(path, **adapter_options({"format": format, **(options or {})}))


def index_path(dataset) -> Path:
    """The file whose change means the dataset changed (an input of the reading rules).

    An adapter's ``index_path`` attribute, else its class's ``DESCRIPTION`` file (NSD: the
    design file) or ``dataset.yaml`` in the root.
    """
    default = Path(dataset.root) / getattr(type(dataset), "DESCRIPTION", "dataset.yaml")
    return Path(getattr(dataset, "index_path", default))


__all__ = [
    "ADAPTERS",
    "LebelDataset",
    "LppDataset",
    "NSDDataset",
    "NarrativesDataset",
    "NativeDataset",
    "TrialDataset",
    "adapter_options",
    "index_path",
    "open_dataset",
]
