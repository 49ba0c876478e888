"""Aggregation: the score table, scaling-law fits and figures of each dataset."""


rule summarize_scores:
    input:
        fit_rows,
    output:
        **{
            name: report(
                f"{RESULTS}/{{dataset}}/summary/{table}.tsv",
                caption=f"../report/{table}.rst",
                category="Tables",
                subcategory="{dataset}",
            )
            for name, table in [("scores", "scores"), ("fits", "scaling_fits")]
        },
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_scores.log",
    conda:
        "../envs/fit.yaml"
    params:
        n_bootstrap=CFG["aggregate"]["n_bootstrap"],
        seed=CFG["seed"],
        metrics=sorted(CFG["aggregate"]["metrics"]),
        reliable_fraction=CFG["scoring"]["reliable_fraction"],
        methods=methods(),
        # model metadata reaches the aggregates only: editing it reruns them, not the fits
        metadata=MODEL_METADATA,
        x_variables=X_VARIABLES,
    script:
        "../scripts/summarize_scores.py"


rule best_layer_table:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
        maps=voxel_layer_maps,
    output:
        report(
            f"{RESULTS}/{{dataset}}/summary/best_layers.tsv",
            caption="../report/best_layers.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/best_layer_table.log",
    conda:
        "../envs/fit.yaml"
    script:
        "../scripts/summarize_best_layers.py"


rule plot_scaling:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
        fits=f"{RESULTS}/{{dataset}}/summary/scaling_fits.tsv",
    output:
        **{
            name: report(
                f"{RESULTS}/{{dataset}}/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory="{dataset}",
            )
            for name in PLOTS
        },
    log:
        f"{RESULTS}/{{dataset}}/logs/plot_scaling.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_scaling.py"


rule record_config:
    output:
        report(
            f"{RESULTS}/{{dataset}}/summary/config.yaml",
            caption="../report/config.rst",
            category="Configuration",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/record_config.log",
    localrule: True
    conda:
        "../envs/plot.yaml"
    params:
        config=lambda wc: resolved_config(wc.dataset),
    script:
        "../scripts/record_config.py"
