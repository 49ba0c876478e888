"""Features of one baseline (bag of words, category, random, or a nouns/verbs/scrambled control)."""

from lmbrain.datasets import open_dataset
from lmbrain.scripting import start
from lmbrain.sentence_features import baseline_features, write_stimulus_features

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format)
feats, info = baseline_features(dataset, params.spec, params.cache, params.pooling)
write_stimulus_features(snakemake.output[0], dataset.stimuli, {0: feats}, info)
log.info("baseline %s: %s features", params.spec["name"], feats.shape)
