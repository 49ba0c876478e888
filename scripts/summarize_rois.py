"""Mean r and r / cc_max per (fit, ROI, hemisphere) into scores_roi.tsv (lmbrain.roi)."""

import pandas as pd

from lmbrain.datasets import open_dataset
from lmbrain.io import atomic_path
from lmbrain.roi import roi_table, subject_rois
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
# the score table lists every fit (its `fit_path`); one input instead of one per fit keeps the
# DAG small at the paper's scale (BENCHMARKS.md)
ids = {key: str for key in ["dataset", "subject", "model", "family", "fit_path"]}
scores = pd.read_csv(snakemake.input.scores, sep="\t", dtype=ids)
dataset = open_dataset(params.root, params.format, params.options)
rois = {s: subject_rois(dataset, s, params.rois) for s in sorted(scores["subject"].unique())}
table = roi_table(scores, rois)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d ROI rows, ROIs per subject: %s", len(table), {s: list(r) for s, r in rois.items()})
