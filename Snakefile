"""lmbrain: language-model -> fMRI encoding models, and how they scale.

Run `snakemake --cores N` (config/config.yaml is the demo). See README.md.
"""

from snakemake.utils import min_version

min_version("8.20")


# The demo's config applies only when no --configfile is given: a user's config stands on its
# own (Snakemake would otherwise merge it into the demo's, so a run on one's own data also
# simulated and fitted the demo). `--config key=value` alone still edits the demo.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


# names are plain path components, never `.` or `..` (lmbrain.config.NAME_PATTERN)
wildcard_constraints:
    dataset="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    subject="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    layer="[0-9]+",
    fraction="[0-9.]+",
    banded="[A-Za-z0-9_][A-Za-z0-9_.+-]*",


include: "rules/dataset.smk"
include: "rules/features.smk"
include: "rules/fit.smk"
include: "rules/aggregate.smk"
include: "rules/banded.smk"
include: "rules/maps.smk"
include: "rules/trials.smk"
include: "rules/extras.smk"


rule all:
    default_target: True
    input:
        all_outputs() + trial_outputs(),
