"""Write one fit's per-voxel scores into the subject's space (lmbrain.brainmaps)."""

from lmbrain.brainmaps import write_fit_map
from lmbrain.datasets import open_dataset
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format, params.options)
geometry = dataset.geometry(snakemake.wildcards.subject)
written = write_fit_map(snakemake.input.fit, geometry, params.prefix)
expected = {str(p) for p in snakemake.output}
if set(written.values()) != expected:
    raise RuntimeError(
        f"the subject's geometry gave {sorted(written.values())}, the workflow expected "
        f"{sorted(expected)} (did the dataset's mask or surface change after the DAG was built?)"
    )
log.info("map written: %s", ", ".join(sorted(written.values())))
