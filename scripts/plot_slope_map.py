"""Figure of a subject's voxelwise scaling slope map (lmbrain.mapplots)."""

from lmbrain.brainmaps import map_paths
from lmbrain.mapplots import plot_brain_map
from lmbrain.scripting import start

log = start(snakemake)
params, subject = snakemake.params, snakemake.wildcards.subject
paths = map_paths(params.prefix, params.kind)
title = f"{subject}: r vs log10(n_params) per voxel"
plot_brain_map(params.kind, paths, title, snakemake.output[0], measure="slope")
log.info("slope map figure of %s", paths)
