"""lmbrain: language-model -> fMRI encoding models, and how they scale.

Run `snakemake --cores N` (config/config.yaml is the demo). See README.md.
"""

from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    subject="[A-Za-z0-9_.-]+",
    model="[A-Za-z0-9_.-]+",
    layer="[0-9]+",
    fraction="[0-9.]+",
    banded="[A-Za-z0-9_.+-]+",


include: "rules/dataset.smk"
include: "rules/features.smk"
include: "rules/fit.smk"
include: "rules/aggregate.smk"
include: "rules/banded.smk"
include: "rules/maps.smk"
include: "rules/trials.smk"
include: "rules/extras.smk"
include: "rules/alignment.smk"


rule all:
    default_target: True
    input:
        all_outputs() + trial_outputs(),
