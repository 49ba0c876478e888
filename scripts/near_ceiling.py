"""Per-voxel test r against the noise ceiling for each subject's best model.

Writes summary/near_ceiling.tsv (lmbrain.near_ceiling) and the scatter figure, one panel per
subject (lmbrain.mapplots.plot_ceiling_scatter). The fit of a subject is the one its brain map
figure shows (lmbrain.mapplots.best_fit).
"""

import numpy as np
import pandas as pd

from lmbrain.aggregate import load_fit_voxels
from lmbrain.io import atomic_path
from lmbrain.mapplots import best_fit, plot_ceiling_scatter
from lmbrain.near_ceiling import near_ceiling_table
from lmbrain.scripting import start

log = start(snakemake)
# the score table lists every fit (its `fit_path`): one input instead of one per fit
ids = {key: str for key in ["dataset", "subject", "model", "family", "fit_path"]}
scores = pd.read_csv(snakemake.input.scores, sep="\t", dtype=ids)
fits = pd.DataFrame([best_fit(scores, s) for s in sorted(scores["subject"].unique())])
table = near_ceiling_table(fits)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
panels = []
for _, fit in fits.iterrows():
    arrays = load_fit_voxels(fit["fit_path"])
    r = arrays["r"]
    both = table[(table["subject"] == fit["subject"]) & (table["hemisphere"] == "both")].iloc[0]
    panels.append(
        {
            "title": f"{fit['subject']}: {fit['model']} layer {int(fit['layer'])}\n"
            f"r/cc_max >= 0.5: {both['frac_ge_0.5']:.0%} of {both['n_usable_ceiling']} voxels",
            "r": r,
            "cc_max": arrays.get("cc_max", np.full(r.shape, np.nan)),
            "usable": np.isfinite(arrays.get("r_norm", np.full(r.shape, np.nan))),
        }
    )
plot_ceiling_scatter(panels, snakemake.output.plot)
log.info("near-ceiling rows:\n%s", table.to_string(index=False))
