"""Mean r per ROI of each model's best layer, and the scaling slopes per ROI (lmbrain.mapplots)."""

import pandas as pd

from lmbrain.mapplots import plot_roi_bars, plot_roi_slopes
from lmbrain.scripting import start

log = start(snakemake)
rois = pd.read_csv(snakemake.input.rois, sep="\t")
scores = pd.read_csv(snakemake.input.scores, sep="\t")
plot_roi_bars(rois, scores, snakemake.output.roi)
plot_roi_slopes(pd.read_csv(snakemake.input.fits, sep="\t"), snakemake.output.roi_scaling)
log.info("ROI figures written")
