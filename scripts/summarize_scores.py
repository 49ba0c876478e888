"""Collect every fit's summary row into scores.tsv and fit the scaling laws."""

from lmbrain.aggregate import read_score_rows, scaling_fits
from lmbrain.io import atomic_path
from lmbrain.scripting import start
from lmbrain.xvariables import add_metadata_columns

log = start(snakemake)
scores = add_metadata_columns(read_score_rows(snakemake.input), snakemake.params.metadata)
fits = scaling_fits(
    scores,
    n_boot=snakemake.params.n_bootstrap,
    seed=snakemake.params.seed,
    metrics=snakemake.params.metrics,
    reliable_fraction=snakemake.params.reliable_fraction,
    x_variables=snakemake.params.x_variables,
)
for out, table in [(snakemake.output.scores, scores), (snakemake.output.fits, fits)]:
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("%d fits summarised", len(scores))
if len(scores) and scores[["mean_r_left", "mean_r_right"]].isna().all().all():
    log.warning("no voxel has a known hemisphere: the asymmetry fit and plot are left empty")
