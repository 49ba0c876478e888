"""Generate the simulated trial dataset (see lmbrain.trial_demo)."""

from lmbrain.scripting import start
from lmbrain.trial_demo import make_trial_dataset

log = start(snakemake)
settings = dict(snakemake.params.settings)
log.info("simulating trial dataset with %s", settings)
make_trial_dataset(
    snakemake.output[0],
    seed=settings["seed"],
    n_subjects=settings["n_subjects"],
    voxels_per_hemisphere=settings["voxels_per_hemisphere"],
    n_repeats=settings["n_repeats"],
)
