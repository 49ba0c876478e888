"""Scaling-law, layer-depth and hemisphere-asymmetry figures of one dataset."""

import pandas as pd

from lmbrain import plotting
from lmbrain.scripting import start

log = start(snakemake)
scores = pd.read_csv(snakemake.input.scores, sep="\t")
fits = pd.read_csv(snakemake.input.fits, sep="\t")
out = snakemake.output
plotting.plot_scaling_models(scores, fits, out.scaling_models)
plotting.plot_scaling_data(scores, fits, out.scaling_data)
plotting.plot_layers(scores, out.layers)
plotting.plot_asymmetry(scores, fits, out.asymmetry)
plotting.plot_asymmetry_depth(scores, out.asymmetry_depth)
log.info("figures written")
