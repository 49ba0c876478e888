"""Fit and score one encoding model of a trial dataset (subject, model, layer, fraction)."""

import numpy as np

from lmbrain.datasets import open_dataset
from lmbrain.io import save_json, save_npz
from lmbrain.scripting import start
from lmbrain.trial_encoding import fit_from_feature_file, load_subject_responses

log = start(snakemake)
params, wc = snakemake.params, snakemake.wildcards
dataset = open_dataset(params.root, params.format)
voxels, row = fit_from_feature_file(
    dataset,
    wc.subject,
    snakemake.input.features,
    int(wc.layer),
    float(wc.fraction),
    fitting=params.fitting,
    train_on=params.train_on,
    cc_max=np.load(snakemake.input.ceiling)["cc_max"],
    min_cc_max=params.scoring["min_cc_max"],
    reliable_fraction=params.scoring["reliable_fraction"],
    seed=params.seed,
    responses=load_subject_responses(snakemake.input.responses),
)
row = {
    "dataset": wc.dataset,
    "model": wc.model,
    "family": params.facts["family"],
    "untrained": params.facts["untrained"],
    "baseline": params.facts["baseline"],
    **row,
    "fit_path": snakemake.output.voxels,
}
log.info("mean r = %.4f (L %.4f, R %.4f)", row["mean_r"], row["mean_r_left"], row["mean_r_right"])
save_npz(snakemake.output.voxels, **voxels)
save_json(snakemake.output.row, row)
