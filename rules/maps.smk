"""Brain maps: every fit's scores in the subject's space, the best model's map, ROI summaries.

A fit's map is a 4-D NIfTI (volume data), a GIfTI per hemisphere (surface data) or a plain
vector (no geometry), as `lmbrain.brainmaps` describes; which one is decided per subject
(`map_kind`). One job per (subject, model) writes the maps of all its fits (every layer and
train fraction) into `maps/<subject>/<model>/`, named like the fits: maps are small and cheap,
and a job per fit would double the DAG (Snakemake's per-job cost, BENCHMARKS.md).

The ROI job also writes the scaling fits and the noise-ceiling extrapolation per ROI
(`lmbrain.roi_scaling`): it already has the ROI rows they start from, and a job of its own
would add a job per dataset for a few seconds of work.

Voxelwise scaling (lmbrain.voxel_scaling): one job per subject fits r against log10(n_params)
in every voxel over the trained, non-baseline models (it reads every such model's fits, so a
new model reruns it) and writes `maps/<subject>/scaling-slope.*`; its form (volume, surface,
vector) is decided per subject, hence one rule per form. Where subjects share a space, their
mean is `maps/scaling-slope_mean.*`. Near-ceiling (lmbrain.near_ceiling): one job per dataset
writes summary/near_ceiling.tsv and plots/ceiling_scatter.png from the score table.
"""


include: "maps_common.smk"


rule brain_maps:
    input:
        fits=model_fits,
        rows=model_fit_rows,
        data=dataset_inputs,
    output:
        directory(f"{RESULTS}/{{dataset}}/maps/{{subject}}/{{model}}"),
    log:
        f"{RESULTS}/{{dataset}}/logs/maps/{{subject}}/{{model}}.log",
    wildcard_constraints:
        model=MAP_MODEL_RE,
    conda:
        "../envs/plot.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        kind=lambda wc: map_kind(wc.dataset, wc.subject),
        voxel_best_layer=CFG["aggregate"]["voxel_best_layer"],
    script:
        "../scripts/write_brain_map.py"


rule plot_brain_map:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
        maps=subject_maps,
    output:
        report(
            f"{RESULTS}/{{dataset}}/plots/brainmap_{{subject}}.png",
            caption="../report/brainmap.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/plot_brain_map_{{subject}}.log",
    conda:
        "../envs/plot.yaml"
    params:
        kind=lambda wc: map_kind(wc.dataset, wc.subject),
        maps_dir=lambda wc: f"{RESULTS}/{wc.dataset}/maps/{wc.subject}",
    script:
        "../scripts/plot_brain_map.py"


rule summarize_rois:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
        data=dataset_inputs,
        rois=roi_inputs,
    output:
        **{
            name: report(
                f"{RESULTS}/{{dataset}}/summary/{table}.tsv",
                caption=f"../report/{table}.rst",
                category="Tables",
                subcategory="{dataset}",
            )
            for name, table in [
                ("scores", "scores_roi"),
                ("fits", "scaling_fits_roi"),
                ("extrapolation", "scaling_extrapolation_roi"),
            ]
        },
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_rois.log",
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        rois=lambda wc: roi_config(wc.dataset),
        n_bootstrap=CFG["aggregate"]["n_bootstrap"],
        seed=CFG["seed"],
        target=CFG["aggregate"]["extrapolation_target"],
    script:
        "../scripts/summarize_rois.py"


rule plot_rois:
    input:
        rois=f"{RESULTS}/{{dataset}}/summary/scores_roi.tsv",
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
        fits=f"{RESULTS}/{{dataset}}/summary/scaling_fits_roi.tsv",
    output:
        **{
            name: report(
                f"{RESULTS}/{{dataset}}/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory="{dataset}",
            )
            for name in ["roi", "roi_scaling"]
        },
    log:
        f"{RESULTS}/{{dataset}}/logs/plot_rois.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_rois.py"


for _kind in ("volume", "surface", "vector"):

    rule:
        name:
            f"scaling_slope_map_{_kind}"
        input:
            fits=slope_map_fits,
            rows=slope_map_rows,
            data=dataset_inputs,
        output:
            list(
                map_paths(
                    f"{RESULTS}/{{dataset}}/maps/{{subject}}/{SLOPE_MAP}", _kind
                ).values()
            ),
        log:
            f"{RESULTS}/{{dataset}}/logs/maps/{{subject}}/{SLOPE_MAP}.log",
        conda:
            "../envs/plot.yaml"
        params:
            root=dataset_root,
            format=lambda wc: DATASETS[wc.dataset]["format"],
            options=dataset_options,
            kind=_kind,
            prefix=lambda wc: slope_map_prefix(wc.dataset, wc.subject),
        script:
            "../scripts/scaling_slope_map.py"


for _kind in ("volume", "surface"):

    rule:
        name:
            f"scaling_slope_group_{_kind}"
        input:
            group_slope_inputs,
        output:
            list(
                map_paths(
                    f"{RESULTS}/{{dataset}}/maps/{SLOPE_MAP}_mean", _kind
                ).values()
            ),
        log:
            f"{RESULTS}/{{dataset}}/logs/maps/{SLOPE_MAP}_mean.log",
        conda:
            "../envs/plot.yaml"
        params:
            kind=_kind,
            prefix=lambda wc: slope_group_prefix(wc.dataset),
            subject_prefixes=lambda wc: [
                slope_map_prefix(wc.dataset, s) for s in SUBJECTS[wc.dataset]
            ],
        script:
            "../scripts/scaling_slope_group.py"


rule plot_slope_map:
    input:
        slope_map_files,
    output:
        report(
            f"{RESULTS}/{{dataset}}/plots/slope_map_{{subject}}.png",
            caption="../report/slope_map.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/plot_slope_map_{{subject}}.log",
    conda:
        "../envs/plot.yaml"
    params:
        kind=lambda wc: map_kind(wc.dataset, wc.subject),
        prefix=lambda wc: slope_map_prefix(wc.dataset, wc.subject),
    script:
        "../scripts/plot_slope_map.py"


rule near_ceiling:
    input:
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/summary/near_ceiling.tsv",
            caption="../report/near_ceiling.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/ceiling_scatter.png",
            caption="../report/ceiling_scatter.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/near_ceiling.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/near_ceiling.py"
