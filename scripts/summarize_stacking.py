"""Summarise every stacked fit of a dataset into stacking.tsv and plot joint r and weights."""

from lmbrain.io import atomic_path, load_subject_npzs
from lmbrain.plotting import plot_stacking
from lmbrain.scripting import start
from lmbrain.stacking import stacking_summary

log = start(snakemake)
tables = load_subject_npzs(snakemake.input)
summary = stacking_summary(tables)
with atomic_path(snakemake.output.table) as tmp:
    summary.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
plot_stacking(summary, snakemake.output.plot)
log.info("%d stacked fits summarised", len(tables))
