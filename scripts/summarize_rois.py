"""Per-ROI scores (lmbrain.roi) and per-ROI scaling fits and extrapolation (lmbrain.roi_scaling)."""

import pandas as pd

from lmbrain.datasets import open_dataset
from lmbrain.io import atomic_path
from lmbrain.roi import roi_table, subject_rois
from lmbrain.roi_scaling import roi_extrapolations, roi_scaling_fits
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
boot = {"n_boot": params.n_bootstrap, "seed": params.seed}
fits = roi_scaling_fits(scores, table, rois, **boot)
extrapolation = roi_extrapolations(scores, table, rois, target=params.target, **boot)
out = snakemake.output
for path, frame in [(out.scores, table), (out.fits, fits), (out.extrapolation, extrapolation)]:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d ROI rows, ROIs per subject: %s", len(table), {s: list(r) for s, r in rois.items()})
log.info("%d ROI fits, %d ROI extrapolations", len(fits), len(extrapolation))
