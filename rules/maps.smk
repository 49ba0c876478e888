"""Brain maps: every fit's scores in the subject's space, the best model's map, ROI summaries.

A fit's map is a 4-D NIfTI (volume data), a GIfTI per hemisphere (surface data) or a plain
vector (no geometry), as `lmbrain.brainmaps` describes; which one is decided per subject when
the DAG is built (`map_kind`), and one of three rules with the same script writes it. Maps are
written per fit (they are small and cheap) so any layer or training fraction can be opened.
"""


include: "maps_common.smk"


rule brain_map_volume:
    input:
        fit=f"{RESULTS}/{{dataset}}/fits/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.npz",
        data=dataset_inputs,
    output:
        **map_paths(MAP_PREFIX, "volume"),
    log:
        f"{RESULTS}/{{dataset}}/logs/maps/{{subject}}/{{model}}/layer-{{layer}}_frac-{{fraction}}.log",
    conda:
        "../envs/plot.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        prefix=lambda wc: MAP_PREFIX.format(**wc),
    script:
        "../scripts/write_brain_map.py"


use rule brain_map_volume as brain_map_surface with:
    output:
        **map_paths(MAP_PREFIX, "surface"),


use rule brain_map_volume as brain_map_vector with:
    output:
        **map_paths(MAP_PREFIX, "vector"),


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
        rows=fit_rows,
        data=dataset_inputs,
        rois=roi_inputs,
    output:
        f"{RESULTS}/{{dataset}}/summary/scores_roi.tsv",
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_rois.log",
    conda:
        "../envs/fit.yaml"
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        rois=lambda wc: roi_config(wc.dataset),
    script:
        "../scripts/summarize_rois.py"


rule plot_rois:
    input:
        rois=f"{RESULTS}/{{dataset}}/summary/scores_roi.tsv",
        scores=f"{RESULTS}/{{dataset}}/summary/scores.tsv",
    output:
        report(
            f"{RESULTS}/{{dataset}}/plots/roi.png",
            caption="../report/roi.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/plot_rois.log",
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_rois.py"
