"""Alignment curve of one subject: a word-locked model refitted at every lag of the words."""

from lmbrain.alignment import alignment_curve, lag_grid
from lmbrain.datasets import open_dataset
from lmbrain.io import atomic_path
from lmbrain.scripting import start

log = start(snakemake)
params, wc = snakemake.params, snakemake.wildcards
settings = params.settings
dataset = open_dataset(params.root, params.format, params.options)
table = alignment_curve(
    dataset,
    wc.subject,
    lag_grid(settings["lags_s"], dataset.tr),
    temporal=params.temporal,
    fitting=params.fitting,
    features=settings["features"],
    method=settings["method"],
    width=settings["width"],
    seed=params.seed,
    subjects=params.subjects,
    dataset_name=wc.dataset,
)
with atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
