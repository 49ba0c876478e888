"""Encoding models: one job per (subject, model, layer) fits each of the model's train fractions.

Each fit keeps its own files, `fits/<subject>/<model>/layer-<L>_frac-<f>.npz` and `.json`, so
the score table and everything downstream read one file pair per (subject, model, layer,
fraction). A job fits the fractions in turn and builds each story's design matrix once for
all of them. Output patterns are static, so there is one rule per distinct fraction list
(FIT_RULES, rules/common.smk): `fit_encoding_model` for the top-level `train_fractions`,
`fit_encoding_model_1`, ... for models that list their own (e.g. `[1.0]`), each restricted
to its models by the `model` wildcard. Grouping keeps the DAG small: Snakemake spends a few
milliseconds per job, and a fit job per fraction made `snakemake -n` of the paper's config
take minutes (BENCHMARKS.md).
"""

FIT_PREFIX = f"{RESULTS}/{{dataset}}/fits/{{subject}}/{{model}}/layer-{{layer}}"

for _suffix, (_fractions, _models) in FIT_RULES.items():

    rule:
        name:
            f"fit_encoding_model{_suffix}"
        input:
            data=dataset_inputs,
            features=feature_file,
            manifest=f"{RESULTS}/{{dataset}}/manifest/subjects/{{subject}}.json",
            ceiling=f"{RESULTS}/{{dataset}}/ceilings/{{subject}}.npz",
        output:
            voxels=[f"{FIT_PREFIX}_frac-{f}.npz" for f in _fractions],
            rows=[f"{FIT_PREFIX}_frac-{f}.json" for f in _fractions],
        log:
            f"{RESULTS}/{{dataset}}/logs/fit/{{subject}}/{{model}}/layer-{{layer}}.log",
        benchmark:
            f"{RESULTS}/{{dataset}}/benchmarks/fit/{{subject}}/{{model}}/layer-{{layer}}.tsv"
        wildcard_constraints:
            dataset=STORY_RE,
            model=_models,
        conda:
            "../envs/fit.yaml"
        threads: 1
        resources:
            **partition("fit"),
            mem_mb=fit_mem,
            gpu=CFG["cluster"]["fit_gpus"],
            runtime=CFG["cluster"]["fit_runtime"] * len(_fractions),
        params:
            fractions=_fractions,
            root=dataset_root,
            format=lambda wc: DATASETS[wc.dataset]["format"],
            options=dataset_options,
            subjects=fit_subjects,
            entry=lambda wc: MODELS[wc.model],
            temporal=CFG["temporal"],
            fitting=CFG["fitting"],
            scoring=CFG["scoring"],
            seed=CFG["seed"],
        script:
            "../scripts/fit_encoding_model.py"
