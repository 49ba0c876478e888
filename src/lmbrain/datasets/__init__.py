"""Dataset adapters. Each turns one on-disk layout into the same reading interface.

Every adapter returns an object with ``name``, ``tr``, ``trim_start``, ``trim_end``,
``stories``, ``train_stories``, ``test_stories``, ``subjects`` and the methods ``words(story)``,
``responses(subject, story)``, ``test_target(subject, story)``, ``repeats(subject, story)``,
``voxels(subject)`` and ``validate(subjects)``. Trial-based adapters (``kind == "trials"``:
:mod:`lmbrain.datasets.trials`, :mod:`lmbrain.datasets.nsd`) instead offer ``stimuli``,
``captions``, ``trials(subject)``, ``betas(subject)``, ``voxels(subject)`` and
``validate(subjects)``.
"""

from __future__ import annotations

from pathlib import Path

from lmbrain.datasets.native import NativeDataset
from lmbrain.datasets.nsd import NSDDataset
from lmbrain.datasets.trials import TrialDataset

ADAPTERS = {"native": NativeDataset, "trials": TrialDataset, "nsd": NSDDataset}


def open_dataset(path: str | Path, format: str = "native"):  # noqa: A002 - config key name
    """Open the dataset at ``path`` with the adapter named by ``format``."""
    try:
        adapter = ADAPTERS[format]
    except KeyError:
        raise ValueError(f"unknown dataset format {format!r}; known: {sorted(ADAPTERS)}") from None
    return adapter(path)


def description_file(path: str | Path, format: str = "native") -> Path:  # noqa: A002
    """The file that describes a dataset on disk (``dataset.yaml``; NSD: its design file)."""
    adapter = ADAPTERS.get(format)
    return Path(path) / getattr(adapter, "DESCRIPTION", "dataset.yaml")


__all__ = [
    "ADAPTERS",
    "NSDDataset",
    "NativeDataset",
    "TrialDataset",
    "description_file",
    "open_dataset",
]
