"""Extras: baselines and untrained gaps (lmbrain.baselines), extrapolation (lmbrain.extrapolation)."""

import re

from lmbrain.baselines import untrained_twins
from lmbrain.forecast import plan_forecast


# A baseline's feature file is computed from the words, without a language model.
ruleorder: word_baseline_features > extract_features


BASELINE_IDS = [mid for mid, entry in MODELS.items() if is_baseline(entry)]
TWINS = untrained_twins(list(MODELS.values()))


# Outputs of the extras per dataset (added to `rule all` by `all_outputs`).
EXTRA_TARGETS = {
    name: [f"{RESULTS}/{name}/summary/scaling_extrapolation.tsv"]
    + ([f"{RESULTS}/{name}/summary/baseline_gaps.tsv"] if TWINS else [])
    for name in DATASETS
}


rule word_baseline_features:
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
        options=dataset_options,
        storage_dtype=CFG["features"]["storage_dtype"],
    script:
        "../scripts/word_baseline_features.py"


rule baseline_gaps:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
    output:
        report(
            f"{RESULTS}/{{dataset}}/summary/baseline_gaps.tsv",
            caption="../report/baseline_gaps.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
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
        report(
            f"{RESULTS}/{{dataset}}/summary/scaling_extrapolation.tsv",
            caption="../report/scaling_extrapolation.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
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


# Forecast windows (lmbrain.forecast): off unless `forecast.enabled`.
try:
    # language models only (a speech model's rows are time windows, not words); every
    # hidden state is extracted (rules/features.smk)
    _WORD_MODELS = {
        mid: entry
        for mid, entry in MODELS.items()
        if mid in FEATURE_SPECS and read_modality(entry, CACHE) == "text"
    }
    FORECAST = plan_forecast(
        CFG["forecast"],
        _WORD_MODELS,
        {
            mid: list(range(read_n_layers(e, CACHE) + 1))
            for mid, e in _WORD_MODELS.items()
        },
        lambda mid: read_n_layers(MODELS[mid], CACHE),
    )
except LmbrainError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
if FORECAST and "forecast" in MODELS:
    # the forecast maps of a subject live in maps/<subject>/forecast/, beside the models' maps
    raise WorkflowError(
        "invalid configuration: model id 'forecast' clashes with the forecast maps folder "
        "maps/<subject>/forecast/; give the model another name"
    )
for _name in DATASETS:
    if FORECAST:
        EXTRA_TARGETS[_name] += [
            f"{RESULTS}/{_name}/summary/forecast.tsv",
            f"{RESULTS}/{_name}/plots/forecast.png",
            f"{RESULTS}/{_name}/plots/forecast_roi.png",
        ]
        EXTRA_TARGETS[_name] += [
            f"{RESULTS}/{_name}/plots/forecast_map_{s}.png" for s in SUBJECTS[_name]
        ]


rule forecast_fit:
    input:
        data=dataset_inputs,
        features=feature_file,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    output:
        voxels=f"{RESULTS}/{{dataset}}/forecast/{{subject}}/{{model}}.npz",
        rows=f"{RESULTS}/{{dataset}}/forecast/{{subject}}/{{model}}.tsv",
    log:
        f"{RESULTS}/{{dataset}}/logs/forecast/{{subject}}/{{model}}.log",
    conda:
        "../envs/fit.yaml"
    threads: 1
    resources:
        mem_mb=fit_mem,
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        layers=lambda wc: FORECAST[wc.model],
        settings={
            **{k: CFG["forecast"][k] for k in ("distances", "width", "mode")},
            "control": (
                None
                if CFG["forecast"]["control"] == "none"
                else CFG["forecast"]["control"]
            ),
        },
        seed=CFG["seed"],
        temporal=CFG["temporal"],
        fitting=CFG["fitting"],
    script:
        "../scripts/forecast_fit.py"


rule forecast_maps:
    input:
        forecast=lambda wc: [
            f"{RESULTS}/{wc.dataset}/forecast/{wc.subject}/{mid}.npz"
            for mid in FORECAST
        ],
        data=dataset_inputs,
    output:
        maps=directory(f"{RESULTS}/{{dataset}}/maps/{{subject}}/forecast"),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/forecast_map_{{subject}}.png",
            caption="../report/forecast_map.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/forecast_maps/{{subject}}.log",
    conda:
        "../envs/plot.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        kind=lambda wc: map_kind(wc.dataset, wc.subject),
        models=list(FORECAST),
    script:
        "../scripts/forecast_maps.py"


rule forecast_summary:
    input:
        lambda wc: [
            f"{RESULTS}/{wc.dataset}/forecast/{subject}/{mid}.tsv"
            for subject in SUBJECTS[wc.dataset]
            for mid in FORECAST
        ],
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/summary/forecast.tsv",
            caption="../report/forecast.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/forecast.png",
            caption="../report/forecast.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
        roi_plot=report(
            f"{RESULTS}/{{dataset}}/plots/forecast_roi.png",
            caption="../report/forecast_roi.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/forecast_summary.log",
    conda:
        "../envs/fit.yaml"
    script:
        "../scripts/forecast_summary.py"
