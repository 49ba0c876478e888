"""Write the configuration a dataset's results come from (shown in the Snakemake report)."""

from lmbrain.io import save_yaml
from lmbrain.scripting import start

log = start(snakemake)
save_yaml(snakemake.output[0], dict(snakemake.params.config))
log.info("configuration recorded")
