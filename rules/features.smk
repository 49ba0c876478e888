"""Feature extraction: one job per (dataset, feature id) stores every hidden state.

The job writes layers 0..n_layers whatever `layers:` asks for, so choosing layers only
changes the fits; the file is keyed by the feature id (see `FEATURES` in common.smk), not by
the model's name.
"""


rule extract_features:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    output:
        f"{RESULTS}/{{dataset}}/features/{{feature}}.h5",
    log:
        f"{RESULTS}/{{dataset}}/logs/extract_features/{{feature}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/extract_features/{{feature}}.tsv"
    wildcard_constraints:
        feature="[A-Za-z0-9_.-]+",
    conda:
        "../envs/extract.yaml"
    threads: CFG["features"]["threads"]
    resources:
        **partition("extraction"),
        gpu=lambda wc: extraction_gpus(),
        mem_mb=extraction_mem,
    params:
        spec=lambda wc: FEATURES[wc.feature],
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        cache=CACHE,
    script:
        "../scripts/extract_features.py"
