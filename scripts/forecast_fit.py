"""Forecast scores of one (subject, model): F_d per voxel for every distance and layer."""

from lmbrain.datasets import open_dataset
from lmbrain.features import read_features
from lmbrain.forecast import fit_forecast, forecast_summary
from lmbrain.io import atomic_path, save_npz
from lmbrain.scripting import start

log = start(snakemake)
params, wc = snakemake.params, snakemake.wildcards
dataset = open_dataset(params.root, params.format, params.options)
current, forecast_layers = params.layers
settings = params.settings
result = fit_forecast(
    dataset,
    wc.subject,
    lambda story, layer: read_features(snakemake.input.features, story, layer),
    current,
    forecast_layers,
    settings["distances"],
    width=settings["width"],
    mode=settings["mode"],
    temporal=params.temporal,
    fitting=params.fitting,
    control=settings["control"],
    seed=params.seed,
)
voxels = dataset.voxels(wc.subject)
keys = {
    "dataset": wc.dataset,
    "subject": wc.subject,
    "model": wc.model,
    "current_layer": current,
    "width": settings["width"],
    "mode": settings["mode"],
}
table = forecast_summary(result, voxels, keys)
save_npz(snakemake.output.voxels, **result, hemisphere=voxels["hemisphere"])
with atomic_path(snakemake.output.rows) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
log.info("forecast %s %s: best d counts %s", wc.subject, wc.model, result["best_d"].tolist())
