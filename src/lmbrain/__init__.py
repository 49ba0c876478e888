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
"""

__version__ = "0.1.0"
