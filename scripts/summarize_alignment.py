"""Collect the subjects' alignment curves, plot them and warn when the best lag is not 0."""

import json
import sys

import pandas as pd

from lmbrain.alignment import best_lags, check_alignment
from lmbrain.io import atomic_path
from lmbrain.plotting import plot_alignment
from lmbrain.scripting import start

log = start(snakemake)
tr = float(json.loads(open(snakemake.input.manifest).read())["tr"])
table = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.tables], ignore_index=True)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
plot_alignment(table, best_lags(table), snakemake.output.plot, tr=tr)
for message in check_alignment(table, tr, snakemake.params.tolerance_s):
    print(f"lmbrain warning: {message}", file=sys.__stderr__)  # also on the terminal
log.info("%d alignment rows of %d subjects", len(table), table["subject"].nunique())
