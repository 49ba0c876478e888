"""Per-voxel noise ceiling: cc_max from test-story repeats, or the inter-subject ceiling."""

import numpy as np

from lmbrain.ceilings import ceiling_stories, subject_ceiling
from lmbrain.datasets import open_dataset
from lmbrain.io import save_npz
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format, params.options)
subject = snakemake.wildcards.subject
ceiling, source = subject_ceiling(
    dataset,
    subject,
    ceiling_stories(dataset, subject, params.cv),
    method=params.ceiling["method"],
    n_splits=params.ceiling["n_splits"],
    seed=params.seed,
    log=log,
)
log.info("cc_max (%s): %d voxels with a finite ceiling", source, int(np.isfinite(ceiling).sum()))
save_npz(snakemake.output[0], cc_max=ceiling.astype(np.float32))
