"""Trial-based datasets (format: trials): caption features, trial fits, ceilings and RSA.

These rules write the same paths as the story rules (features, ceilings, fits), restricted
by wildcard constraints to trial datasets, and win over them by `ruleorder` (the story fit
rules are restricted to story datasets instead: they fit several fractions per job); so the
score table, scaling fits and plots of rules/aggregate.smk serve both kinds of data.
"""


include: "trials_common.smk"


rule simulate_trial_dataset:
    output:
        directory(f"{RESULTS}/{{dataset}}/dataset"),
    log:
        f"{RESULTS}/{{dataset}}/logs/simulate_dataset.log",
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    params:
        settings=lambda wc: DATASETS[wc.dataset]["simulate"],
    script:
        "../scripts/simulate_trial_dataset.py"


rule extract_caption_features:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    output:
        f"{RESULTS}/{{dataset}}/features/{{model}}.h5",
    log:
        f"{RESULTS}/{{dataset}}/logs/extract_features/{{model}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/extract_features/{{model}}.tsv"
    wildcard_constraints:
        dataset=TRIAL_RE,
        model=MODEL_RE,
    conda:
        "../envs/extract.yaml"
    threads: CFG["features"]["threads"]
    resources:
        **partition("extraction"),
        gpu=lambda wc: extraction_gpus(),
        mem_mb=lambda wc, attempt: extraction_mem_mb(
            FEATURE_SPECS[wc.model], CACHE, attempt
        ),
    params:
        entry=lambda wc: MODELS[wc.model],
        layers=lambda wc: LAYERS[wc.model],
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        pooling=lambda wc: MODELS[wc.model].get(
            "pooling", DATASETS[wc.dataset]["trials"]["pooling"]
        ),
        storage_dtype=CFG["features"]["storage_dtype"],
        cache=CACHE,
    script:
        "../scripts/extract_caption_features.py"


rule baseline_features:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    output:
        f"{RESULTS}/{{dataset}}/features/{{model}}.h5",
    log:
        f"{RESULTS}/{{dataset}}/logs/extract_features/{{model}}.log",
    wildcard_constraints:
        dataset=TRIAL_RE,
        model=BASELINE_RE,
    conda:
        "../envs/extract.yaml"
    params:
        spec=lambda wc: BASELINES[wc.dataset][wc.model],
        pooling=lambda wc: DATASETS[wc.dataset]["trials"]["pooling"],
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        cache=CACHE,
    script:
        "../scripts/baseline_features.py"


rule trial_responses:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    output:
        f"{RESULTS}/{{dataset}}/responses/{{subject}}.npz",
    log:
        f"{RESULTS}/{{dataset}}/logs/responses_{{subject}}.log",
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
    script:
        "../scripts/trial_responses.py"


rule trial_noise_ceiling:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
        responses=f"{RESULTS}/{{dataset}}/responses/{{subject}}.npz",
    output:
        f"{RESULTS}/{{dataset}}/ceilings/{{subject}}.npz",
    log:
        f"{RESULTS}/{{dataset}}/logs/noise_ceiling_{{subject}}.log",
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
    script:
        "../scripts/trial_noise_ceiling.py"


rule fit_trial_model:
    input:
        data=dataset_inputs,
        features=f"{RESULTS}/{{dataset}}/features/{{model}}.h5",
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
        ceiling=f"{RESULTS}/{{dataset}}/ceilings/{{subject}}.npz",
        responses=f"{RESULTS}/{{dataset}}/responses/{{subject}}.npz",
    output:
        voxels=f"{RESULTS}/{{dataset}}/fits/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.npz",
        row=f"{RESULTS}/{{dataset}}/fits/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/fit/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/fit/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.tsv"
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    threads: 1
    resources:
        **partition("fit"),
        mem_mb=lambda wc, input, attempt: int(2000 + 4 * input.size_mb) * attempt,
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        facts=lambda wc: trial_model_facts(wc.dataset, wc.model),
        train_on=lambda wc: DATASETS[wc.dataset]["trials"]["train_on"],
        fitting=CFG["fitting"],
        scoring=CFG["scoring"],
        seed=CFG["seed"],
    script:
        "../scripts/fit_trial_model.py"


rule summarize_baselines:
    input:
        baseline_rows,
    output:
        report(
            f"{RESULTS}/{{dataset}}/summary/baseline_scores.tsv",
            caption="../report/baseline_scores.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_baselines.log",
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    script:
        "../scripts/summarize_baselines.py"


rule trial_rsa:
    input:
        data=dataset_inputs,
        responses=lambda wc: [
            f"{RESULTS}/{wc.dataset}/responses/{s}.npz" for s in SUBJECTS[wc.dataset]
        ],
        features=lambda wc: [
            f"{RESULTS}/{wc.dataset}/features/{mid}.h5"
            for mid in rsa_models(wc.dataset)
        ],
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/summary/rsa.tsv",
            caption="../report/rsa_table.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/rsa.png",
            caption="../report/rsa.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/trial_rsa.log",
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        subjects=lambda wc: SUBJECTS[wc.dataset],
        models=lambda wc: rsa_models(wc.dataset),
        n_permutations=lambda wc: DATASETS[wc.dataset]["trials"]["rsa_permutations"],
        seed=CFG["seed"],
    script:
        "../scripts/trial_rsa.py"


rule trial_searchlight:
    input:
        data=dataset_inputs,
        responses=f"{RESULTS}/{{dataset}}/responses/{{subject}}.npz",
        features=lambda wc: [
            f"{RESULTS}/{wc.dataset}/features/{mid}.h5"
            for mid in rsa_models(wc.dataset)
        ],
    output:
        image=f"{RESULTS}/{{dataset}}/searchlight/{{subject}}.nii.gz",
        sidecar=f"{RESULTS}/{{dataset}}/searchlight/{{subject}}.json",
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/searchlight_{{subject}}.png",
            caption="../report/searchlight.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/searchlight_{{subject}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/searchlight_{{subject}}.tsv"
    wildcard_constraints:
        dataset=TRIAL_RE,
    conda:
        "../envs/fit.yaml"
    threads: 1
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        models=lambda wc: rsa_models(wc.dataset),
        settings=lambda wc: DATASETS[wc.dataset]["trials"]["searchlight"],
        seed=CFG["seed"],
    script:
        "../scripts/trial_searchlight.py"


ruleorder: simulate_trial_dataset > simulate_dataset
ruleorder: baseline_features > extract_caption_features > extract_features
ruleorder: trial_noise_ceiling > noise_ceiling
