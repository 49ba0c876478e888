"""Figure of the best model's map for one subject (lmbrain.mapplots)."""

import pandas as pd

from lmbrain.brainmaps import map_paths
from lmbrain.config import fraction_label
from lmbrain.mapplots import best_fit, plot_brain_map
from lmbrain.scripting import start

log = start(snakemake)
params, subject = snakemake.params, snakemake.wildcards.subject
scores = pd.read_csv(snakemake.input.scores, sep="\t")
row = best_fit(scores, subject)
name = f"layer-{int(row['layer'])}_frac-{fraction_label(row['train_fraction'])}"
paths = map_paths(f"{params.maps_dir}/{row['model']}/{name}", params.kind)
title = f"{subject}: {row['model']} layer {int(row['layer'])} (mean r {row['mean_r']:.3f})"
plot_brain_map(params.kind, paths, title, snakemake.output[0])
log.info("map figure of %s", paths)
