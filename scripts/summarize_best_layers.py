"""Best layer of every (subject, model, train fraction) and the per-voxel best depth."""

import pandas as pd

from lmbrain.io import atomic_path
from lmbrain.layer_table import best_layer_table, read_voxel_best_layer_rows
from lmbrain.scripting import start

log = start(snakemake)
scores = pd.read_csv(snakemake.input.scores, sep="\t")
voxels = read_voxel_best_layer_rows(snakemake.input.maps)
table = best_layer_table(scores, voxels)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d best-layer rows (%d per-voxel summaries)", len(table), len(voxels))
