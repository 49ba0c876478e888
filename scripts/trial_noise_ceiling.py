"""Per-voxel NSD noise ceiling (ncsnr, NC, cc_max) of one subject of a trial dataset."""

import numpy as np

from lmbrain.datasets import open_dataset
from lmbrain.io import save_npz
from lmbrain.scripting import start
from lmbrain.trial_encoding import load_subject_responses, subject_ceiling

log = start(snakemake)
dataset = open_dataset(snakemake.params.root, snakemake.params.format)
responses = load_subject_responses(snakemake.input.responses)
ceiling = subject_ceiling(dataset, snakemake.wildcards.subject, responses)
log.info("median NC = %.1f%%", float(np.nanmedian(ceiling["nc"])))
save_npz(snakemake.output[0], **{k: v.astype(np.float32) for k, v in ceiling.items()})
