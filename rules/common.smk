"""Configuration, DAG expansions and input functions shared by every rule."""

import shutil
from pathlib import Path

from snakemake.exceptions import WorkflowError

from lmbrain.baselines import expand_model_widths, is_baseline
from lmbrain.config import fraction_label, resolve_layers, validate_config
from lmbrain.datasets import open_dataset
from lmbrain.errors import LmbrainError
from lmbrain.models import model_id, read_n_layers, resolve_source

try:
    CFG = validate_config(config, source=(workflow.configfiles or [None])[-1])
    CFG["models"] = expand_model_widths(CFG["models"], CFG["cache"])  # width: models
except LmbrainError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

RESULTS = CFG["results"]
CACHE = CFG["cache"]
DATASETS = CFG["datasets"]
MODELS = {model_id(entry): entry for entry in CFG["models"]}
FRACTIONS = [fraction_label(f) for f in CFG["train_fractions"]]


def _subjects(name):
    spec = DATASETS[name]
    if spec["subjects"] != "all":
        return list(spec["subjects"])
    if "simulate" in spec:
        n = spec["simulate"]["n_subjects"]
        return [f"sub-{i:02d}" for i in range(1, n + 1)]
    try:
        return open_dataset(spec["path"], spec["format"]).subjects
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None


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


SUBJECTS = {name: _subjects(name) for name in DATASETS}


def _check_dataset(name):
    """Validate a dataset on disk before any job runs (simulated ones are checked by rule)."""
    spec = DATASETS[name]
    if "simulate" in spec:
        return
    try:
        open_dataset(spec["path"], spec["format"]).validate(SUBJECTS[name])
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None


for _name in DATASETS:
    _check_dataset(_name)
LAYERS = {mid: _layers(mid) for mid in MODELS}


def dataset_root(wildcards):
    """The dataset folder; a simulated dataset is produced by `simulate_dataset`."""
    return DATASETS[wildcards.dataset]["path"]


def dataset_inputs(wildcards):
    """Inputs of the dataset-reading rules (the simulated folder, or dataset.yaml)."""
    spec = DATASETS[wildcards.dataset]
    if "simulate" in spec:
        return spec["path"]
    return str(Path(spec["path"]) / "dataset.yaml")


def model_fractions(mid):
    """Train fractions fitted for a model (its own list, or the top-level one)."""
    own = MODELS[mid].get("train_fractions")
    return FRACTIONS if own is None else [fraction_label(f) for f in own]


def fit_prefixes(dataset):
    """Every (subject, model, layer, fraction) fit of a dataset, as output path prefixes."""
    out = []
    for subject in SUBJECTS[dataset]:
        for mid in MODELS:
            for layer in LAYERS[mid]:
                for frac in model_fractions(mid):
                    out.append(
                        f"{RESULTS}/{dataset}/fits/{subject}/{mid}/layer-{layer}_frac-{frac}"
                    )
    return out


def fit_rows(wildcards):
    """Summary rows of every fit of a dataset (inputs of the aggregate rules)."""
    return [f"{prefix}.json" for prefix in fit_prefixes(wildcards.dataset)]


def all_outputs():
    out = []
    for name in DATASETS:
        base = f"{RESULTS}/{name}"
        out += [f"{base}/summary/scores.tsv", f"{base}/summary/scaling_fits.tsv"]
        out += [f"{base}/plots/{p}.png" for p in PLOTS]
        out += EXTRA_TARGETS[name]  # rules/extras.smk
    return out


PLOTS = ["scaling_models", "scaling_data", "layers", "asymmetry"]


def extraction_gpus():
    """GPUs an extraction job holds (`--resources gpu=1` runs them one at a time).

    `device: cuda` always asks for one; `device: auto` asks for one only where the DAG is
    built on a machine with an NVIDIA driver, so a CPU-only run never waits for a GPU.
    """
    device = CFG["features"]["device"]
    if device == "auto":
        return int(shutil.which("nvidia-smi") is not None)
    return int(device == "cuda")


def extraction_mem_mb(mid):
    """Memory request of an extraction job (MB): a float32 copy of the weights plus room.

    The weights' size is estimated from the model's files on disk where they are local
    (GGUF files are quantized, hence the factor); hub models get a flat 16 GB.
    """
    entry = MODELS[mid]
    try:
        source, gguf = resolve_source(entry, CACHE)
    except LmbrainError:
        return 16000
    if gguf is not None and Path(gguf).is_file():
        return int(4000 + 8 * Path(gguf).stat().st_size / 1e6)
    folder = Path(source)
    if folder.is_dir():
        weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
        weights += sum(p.stat().st_size for p in folder.rglob("*.bin"))
        return int(4000 + 2 * weights / 1e6)
    return 16000


def fit_mem_mb(input):
    """Memory request of a fit job, scaled by the size of its feature file."""
    size = Path(input.features).stat().st_size if Path(input.features).exists() else 0
    return int(2000 + 4 * size / 1e6)
