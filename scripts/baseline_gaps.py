"""Trained-minus-untrained brain score per trained model, with a voxel-bootstrap CI."""

import pandas as pd

from lmbrain.baselines import untrained_gaps
from lmbrain.io import atomic_path
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
scores = pd.read_csv(snakemake.input.scores, sep="\t")
gaps = untrained_gaps(scores, dict(params.twins), n_boot=params.n_bootstrap, seed=params.seed)
with atomic_path(snakemake.output[0]) as tmp:
    gaps.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d gaps", len(gaps))
