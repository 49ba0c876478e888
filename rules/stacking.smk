"""Stacked regression (lmbrain.stacking): one ridge model per feature space, combined per voxel.

One job per (dataset, subject, stacked model) fits each space's ridge model, its out-of-fold
predictions on the training stories and the per-voxel convex stacking weights; the summary
collects every fit into summary/stacking.tsv and plots/stacking.png (README, "Stacked
regression"). Off unless `stacking:` lists a stacked model.
"""


include: "stacking_common.smk"


localrules:
    summarize_stacking,


rule fit_stacking:
    input:
        data=dataset_inputs,
        features=stacking_feature_files,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    output:
        voxels=f"{RESULTS}/{{dataset}}/stacking/{{subject}}/{{stacked}}.npz",
        row=f"{RESULTS}/{{dataset}}/stacking/{{subject}}/{{stacked}}.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/stacking/{{subject}}/{{stacked}}.log",
    benchmark:
        f"{RESULTS}/{{dataset}}/benchmarks/stacking/{{subject}}/{{stacked}}.tsv"
    wildcard_constraints:
        stacked="[A-Za-z0-9_][A-Za-z0-9_.+-]*",
    conda:
        "../envs/fit.yaml"
    threads: 1
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        spaces=lambda wc: stacking_spaces(wc.stacked),
        temporal=CFG["temporal"],
        fitting=CFG["fitting"],
    script:
        "../scripts/fit_stacking.py"


rule summarize_stacking:
    input:
        stacking_fits,
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/summary/stacking.tsv",
            caption="../report/stacking_table.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/stacking.png",
            caption="../report/stacking.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_stacking.log",
    conda:
        "../envs/fit.yaml"  # lmbrain.stacking (the summary lives beside the fit)
    script:
        "../scripts/summarize_stacking.py"
