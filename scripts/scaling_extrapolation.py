"""Per-family size fits and per-model data fits of mean_r_norm, extrapolated to a target."""

import pandas as pd

from lmbrain.extrapolation import scaling_extrapolations
from lmbrain.io import atomic_path
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
scores = pd.read_csv(snakemake.input.scores, sep="\t")
table = scaling_extrapolations(
    scores, n_boot=params.n_bootstrap, seed=params.seed, target=params.target
)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d extrapolations", len(table))
