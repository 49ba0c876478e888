"""Features of a baseline (random vectors, random or static word embeddings) for a dataset."""

from lmbrain.baselines import write_baseline_features
from lmbrain.datasets import open_dataset
from lmbrain.scripting import start

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format, params.options)
info = write_baseline_features(
    snakemake.output[0], params.entry, dataset, storage_dtype=params.storage_dtype
)
log.info("baseline %s: %s", snakemake.wildcards.model, info)
