"""lmbrain: language-model to fMRI encoding models, and how they scale.

The science lives here, one module per concern:

- :mod:`lmbrain.config` -- workflow configuration, validated against a JSON schema.
- :mod:`lmbrain.datasets` -- dataset adapters (the native layout, and public datasets).
- :mod:`lmbrain.stimulus` -- word timings, TR times.
- :mod:`lmbrain.models` -- resolving and loading language models (HF hub, local, GGUF).
- :mod:`lmbrain.features` -- per-word hidden states with a causal context.
- :mod:`lmbrain.temporal` -- Lanczos downsampling, trimming, z-scoring, FIR delays, HRF.
- :mod:`lmbrain.fitting` -- voxelwise ridge regression with story-grouped CV.
- :mod:`lmbrain.scoring` -- per-voxel correlation and R^2 on held-out stories.
- :mod:`lmbrain.significance` -- per-voxel p-values of the test r (autocorrelation-preserving
  surrogates) and Benjamini-Hochberg FDR.
- :mod:`lmbrain.ceilings` -- noise ceilings (Schoppe et al. 2016 cc_max).
- :mod:`lmbrain.aggregate` -- summary tables and log-linear scaling fits.
- :mod:`lmbrain.inference` -- hierarchical (subjects, then voxels) bootstrap and one-sample
  tests across subjects.
- :mod:`lmbrain.plotting` -- scaling, layer and asymmetry figures.
- :mod:`lmbrain.demo` -- the simulated demo dataset with a planted ground truth.

The main entry points can be imported from the package itself, e.g. in a notebook::

    from lmbrain import open_dataset, load_model, extract_story_features, fit_encoding_model

They are loaded on first use (``import lmbrain`` alone imports neither torch nor
transformers). Functions that take a config section accept a partial one and fill the
schema's defaults (:func:`lmbrain.config.section`).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access, PEP 562)
_API = {
    "validate_config": "lmbrain.config",
    "load_config_file": "lmbrain.config",
    "section": "lmbrain.config",
    "open_dataset": "lmbrain.datasets",
    "load_model": "lmbrain.models",
    "model_id": "lmbrain.models",
    "extract_story_features": "lmbrain.features",
    "read_features": "lmbrain.features",
    "build_design": "lmbrain.temporal",
    "story_design": "lmbrain.encoding",
    "fit_encoding_model": "lmbrain.encoding",
    "fit_ridge_cv": "lmbrain.fitting",
    "read_score_rows": "lmbrain.aggregate",
    "model_summary": "lmbrain.aggregate",
    "scaling_fits": "lmbrain.aggregate",
    "plot_scaling_models": "lmbrain.plotting",
    "plot_scaling_data": "lmbrain.plotting",
    "plot_layers": "lmbrain.plotting",
    "plot_asymmetry": "lmbrain.plotting",
    "plot_brain_map": "lmbrain.mapplots",
    "software_versions": "lmbrain.provenance",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'lmbrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
