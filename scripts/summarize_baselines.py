"""Collect the baseline fits of a trial dataset into one table (same columns as scores.tsv)."""

from lmbrain.aggregate import read_score_rows
from lmbrain.io import atomic_path
from lmbrain.scripting import start

log = start(snakemake)
table = read_score_rows(snakemake.input)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d baseline fits", len(table))
