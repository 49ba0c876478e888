"""Encoding models: one ridge fit per (subject, model, layer, train fraction)."""


rule fit_encoding_model:
    input:
        data=dataset_inputs,
        features=feature_file,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
        ceiling=f"{RESULTS}/{{dataset}}/ceilings/{{subject}}.npz",
    output:
        voxels=f"{RESULTS}/{{dataset}}/fits/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.npz",
        row=f"{RESULTS}/{{dataset}}/fits/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/fit/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/fit/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.tsv"
    conda:
        "../envs/fit.yaml"
    threads: 1
    resources:
        **partition("fit"),
        mem_mb=fit_mem,
        gpu=CFG["cluster"]["fit_gpus"],
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        subjects=fit_subjects,
        entry=lambda wc: MODELS[wc.model],
        temporal=CFG["temporal"],
        fitting=CFG["fitting"],
        scoring=CFG["scoring"],
        seed=CFG["seed"],
    script:
        "../scripts/fit_encoding_model.py"
