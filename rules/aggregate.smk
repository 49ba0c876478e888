"""Aggregation: the score table, scaling-law fits and figures of each dataset."""


rule summarize_scores:
    input:
        fit_rows,
    output:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
        fits=f"{RESULTS}/{{dataset}}/summary/scaling_fits.tsv",
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_scores.log",
    conda:
        "../envs/fit.yaml"
    params:
        n_bootstrap=CFG["aggregate"]["n_bootstrap"],
        seed=CFG["seed"],
    script:
        "../scripts/summarize_scores.py"


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
