"""Write the configuration a dataset's results come from (shown in the Snakemake report)."""

from lmbrain.io import save_yaml
from lmbrain.provenance import software_versions
from lmbrain.scripting import start

log = start(snakemake)
save_yaml(snakemake.output[0], {**snakemake.params.config, "provenance": software_versions()})
log.info("configuration recorded")
