"""Bar chart of mean r per ROI for each model's best layer (lmbrain.mapplots)."""

import pandas as pd

from lmbrain.mapplots import plot_roi_bars
from lmbrain.scripting import start

log = start(snakemake)
rois = pd.read_csv(snakemake.input.rois, sep="\t")
scores = pd.read_csv(snakemake.input.scores, sep="\t")
plot_roi_bars(rois, scores, snakemake.output[0])
log.info("ROI figure written")
