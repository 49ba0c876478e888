"""Per-voxel noise ceiling (Schoppe et al. 2016 cc_max) from test-story repeats."""

import numpy as np

from lmbrain.ceilings import cc_max
from lmbrain.datasets import open_dataset
from lmbrain.io import save_npz
from lmbrain.scripting import start
from lmbrain.temporal import trim

log = start(snakemake)
dataset = open_dataset(snakemake.params.root, snakemake.params.format)
subject = snakemake.wildcards.subject
repeats = []
for story in dataset.test_stories:
    reps = dataset.repeats(subject, story)
    if reps is None:
        log.warning("%s has no repeats of %s: no noise ceiling", subject, story)
        repeats = []
        break
    repeats.append(np.stack([trim(r, dataset.trim_start, dataset.trim_end) for r in reps]))
if repeats and len({r.shape[0] for r in repeats}) == 1:
    ceiling = cc_max(np.concatenate(repeats, axis=1))
else:
    n_vox = len(dataset.voxels(subject)["hemisphere"])
    ceiling = np.full(n_vox, np.nan)
log.info("cc_max: %d voxels with a finite ceiling", int(np.isfinite(ceiling).sum()))
save_npz(snakemake.output[0], cc_max=ceiling.astype(np.float32))
