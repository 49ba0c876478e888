"""Fit and score the encoding models of one (subject, model, layer), one per train fraction.

The fractions are fitted in turn and share the stories' design matrices; each writes its own
per-voxel ``.npz`` and summary ``.json`` (the rule's ``voxels`` and ``rows``, in the order of
``params.fractions``).
"""

import numpy as np

from lmbrain.datasets import open_dataset
from lmbrain.encoding import fit_encoding_model
from lmbrain.features import read_feature_info
from lmbrain.io import save_json, save_npz
from lmbrain.models import model_id
from lmbrain.provenance import fit_provenance
from lmbrain.scripting import progress_logger, start

log = start(snakemake)
params, wc, output = snakemake.params, snakemake.wildcards, snakemake.output
dataset = open_dataset(params.root, params.format, params.options)
cc_max = np.load(snakemake.input.ceiling)["cc_max"]
entry = params.entry
provenance = fit_provenance(read_feature_info(snakemake.input.features))
designs = {}  # story design matrices, built once for all fractions
progress = progress_logger()
for i, (fraction, voxels_path, row_path) in enumerate(
    zip(params.fractions, output.voxels, output.rows, strict=True), 1
):
    progress.info("train fraction %s (%d/%d): fitting", fraction, i, len(params.fractions))
    voxels, row = fit_encoding_model(
        dataset,
        wc.subject,
        snakemake.input.features,
        int(wc.layer),
        float(fraction),
        temporal=params.temporal,
        fitting=params.fitting,
        cc_max=cc_max,
        min_cc_max=params.scoring["min_cc_max"],
        reliable_fraction=params.scoring["reliable_fraction"],
        seed=params.seed,
        subjects=params.subjects,
        designs=designs,
        significance=params.scoring["significance"],
    )
    row = {
        "dataset": wc.dataset,
        "model": model_id(entry),
        "family": entry.get("family", model_id(entry)),
        "untrained": bool(entry.get("untrained", False)),
        **row,
        "fit_path": voxels_path,
        "provenance": provenance,
    }
    progress.info(
        "train fraction %s (%d/%d): mean r = %.4f (L %.4f, R %.4f), %s voxels with q < %g",
        fraction,
        i,
        len(params.fractions),
        row["mean_r"],
        row["mean_r_left"],
        row["mean_r_right"],
        row["n_voxels_significant"],
        row["significance_alpha"],
    )
    save_npz(voxels_path, **voxels)
    save_json(row_path, row)
