"""lmbrain: language-model -> fMRI encoding models, and how they scale.

Run `snakemake --cores N` (config/config.yaml is the demo). See README.md.
"""

import os
import sys

from snakemake.utils import min_version

min_version("8.20")

# This workflow's own lmbrain (src/) comes first for the Snakefile and for every job: the jobs
# inherit PYTHONPATH, the conda envs (--sdm conda) included, which therefore need not install
# lmbrain (Snakemake copies envs/*.yaml into .snakemake/conda/, where `pip: -e ..` would miss).
LMBRAIN_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, LMBRAIN_SRC)
_PATH_VAR = (
    "PYTHONPATH"  # set here, for the jobs: nothing the user must define (envvars:)
)
os.environ[_PATH_VAR] = os.pathsep.join(
    dict.fromkeys(
        [LMBRAIN_SRC, *filter(None, os.environ.get(_PATH_VAR, "").split(os.pathsep))]
    )
)


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


include: "rules/fetch.smk"
include: "rules/dataset.smk"
include: "rules/features.smk"
include: "rules/fit.smk"
include: "rules/aggregate.smk"
include: "rules/banded.smk"
include: "rules/maps.smk"
include: "rules/trials.smk"
include: "rules/extras.smk"
include: "rules/alignment.smk"
include: "rules/stacking.smk"


# Aggregates, plots and maps: seconds of work on small tables and per-voxel score vectors, run
# by Snakemake itself on the login node rather than queued as cluster jobs, where each would
# wait in the queue longer than it runs (record_config is marked in its rule).
localrules:
    brain_maps,
    scaling_slope_map_volume,
    scaling_slope_map_surface,
    scaling_slope_map_vector,
    summarize_scores,
    plot_scaling,
    plot_brain_map,
    summarize_rois,
    plot_rois,
    baseline_gaps,
    scaling_extrapolation,
    forecast_summary,
    summarize_banded,
    summarize_baselines,
    best_layer_table,
    near_ceiling,
    plot_slope_map,
    scaling_slope_group_volume,
    scaling_slope_group_surface,


rule all:
    default_target: True
    input:
        all_outputs() + trial_outputs(),
