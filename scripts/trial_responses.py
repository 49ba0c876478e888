"""One subject's betas, z-scored per session, with trial labels (read once, used by every fit)."""

from lmbrain.datasets import open_dataset
from lmbrain.io import save_npz
from lmbrain.scripting import start
from lmbrain.trial_encoding import subject_responses

log = start(snakemake)
dataset = open_dataset(snakemake.params.root, snakemake.params.format)
data = subject_responses(dataset, snakemake.wildcards.subject)
log.info("%s: %d trials x %d voxels", snakemake.wildcards.subject, *data["responses"].shape)
save_npz(snakemake.output[0], **data)
