"""Searchlight RSA of one subject of a trial dataset: a map per model layer and baseline."""

from lmbrain.brainmaps import write_volume_map
from lmbrain.datasets import open_dataset
from lmbrain.mapplots import plot_brain_map
from lmbrain.scripting import start
from lmbrain.searchlight import dataset_searchlight, main_measure
from lmbrain.trial_encoding import load_subject_responses

log = start(snakemake)
params = snakemake.params
subject = snakemake.wildcards.subject
dataset = open_dataset(params.root, params.format)
models = {
    mid: dict(spec, path=path)
    for (mid, spec), path in zip(params.models.items(), snakemake.input.features, strict=True)
}
values, geometry = dataset_searchlight(
    dataset,
    subject,
    models,
    params.settings,
    responses=load_subject_responses(snakemake.input.responses),
    seed=params.seed,
)
prefix = snakemake.output.image.removesuffix(".nii.gz")
paths = write_volume_map(values, geometry, prefix, subject=subject, settings=params.settings)
measure = main_measure(params.models)
plot_brain_map("volume", paths, f"{subject}: searchlight RSA", snakemake.output.plot, measure)
log.info("searchlight of %s: %d voxels, %d maps", subject, geometry.n_voxels, len(values) - 1)
