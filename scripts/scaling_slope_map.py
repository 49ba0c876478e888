"""A subject's voxelwise scaling map: r against log10(n_params) in every voxel.

Reads the score rows and per-voxel fits of every trained, non-baseline model of the subject,
keeps each model's best layer by CV score at the largest train fraction and writes the
per-voxel slope, intercept, r² and model count (lmbrain.voxel_scaling) in the form the
subject's geometry calls for (``params.kind``).
"""

from lmbrain.aggregate import read_score_rows
from lmbrain.brainmaps import planned_geometry
from lmbrain.datasets import open_dataset
from lmbrain.scripting import start
from lmbrain.voxel_scaling import write_subject_slope_map

log = start(snakemake)
params, subject = snakemake.params, snakemake.wildcards.subject
dataset = open_dataset(params.root, params.format, params.options)
geometry = planned_geometry(dataset, subject, params.kind)
scores = read_score_rows(snakemake.input.rows)
info = write_subject_slope_map(scores, subject, geometry, params.prefix)
if info["note"]:
    log.warning("no slope map for %s: %s", subject, info["note"])
log.info(
    "slope map of %s over %s (n_params %s): mean slope %.4g, median %.4g per decade -> %s",
    subject,
    info["models"],
    info["n_params"],
    info["mean_slope"],
    info["median_slope"],
    info["files"],
)
