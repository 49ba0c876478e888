"""Summarise every banded fit of a dataset into banded.tsv and plot which band wins where."""

from lmbrain.aggregate import banded_summary
from lmbrain.io import atomic_path, load_subject_npzs
from lmbrain.plotting import plot_banded
from lmbrain.scripting import start

log = start(snakemake)
tables = load_subject_npzs(snakemake.input)
summary = banded_summary(tables)
with atomic_path(snakemake.output.table) as tmp:
    summary.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
plot_banded(summary, snakemake.output.plot)
log.info("%d banded fits summarised", len(tables))
