"""Fit one stacked encoding model (subject, stacked model): weights, joint and per-space r."""

from lmbrain.datasets import open_dataset
from lmbrain.io import save_json, save_npz
from lmbrain.scripting import start
from lmbrain.stacking import fit_stacked_encoding_model

log = start(snakemake)
params, wc = snakemake.params, snakemake.wildcards
dataset = open_dataset(params.root, params.format, params.options)
spaces = [
    (space["label"], path, space["layer"])
    for space, path in zip(params.spaces, snakemake.input.features, strict=True)
]
voxels, row = fit_stacked_encoding_model(
    dataset, wc.subject, spaces, temporal=params.temporal, fitting=params.fitting
)
row = {"dataset": wc.dataset, "name": wc.stacked, **row}
save_npz(snakemake.output.voxels, **voxels)
save_json(snakemake.output.row, row)
log.info(
    "stacking %s: mean r %.4f stacked, %s alone",
    wc.stacked,
    float(voxels["r_stacked"].mean()),
    ", ".join(f"{n} {float(voxels[f'r_{n}'].mean()):.4f}" for n in row["spaces"]),
)
