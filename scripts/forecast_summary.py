"""Collect the forecast rows of every (subject, model) and plot the F_d curves (all, per ROI)."""

import pandas as pd

from lmbrain.forecast import plot_forecast, plot_forecast_roi
from lmbrain.io import atomic_path
from lmbrain.scripting import start

log = start(snakemake)
table = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input], ignore_index=True)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
plot_forecast(table, snakemake.output.plot)
plot_forecast_roi(table, snakemake.output.roi_plot)
log.info("%d forecast rows", len(table))
