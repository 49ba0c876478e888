"""Alignment diagnostic (lmbrain.alignment): a word-locked model refitted at shifted word times.

One job per (dataset, subject) refits every lag and feature set; the summary collects the
curves into summary/alignment.tsv and plots/alignment.png and logs a warning naming the
dataset when the best lag is not 0 (README, "Check the alignment"). On by default for the
datasets read from disk (`alignment.enabled: auto`).
"""

from lmbrain.alignment import canonical_settings, design_settings, runs_on
from lmbrain.resources import alignment_job_mem_mb

try:
    ALIGNMENT = canonical_settings(CFG["alignment"])
except LmbrainError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
ALIGNED = [name for name, spec in DATASETS.items() if runs_on(CFG["alignment"], spec)]
for _name in ALIGNED:
    EXTRA_TARGETS[_name] += [
        f"{RESULTS}/{_name}/summary/alignment.tsv",
        f"{RESULTS}/{_name}/plots/alignment.png",
    ]


# memory of an alignment job: a fit of the widest feature set (lmbrain.resources)
ALIGNMENT_WIDTH = (
    ALIGNMENT["width"] if "random_embedding" in ALIGNMENT["features"] else 1
)
# the temporal settings of its designs (the HRF's ignore the `temporal` section)
ALIGNMENT_TEMPORAL = design_settings(CFG["temporal"], ALIGNMENT["method"])


rule alignment_curve:
    input:
        data=dataset_inputs,
        manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
    output:
        f"{RESULTS}/{{dataset}}/alignment/{{subject}}.tsv",
    log:
        f"{RESULTS}/{{dataset}}/logs/alignment/{{subject}}.log",
    wildcard_constraints:
        dataset=_alternatives(ALIGNED),
    conda:
        "../envs/fit.yaml"
    threads: 1
    resources:
        **partition("fit"),
        mem_mb=lambda wc, input, attempt: alignment_job_mem_mb(
            input.manifest,
            wc.subject,
            ALIGNMENT_WIDTH,
            ALIGNMENT_TEMPORAL,
            CFG["fitting"],
            attempt,
        ),
    params:
        root=dataset_root,
        format=lambda wc: DATASETS[wc.dataset]["format"],
        options=dataset_options,
        subjects=fit_subjects,
        settings={k: ALIGNMENT[k] for k in ("lags_s", "features", "method", "width")},
        temporal=ALIGNMENT_TEMPORAL,
        fitting=CFG["fitting"],
        seed=CFG["seed"],
    script:
        "../scripts/alignment_curve.py"


rule summarize_alignment:
    input:
        tables=lambda wc: [
            f"{RESULTS}/{wc.dataset}/alignment/{subject}.tsv"
            for subject in SUBJECTS[wc.dataset]
        ],
        manifest=f"{RESULTS}/{{dataset}}/manifest/stimuli.json",
    output:
        table=report(
            f"{RESULTS}/{{dataset}}/summary/alignment.tsv",
            caption="../report/alignment_table.rst",
            category="Tables",
            subcategory="{dataset}",
        ),
        plot=report(
            f"{RESULTS}/{{dataset}}/plots/alignment.png",
            caption="../report/alignment.rst",
            category="Figures",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/{{dataset}}/logs/summarize_alignment.log",
    wildcard_constraints:
        dataset=_alternatives(ALIGNED),
    conda:
        "../envs/fit.yaml"
    params:
        tolerance_s=ALIGNMENT["tolerance_s"],
        settings=ALIGNMENT,
    script:
        "../scripts/summarize_alignment.py"
