"""Forecast maps of every model of one subject, and their figure (lmbrain.forecast_maps)."""

from pathlib import Path

from lmbrain.brainmaps import planned_geometry
from lmbrain.datasets import open_dataset
from lmbrain.forecast_maps import plot_forecast_maps, write_forecast_map
from lmbrain.scripting import start

log = start(snakemake)
params, subject = snakemake.params, snakemake.wildcards.subject
dataset = open_dataset(params.root, params.format, params.options)
geometry = planned_geometry(dataset, subject, params.kind)
folder = Path(snakemake.output.maps)
folder.mkdir(parents=True, exist_ok=True)
prefixes = {}
for model, npz in zip(params.models, snakemake.input.forecast, strict=True):
    prefixes[model] = str(folder / model)
    write_forecast_map(npz, geometry, prefixes[model])
log.info("%d %s forecast maps written to %s", len(prefixes), params.kind, folder)
plot_forecast_maps(params.kind, prefixes, f"{subject}: forecast maps", snakemake.output.plot)
