"""Fit and score one voxelwise encoding model (subject, model, layer, train fraction)."""

import numpy as np

from lmbrain.datasets import open_dataset
from lmbrain.encoding import fit_encoding_model
from lmbrain.io import save_json, save_npz
from lmbrain.models import model_id
from lmbrain.scripting import start

log = start(snakemake)
params, wc = snakemake.params, snakemake.wildcards
dataset = open_dataset(params.root, params.format, params.options)
voxels, row = fit_encoding_model(
    dataset,
    wc.subject,
    snakemake.input.features,
    int(wc.layer),
    float(wc.fraction),
    temporal=params.temporal,
    fitting=params.fitting,
    cc_max=np.load(snakemake.input.ceiling)["cc_max"],
    min_cc_max=params.scoring["min_cc_max"],
    seed=params.seed,
    subjects=params.subjects,
)
entry = params.entry
row = {
    "dataset": wc.dataset,
    "model": model_id(entry),
    "family": entry.get("family", model_id(entry)),
    "untrained": bool(entry.get("untrained", False)),
    **row,
    "fit_path": snakemake.output.voxels,
}
log.info("mean r = %.4f (L %.4f, R %.4f)", row["mean_r"], row["mean_r_left"], row["mean_r_right"])
save_npz(snakemake.output.voxels, **voxels)
save_json(snakemake.output.row, row)
