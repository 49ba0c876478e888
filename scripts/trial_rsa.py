"""RSA of a trial dataset: every subject's ROI RDMs against every model/layer RDM."""

from lmbrain.datasets import open_dataset
from lmbrain.io import atomic_path
from lmbrain.rsa import dataset_rsa, plot_rsa
from lmbrain.scripting import start
from lmbrain.trial_encoding import load_subject_responses

log = start(snakemake)
params = snakemake.params
dataset = open_dataset(params.root, params.format)
models = {
    mid: dict(spec, path=path)
    for (mid, spec), path in zip(params.models.items(), snakemake.input.features, strict=True)
}
table = dataset_rsa(
    dataset,
    params.subjects,
    models,
    params.n_permutations,
    params.seed,
    dataset_name=snakemake.wildcards.dataset,
    responses={
        s: load_subject_responses(p)
        for s, p in zip(params.subjects, snakemake.input.responses, strict=True)
    },
)
with atomic_path(snakemake.output.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
plot_rsa(table, snakemake.output.plot)
log.info("%d RSA comparisons", len(table))
