"""Configuration, DAG expansions and input functions shared by every rule."""

import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from lmbrain.baselines import expand_model_widths, is_baseline
from lmbrain.config import (
    canonical,
    check_name,
    fraction_label,
    resolve_layers,
    validate_config,
)
from lmbrain.datasets import ADAPTERS, adapter_options, index_path, open_dataset
from lmbrain.datasets.base import AVERAGE_SUBJECT
from lmbrain.fetch import RemoteFile, S3Source, is_fetched, make_plan, plan_summary
from lmbrain.encoding import cv_shortfall
from lmbrain.errors import LmbrainError
from lmbrain.features import feature_id, feature_spec
from lmbrain.models import model_id, read_modality, read_n_layers
from lmbrain.resources import extraction_gpus as gpus_for_extraction
from lmbrain.resources import extraction_mem_mb, fit_job_mem_mb
from lmbrain.snakemake_fixes import bound_cores
from lmbrain.xvariables import model_metadata, parse_x_variables, without_metadata

# `--cores N` bounds the threads of the jobs running at once (Snakemake >= 9.10 lets it grow:
# lmbrain.snakemake_fixes)
bound_cores()

try:
    CFG = validate_config(config, source=(workflow.configfiles or [None])[-1])
    CFG["models"] = expand_model_widths(CFG["models"], CFG["cache"])  # width: models
    # params compare as strings: key order must not matter (lmbrain.config.canonical)
    CFG = canonical(CFG)
except LmbrainError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

RESULTS = CFG["results"]
CACHE = CFG["cache"]
DATASETS = CFG["datasets"]
# `metadata:` (perplexity, training tokens...) changes no feature and no fit: the entries the
# rules see lack it, and only the aggregate rules get it (MODEL_METADATA, lmbrain.xvariables)
MODELS = {model_id(entry): without_metadata(entry) for entry in CFG["models"]}
MODEL_METADATA = model_metadata(CFG["models"], list(MODELS))
try:
    X_VARIABLES = parse_x_variables(CFG["aggregate"]["x_variables"], MODEL_METADATA)
except LmbrainError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None
FRACTIONS = [fraction_label(f) for f in CFG["train_fractions"]]


# -- datasets fetched from OpenNeuro (`source:`; rules/fetch.smk) ------------------------------
SPEECH = any(
    not is_baseline(entry) and read_modality(entry, CACHE) == "audio"
    for entry in CFG["models"]
)


def fetch_marker(name, group):
    """The output of a download job: `shared` (files of no subject) or a subject's."""
    if group == "shared":
        return f"{RESULTS}/{name}/fetch/shared.json"
    return f"{RESULTS}/{name}/fetch/subjects/{group}.json"


def _fetch_plan(name):
    """List the bucket once (or reuse the cached plan when all is fetched), log the plan."""
    spec = DATASETS[name]
    adapter = ADAPTERS[spec["format"]]
    options = adapter_options(spec)
    subjects = None
    if spec["subjects"] != "all":
        subjects = [s for s in spec["subjects"] if s != AVERAGE_SUBJECT]
    patterns, required = adapter.remote_patterns(options, subjects, SPEECH)
    source = S3Source(spec["accession"], spec["s3_endpoint"], spec["s3_bucket"])
    try:
        plan = make_plan(
            source,
            spec["path"],
            patterns,
            required,
            subjects,
            adapter.remote_subject(options),
            f"{RESULTS}/{name}/manifest/fetch_plan.json",
        )
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None
    cached = "" if plan["listed"] else " (cached plan, bucket not listed)"
    logger.info(
        f"dataset '{name}' from {source.url()}: {plan_summary(plan, spec['path'])}{cached}"
    )
    groups = {}
    for f in plan["files"]:
        groups.setdefault(f["group"], []).append([f["key"], f["size"], f["etag"]])
    for group, files in groups.items():
        # a group with a file missing or changed since its job ran: that job runs again
        marker = Path(fetch_marker(name, group))
        if marker.exists() and not all(
            is_fetched(spec["path"], RemoteFile(*f)) for f in files
        ):
            marker.unlink()
    plan["groups"] = groups
    return plan


FETCH = {name: _fetch_plan(name) for name in DATASETS if "source" in DATASETS[name]}


def fetch_pending(name):
    """Whether a fetched dataset still misses files: it is opened only after the fetch."""
    return name in FETCH and not FETCH[name]["complete"]


def _dataset(name):
    """The adapter of a dataset on disk, opened once per workflow run."""
    if name not in _OPENED:
        spec = DATASETS[name]
        try:
            _OPENED[name] = open_dataset(spec["path"], spec["format"], spec)
        except LmbrainError as exc:
            raise WorkflowError(f"dataset '{name}': {exc}") from None
    return _OPENED[name]


def _subjects(name):
    spec = DATASETS[name]
    if "simulate" in spec:
        if spec["subjects"] != "all":
            return list(spec["subjects"])
        n = spec["simulate"]["n_subjects"]
        return [f"sub-{i:02d}" for i in range(1, n + 1)]
    explicit = spec["subjects"] != "all"
    if fetch_pending(name):
        # not on disk yet: the config's subjects or the bucket's; the validate rules check
        # them after the fetch, and the next start applies `_fittable`
        subjects = list(spec["subjects"]) if explicit else list(FETCH[name]["subjects"])
        dataset = None
    else:
        dataset = _dataset(name)
        subjects = list(spec["subjects"]) if explicit else list(dataset.subjects)
    try:  # the dataset's own list (dataset.yaml, folder names) becomes output paths too
        subjects = [check_name(f"datasets.{name}.subjects", s) for s in subjects]
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None
    if dataset is None:
        return subjects
    return _fittable(name, dataset, subjects, explicit)


def _fittable(name, dataset, subjects, explicit):
    """The subjects whose stories allow the configured `fitting.cv` (adapters offering
    `subject_stories`). Others are skipped with a log line and a manifest entry
    (`skipped_subjects` of manifest/stimuli.json) before any job starts, or stop the run
    if `subjects:` lists them."""
    if getattr(dataset, "subject_stories", None) is None:
        return subjects
    cv = CFG["fitting"]["cv"]
    kept = []
    for subject in subjects:
        reason = cv_shortfall(dataset, subject, cv, subjects)
        if reason is None:
            kept.append(subject)
            continue
        if explicit:
            raise WorkflowError(
                f"dataset '{name}': subject '{subject}' (listed in `subjects:`) cannot be "
                f"fitted with fitting.cv: {cv}: {reason}; remove it from `subjects:`"
            )
        logger.warning(f"dataset '{name}': skipping subject {subject}: {reason}")
        SKIPPED_SUBJECTS[name].append({"subject": subject, "reason": reason})
    return kept


def _layers(mid):
    entry = MODELS[mid]
    if is_baseline(entry):
        return [0]
    try:
        n_layers = read_n_layers(entry, CACHE)
    except LmbrainError as exc:
        raise WorkflowError(f"model '{mid}': {exc}") from None
    spec = entry.get("layers", CFG["layers"])
    try:
        return resolve_layers(spec, n_layers)
    except ValueError as exc:
        raise WorkflowError(f"model '{mid}': {exc}") from None


_OPENED = {}
SKIPPED_SUBJECTS = {name: [] for name in DATASETS}
SUBJECTS = {name: _subjects(name) for name in DATASETS}
INDEX_FILES = {}


def _check_dataset(name):
    """Validate a dataset on disk before any job runs (simulated ones are checked by rule)."""
    spec = DATASETS[name]
    if "simulate" in spec or fetch_pending(name):
        return  # a fetched dataset is validated by its validate rules, after the fetch
    dataset = _dataset(name)
    try:
        dataset.validate(SUBJECTS[name])
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None
    INDEX_FILES[name] = str(index_path(dataset))


for _name in DATASETS:
    _check_dataset(_name)
LAYERS = {mid: _layers(mid) for mid in MODELS}
BANDED = {spec["name"]: spec for spec in CFG["banded"]}


def banded_bands(name):
    """Bands of a banded model: model id, resolved layer and output label each."""
    out = []
    for i, band in enumerate(BANDED[name]["bands"]):
        mid = band["model"]
        try:
            n_layers = read_n_layers(MODELS[mid], CACHE)
            (layer,) = resolve_layers([band["layer"]], n_layers)
        except (LmbrainError, ValueError) as exc:
            raise WorkflowError(f"banded model '{name}', band {i}: {exc}") from None
        out.append({"model": mid, "layer": layer, "label": band.get("name", mid)})
    return out


def banded_feature_files(wildcards):
    """Feature files of a banded model's bands, in band order."""
    return [
        feature_path(wildcards.dataset, b["model"])
        for b in banded_bands(wildcards.banded)
    ]


def banded_fits(wildcards):
    """Every (subject, banded model) fit of a dataset."""
    return [
        f"{RESULTS}/{wildcards.dataset}/banded/{subject}/{name}.npz"
        for subject in SUBJECTS[wildcards.dataset]
        for name in BANDED
    ]


def dataset_root(wildcards):
    """The dataset folder; a simulated dataset is produced by `simulate_dataset`."""
    return DATASETS[wildcards.dataset]["path"]


def dataset_inputs(wildcards):
    """Inputs of the dataset-reading rules (the simulated folder, the download jobs' outputs
    of a fetched dataset, or the dataset's index file: dataset.yaml, respdict.json, ...).
    """
    spec = DATASETS[wildcards.dataset]
    if "simulate" in spec:
        return spec["path"]
    if wildcards.dataset in FETCH:  # the download jobs' outputs (rules/fetch.smk)
        groups = FETCH[wildcards.dataset]["groups"]
        return [fetch_marker(wildcards.dataset, g) for g in sorted(groups)]
    return INDEX_FILES[wildcards.dataset]


def dataset_options(wildcards):
    """The adapter options of a dataset's config block (tr, trim, test stories, ...)."""
    return adapter_options(DATASETS[wildcards.dataset])


def fit_subjects(wildcards):
    """The training pool of `fitting.cv: by_subject` (None otherwise, so that adding a
    subject does not rerun the other subjects' fits)."""
    if CFG["fitting"]["cv"] != "by_subject":
        return None
    return SUBJECTS[wildcards.dataset]


def model_fractions(mid):
    """Train fractions fitted for a model (its own list, or the top-level one)."""
    own = MODELS[mid].get("train_fractions")
    return FRACTIONS if own is None else [fraction_label(f) for f in own]


TRIAL_FORMATS = ("trials", "nsd")


def _alternatives(names):
    """A regex matching exactly these names (one that matches nothing when empty)."""
    return "|".join(re.escape(n) for n in sorted(set(names))) or "(?!x)x"


def _fit_rules():
    """The fit rules, one per distinct fraction list: ``{suffix: (fractions, model regex)}``.

    A fit job fits every train fraction of one (subject, model, layer) and its outputs are
    one file pair per fraction, so models with different lists need different rules
    (rules/fit.smk, named `fit_encoding_model<suffix>`): `fit_encoding_model` fits the
    top-level `train_fractions` (it matches no model when all list their own),
    `fit_encoding_model_1`, `_2`, ... the other lists, in the order the models name them.
    Each rule's `model` wildcard matches only its models.
    """
    lists = [tuple(FRACTIONS)] + [tuple(model_fractions(mid)) for mid in MODELS]
    rules = {}
    for fractions in dict.fromkeys(lists):
        suffix = f"_{len(rules)}" if rules else ""
        models = [mid for mid in MODELS if tuple(model_fractions(mid)) == fractions]
        rules[suffix] = (list(fractions), _alternatives(models))
    return rules


FIT_RULES = _fit_rules()
# the fit rules serve story datasets; rules/trials.smk fits trial datasets
STORY_RE = _alternatives(
    n for n, s in DATASETS.items() if s["format"] not in TRIAL_FORMATS
)


def model_fit_prefixes(dataset, subject, mid):
    """Output path prefixes of a model's fits of one subject (every layer and fraction)."""
    base = f"{RESULTS}/{dataset}/fits/{subject}/{mid}"
    fractions = model_fractions(mid)
    return [
        f"{base}/layer-{layer}_frac-{f}" for layer in LAYERS[mid] for f in fractions
    ]


def fit_prefixes(dataset):
    """Every (subject, model, layer, fraction) fit of a dataset, as output path prefixes."""
    return [
        prefix
        for subject in SUBJECTS[dataset]
        for mid in MODELS
        for prefix in model_fit_prefixes(dataset, subject, mid)
    ]


def fit_rows(wildcards):
    """Summary rows of every fit of a dataset (inputs of the aggregate rules)."""
    return [f"{prefix}.json" for prefix in fit_prefixes(wildcards.dataset)]


def voxel_layer_maps(wildcards):
    """Map folders holding the per-voxel best-layer summaries (best_layers.tsv), if enabled."""
    if not CFG["aggregate"]["voxel_best_layer"]:
        return []
    base = f"{RESULTS}/{wildcards.dataset}/maps"
    return [f"{base}/{s}/{mid}" for s in SUBJECTS[wildcards.dataset] for mid in MODELS]


def all_outputs():
    out = []
    for name in DATASETS:
        base = f"{RESULTS}/{name}"
        out += [f"{base}/summary/scores.tsv", f"{base}/summary/scaling_fits.tsv"]
        out.append(f"{base}/summary/best_layers.tsv")
        out += [f"{base}/plots/{p}.png" for p in PLOTS]
        if BANDED and DATASETS[name]["format"] not in ("trials", "nsd"):
            out += [f"{base}/summary/banded.tsv", f"{base}/plots/banded.png"]
        out += map_outputs(name)  # rules/maps.smk
        out.append(f"{base}/summary/config.yaml")
        if (
            name in FETCH
        ):  # targets too: a marker removed at start (file gone) runs its job
            out += [fetch_marker(name, g) for g in sorted(FETCH[name]["groups"])]
        out += EXTRA_TARGETS[name]  # rules/extras.smk
    return out


PLOTS = ["scaling_models", "scaling_data", "layers", "asymmetry", "asymmetry_depth"]


# -- extraction: feature files keyed by what determines them ---------------------------------
# Every model entry maps to a feature id (lmbrain.features.feature_id): its source, GGUF file,
# untrained seed and extraction settings, not its `name`, so two entries (or two configs)
# naming the same model share one feature file; the fits stay labelled by the name.
# Baselines (rules/extras.smk) have no language model: their feature file is named by their id.
FEATURE_SPECS = {
    mid: feature_spec(entry, CFG["features"], read_modality(entry, CACHE))
    for mid, entry in MODELS.items()
    if not is_baseline(entry)
}


def _stored_layers(mid):
    """Hidden states `features.store_layers: fitted` keeps: the fitted and banded layers."""
    layers = set(LAYERS[mid])
    for name in BANDED:
        layers |= {b["layer"] for b in banded_bands(name) if b["model"] == mid}
    return sorted(layers)


# part of the feature id: another layer choice re-extracts
if CFG["features"]["store_layers"] == "fitted":
    for _mid, _spec in FEATURE_SPECS.items():
        _spec["layers"] = _stored_layers(_mid)
FEATURE_IDS = {mid: feature_id(spec) for mid, spec in FEATURE_SPECS.items()}
FEATURE_IDS.update({mid: mid for mid, entry in MODELS.items() if is_baseline(entry)})
FEATURES = {FEATURE_IDS[mid]: spec for mid, spec in FEATURE_SPECS.items()}


def feature_path(dataset, mid):
    """The feature file a model's fits read."""
    return f"{RESULTS}/{dataset}/features/{FEATURE_IDS[mid]}.h5"


def feature_file(wildcards):
    """Input function: the feature file of `{model}` in `{dataset}`."""
    return feature_path(wildcards.dataset, wildcards.model)


def extraction_gpus():
    """GPUs an extraction job holds (`--resources gpu=1` runs them one at a time)."""
    return gpus_for_extraction(
        CFG["features"]["device"], CFG["cluster"]["extraction_gpus"]
    )


def extraction_mem(wildcards, attempt):
    """Memory (MB) of an extraction job, scaled by the model's size and the attempt."""
    return extraction_mem_mb(FEATURES[wildcards.feature], CACHE, attempt)


def fit_mem(wildcards, input, attempt):
    """Memory (MB) of a fit job, scaled by TRs x (features + voxels) and the attempt."""
    return fit_job_mem_mb(
        input.manifest,
        input.features,
        wildcards.subject,
        CFG["temporal"],
        CFG["fitting"],
        attempt,
    )


def partition(stage):
    """`slurm_partition` resource of `extraction` or `fit` jobs (`cluster.<stage>_partition`).

    Empty when unset, so that the profile's default (`$SLURM_PARTITION`) applies: a rule's
    own resource would replace the default even if it evaluated to nothing.
    """
    value = CFG["cluster"][f"{stage}_partition"]
    return {} if value is None else {"slurm_partition": value}


def resolved_config(dataset):
    """The configuration a dataset's results come from, as recorded in the report.

    The validated config (every default filled in) without the execution-only `cluster`
    section, restricted to this dataset, plus what the workflow derived from it: each
    model's feature file, layers and train fractions, and the subjects fitted.
    """
    record = {
        key: value for key, value in CFG.items() if key not in ("cluster", "datasets")
    }
    record["dataset"] = {"name": dataset, **DATASETS[dataset]}
    record["resolved"] = {
        "subjects": list(SUBJECTS[dataset]),
        "models": {
            mid: {
                "feature_file": feature_path(dataset, mid),
                "layers": list(LAYERS[mid]),
                "train_fractions": model_fractions(mid),
            }
            for mid in MODELS
        },
    }
    return record


def methods():
    """Settings behind the score table, quoted by its report caption (report/scores.rst)."""
    return {
        "context_tokens": CFG["features"]["context_tokens"],
        "temporal": CFG["temporal"],
        "alphas": CFG["fitting"]["alphas"],
        "n_folds": CFG["fitting"]["n_folds"],
        "min_cc_max": CFG["scoring"]["min_cc_max"],
        "reliable_fraction": CFG["scoring"]["reliable_fraction"],
        "significance": CFG["scoring"]["significance"],
    }
