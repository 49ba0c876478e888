"""Fit one banded encoding model (subject, banded model) and its leave-one-band-out models."""

from lmbrain.banded import fit_banded_encoding_model
from lmbrain.datasets import open_dataset
from lmbrain.io import save_json, save_npz
from lmbrain.scripting import start

log = start(snakemake)
params, wc = snakemake.params, snakemake.wildcards
dataset = open_dataset(params.root, params.format, params.options)
bands = [
    (band["label"], path, band["layer"])
    for band, path in zip(params.bands, snakemake.input.features, strict=True)
]
voxels, row = fit_banded_encoding_model(
    dataset,
    wc.subject,
    bands,
    temporal=params.temporal,
    fitting=params.fitting,
    n_iter=params.n_iter,
    seed=params.seed,
)
row = {"dataset": wc.dataset, "name": wc.banded, **row}
row["n_train_stories"] = len(dataset.train_stories)
row["n_test_stories"] = len(dataset.test_stories)
save_npz(
    snakemake.output.voxels,
    **voxels,
    n_train_stories=row["n_train_stories"],
    n_test_stories=row["n_test_stories"],
)
save_json(snakemake.output.row, row)
log.info("banded %s: joint R2 %.4f", wc.banded, float(voxels["r2"].mean()))
