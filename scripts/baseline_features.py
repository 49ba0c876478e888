"""Features of one baseline (bag of words, category one-hot, random) for a trial dataset."""

from lmbrain.datasets import open_dataset
from lmbrain.scripting import start
from lmbrain.sentence_features import baseline_features, write_stimulus_features

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format)
feats, info = baseline_features(dataset, params.spec, params.cache)
write_stimulus_features(snakemake.output[0], dataset.stimuli, {0: feats}, info)
log.info("baseline %s: %s features", params.spec["name"], feats.shape)
