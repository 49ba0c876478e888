"""Extras: baselines and untrained gaps (lmbrain.baselines), extrapolation (lmbrain.extrapolation)."""

import re

from lmbrain.baselines import untrained_twins


# A baseline's feature file is computed from the words, without a language model.
ruleorder: baseline_features > extract_features


BASELINE_IDS = [mid for mid, entry in MODELS.items() if is_baseline(entry)]
TWINS = untrained_twins(list(MODELS.values()))


# Outputs of the extras per dataset (added to `rule all` by `all_outputs`).
EXTRA_TARGETS = {
    name: [f"{RESULTS}/{name}/summary/scaling_extrapolation.tsv"]
    + ([f"{RESULTS}/{name}/summary/baseline_gaps.tsv"] if TWINS else [])
    for name in DATASETS
}


rule baseline_features:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    output:
        f"{RESULTS}/{{dataset}}/features/{{model}}.h5",
    log:
        f"{RESULTS}/{{dataset}}/logs/baseline_features/{{model}}.log",
    wildcard_constraints:
        model="|".join(re.escape(mid) for mid in BASELINE_IDS) or "(?!x)x",
    conda:
        "../envs/fit.yaml"
    params:
        entry=lambda wc: MODELS[wc.model],
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        storage_dtype=CFG["features"]["storage_dtype"],
    script:
        "../scripts/baseline_features.py"


rule baseline_gaps:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
    output:
        f"{RESULTS}/{{dataset}}/summary/baseline_gaps.tsv",
    log:
        f"{RESULTS}/{{dataset}}/logs/baseline_gaps.log",
    conda:
        "../envs/fit.yaml"
    params:
        twins=TWINS,
        n_bootstrap=CFG["aggregate"]["n_bootstrap"],
        seed=CFG["seed"],
    script:
        "../scripts/baseline_gaps.py"


rule scaling_extrapolation:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
    output:
        f"{RESULTS}/{{dataset}}/summary/scaling_extrapolation.tsv",
    log:
        f"{RESULTS}/{{dataset}}/logs/scaling_extrapolation.log",
    conda:
        "../envs/fit.yaml"
    params:
        target=CFG["aggregate"]["extrapolation_target"],
        n_bootstrap=CFG["aggregate"]["n_bootstrap"],
        seed=CFG["seed"],
    script:
        "../scripts/scaling_extrapolation.py"
