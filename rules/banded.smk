"""Banded ridge: several feature spaces fitted jointly, one regularisation per band."""


rule fit_banded:
    input:
        data=dataset_inputs,
        features=banded_feature_files,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    output:
        voxels=f"{RESULTS}/{{dataset}}/banded/{{subject}}/{{banded}}.npz",
        row=f"{RESULTS}/{{dataset}}/banded/{{subject}}/{{banded}}.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/banded/{{subject}}/{{banded}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/banded/{{subject}}/{{banded}}.tsv"
    conda:
        "../envs/fit.yaml"
    threads: 1
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        bands=lambda wc: banded_bands(wc.banded),
        n_iter=lambda wc: BANDED[wc.banded]["n_iter"],
        temporal=CFG["temporal"],
        fitting=CFG["fitting"],
        seed=CFG["seed"],
    script:
        "../scripts/fit_banded.py"


rule summarize_banded:
    input:
        banded_fits,
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/summary/banded.tsv",
            caption="../report/banded_table.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/banded.png",
            caption="../report/banded.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_banded.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/summarize_banded.py"
