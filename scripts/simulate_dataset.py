"""Generate the simulated demo dataset (see docs/demo_simulation.md)."""

from lmbrain.demo import make_demo_dataset
from lmbrain.scripting import start

log = start(snakemake)
settings = dict(snakemake.params.settings)
log.info("simulating dataset with %s", settings)
make_demo_dataset(snakemake.output[0], **settings)
