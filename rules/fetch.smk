"""Download jobs of the datasets fetched from OpenNeuro (`source: openneuro`).

One job fetches a dataset's shared files (annotations, TextGrids, sidecars), one job per
subject that subject's files; the plan (which keys, their sizes and ETags) is made when the
workflow starts (rules/common.smk, `FETCH`). They run on the machine Snakemake runs on
(`localrules`), at most `--resources openneuro_downloads=N` at once, and every rule reading
the dataset takes their outputs as inputs (`dataset_inputs`).
"""


localrules:
    fetch_shared,
    fetch_subject,


rule fetch_shared:
    output:
        f"{RESULTS}/{{dataset}}/fetch/shared.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/fetch_shared.log",
    conda:
        "../envs/fetch.yaml"
    resources:
        openneuro_downloads=1,
    params:
        root=lambda wc: DATASETS[wc.dataset]["path"],
        accession=lambda wc: DATASETS[wc.dataset]["accession"],
        endpoint=lambda wc: DATASETS[wc.dataset]["s3_endpoint"],
        bucket=lambda wc: DATASETS[wc.dataset]["s3_bucket"],
        files=lambda wc: FETCH[wc.dataset]["groups"].get("shared", []),
    script:
        "../scripts/fetch_dataset.py"


use rule fetch_shared as fetch_subject with:
    output:
        f"{RESULTS}/{{dataset}}/fetch/subjects/{{subject}}.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/fetch_{{subject}}.log",
    params:
        root=lambda wc: DATASETS[wc.dataset]["path"],
        accession=lambda wc: DATASETS[wc.dataset]["accession"],
        endpoint=lambda wc: DATASETS[wc.dataset]["s3_endpoint"],
        bucket=lambda wc: DATASETS[wc.dataset]["s3_bucket"],
        files=lambda wc: FETCH[wc.dataset]["groups"].get(wc.subject, []),
