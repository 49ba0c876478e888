"""Feature extraction: one job per (dataset, model) writes every requested layer."""


rule extract_features:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    output:
        f"{RESULTS}/{{dataset}}/features/{{model}}.h5",
    log:
        f"{RESULTS}/{{dataset}}/logs/extract_features/{{model}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/extract_features/{{model}}.tsv"
    conda:
        "../envs/extract.yaml"
    threads: CFG["features"]["threads"]
    resources:
        gpu=lambda wc: extraction_gpus(),
        mem_mb=lambda wc: extraction_mem_mb(wc.model),
    params:
        entry=lambda wc: MODELS[wc.model],
        layers=lambda wc: extraction_layers(wc.model),
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        context_tokens=CFG["features"]["context_tokens"],
        stride_tokens=CFG["features"]["stride_tokens"],
        audio_context_s=CFG["features"]["audio_context_s"],
        audio_stride_s=CFG["features"]["audio_stride_s"],
        storage_dtype=CFG["features"]["storage_dtype"],
        cache=CACHE,
    script:
        "../scripts/extract_features.py"
