"""Check every input file of a dataset (or of one subject) and write its manifest."""

from lmbrain.datasets import open_dataset
from lmbrain.io import save_json
from lmbrain.scripting import start

log = start(snakemake)
dataset = open_dataset(snakemake.params.root, snakemake.params.format, snakemake.params.options)
subject = dict(snakemake.wildcards).get("subject")
manifest = dataset.validate([subject] if subject else [])
log.info("%s checked: %s", dataset.root, sorted(manifest))
for skip in manifest.get("skipped", []):
    log.warning("skipped: %s has no %s (%s)", skip["subject"], skip["story"], skip["reason"])
# subjects the workflow left out when it built the DAG (too few stories for fitting.cv)
manifest["skipped_subjects"] = list(snakemake.params.skipped_subjects)
for skip in manifest["skipped_subjects"]:
    log.warning("subject skipped: %s (%s)", skip["subject"], skip["reason"])
save_json(snakemake.output[0], manifest)
