"""Summarise every stacked fit of a dataset into stacking.tsv and plot joint r and weights."""

from pathlib import Path

import numpy as np

from lmbrain.io import atomic_path
from lmbrain.plotting import plot_stacking
from lmbrain.scripting import start
from lmbrain.stacking import stacking_summary

log = start(snakemake)
tables = {}
for path in snakemake.input:
    path = Path(path)
    with np.load(path) as data:
        tables[(path.parent.name, path.stem)] = {key: data[key] for key in data.files}
summary = stacking_summary(tables)
with atomic_path(snakemake.output.table) as tmp:
    summary.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
plot_stacking(summary, snakemake.output.plot)
log.info("%d stacked fits summarised", len(tables))
