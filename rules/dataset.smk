"""Datasets: generate the demo simulation, validate inputs, noise ceilings."""


rule simulate_dataset:
    output:
        directory(f"{RESULTS}/{{dataset}}/dataset"),
    log:
        f"{RESULTS}/{{dataset}}/logs/simulate_dataset.log",
    conda:
        "../envs/fit.yaml"
    params:
        settings=lambda wc: DATASETS[wc.dataset]["simulate"],
    script:
        "../scripts/simulate_dataset.py"


rule validate_stimuli:
    input:
        dataset_inputs,
    output:
        f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/validate_stimuli.log",
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        skipped_subjects=lambda wc: SKIPPED_SUBJECTS.get(wc.dataset, []),
    script:
        "../scripts/validate_dataset.py"


use rule validate_stimuli as validate_subject with:
    output:
        f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/validate_{{subject}}.log",


rule noise_ceiling:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    output:
        f"{RESULTS}/{{dataset}}/ceilings/{{subject}}.npz",
    log:
        f"{RESULTS}/{{dataset}}/logs/noise_ceiling_{{subject}}.log",
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        ceiling=lambda wc: DATASETS[wc.dataset]["ceiling"],
        cv=CFG["fitting"]["cv"],
        seed=CFG["seed"],
    script:
        "../scripts/noise_ceiling.py"
