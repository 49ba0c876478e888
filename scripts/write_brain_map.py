"""Write the maps of every fit of one (subject, model) into its folder (lmbrain.brainmaps).

Each fit ``fits/<subject>/<model>/<name>.npz`` becomes ``maps/<subject>/<model>/<name>.*`` in
the form the subject's geometry calls for (``params.kind``, decided when the DAG was built).
With ``aggregate.voxel_best_layer``, each train fraction with two or more layers also gets
the per-voxel best-layer map ``voxel-best-layer_frac-<f>.*`` and its summary ``.tsv``
(lmbrain.voxel_layers).
"""

from pathlib import Path

from lmbrain.brainmaps import planned_geometry, write_fit_map
from lmbrain.datasets import open_dataset
from lmbrain.scripting import start
from lmbrain.voxel_layers import write_voxel_best_layer_maps

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format, params.options)
geometry = planned_geometry(dataset, snakemake.wildcards.subject, params.kind)
folder = Path(snakemake.output[0])
folder.mkdir(parents=True, exist_ok=True)
for fit in snakemake.input.fits:
    write_fit_map(fit, geometry, folder / Path(fit).name.removesuffix(".npz"))
log.info("%d %s maps written to %s", len(snakemake.input.fits), params.kind, folder)
if params.voxel_best_layer:
    for row in write_voxel_best_layer_maps(snakemake.input.fits, geometry, folder):
        log.info("per-voxel best layer: %s", row)
