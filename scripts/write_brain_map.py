"""Write the maps of every fit of one (subject, model) into its folder (lmbrain.brainmaps).

Each fit ``fits/<subject>/<model>/<name>.npz`` becomes ``maps/<subject>/<model>/<name>.*`` in
the form the subject's geometry calls for (``params.kind``, decided when the DAG was built).
"""

from pathlib import Path

from lmbrain.brainmaps import map_kind, write_fit_map
from lmbrain.datasets import open_dataset
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format, params.options)
geometry = dataset.geometry(snakemake.wildcards.subject)
if map_kind(geometry) != params.kind:
    raise RuntimeError(
        f"the subject's geometry gives {map_kind(geometry)} maps, the workflow expected "
        f"{params.kind} (did the dataset's mask or surface change after the DAG was built?)"
    )
folder = Path(snakemake.output[0])
folder.mkdir(parents=True, exist_ok=True)
for fit in snakemake.input.fits:
    write_fit_map(fit, geometry, folder / Path(fit).name.removesuffix(".npz"))
log.info("%d %s maps written to %s", len(snakemake.input.fits), params.kind, folder)
