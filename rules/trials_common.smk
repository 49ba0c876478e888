"""Configuration and input functions of the trial-dataset rules (rules/trials.smk)."""

from lmbrain.errors import LmbrainError
from lmbrain.sentence_features import check_baselines

TRIAL_DATASETS = [n for n, s in DATASETS.items() if s["format"] in TRIAL_FORMATS]
BASELINES = {
    n: {b["name"]: b for b in DATASETS[n]["trials"]["baselines"]}
    for n in TRIAL_DATASETS
}
for _name in TRIAL_DATASETS:
    try:
        check_baselines(
            DATASETS[_name]["trials"]["baselines"],
            list(MODELS),
            f"datasets.{_name}.trials.baselines",
        )
    except LmbrainError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None


TRIAL_RE = _alternatives(TRIAL_DATASETS)
MODEL_RE = _alternatives(MODELS)
BASELINE_RE = _alternatives(b for n in TRIAL_DATASETS for b in BASELINES[n])
BASELINE_FRACTION = fraction_label(1.0)


def trial_model_facts(dataset, mid):
    """family / untrained / baseline flags of a model or baseline id on a trial dataset."""
    if mid in BASELINES[dataset]:
        return {"family": "baseline", "untrained": False, "baseline": True}
    entry = MODELS[mid]
    return {
        "family": entry.get("family", mid),
        "untrained": bool(entry.get("untrained", False)),
        "baseline": False,
    }


def baseline_rows(wildcards):
    """Summary rows of the baseline fits of a trial dataset (one layer, all training data)."""
    base = f"{RESULTS}/{wildcards.dataset}/fits"
    return [
        f"{base}/{subject}/{name}/layer-0_frac-{BASELINE_FRACTION}.json"
        for subject in SUBJECTS[wildcards.dataset]
        for name in BASELINES[wildcards.dataset]
    ]


def rsa_models(dataset):
    """Model and baseline ids of a trial dataset's RSA, with their layers and flags."""
    out = {
        mid: {"layers": LAYERS[mid], **trial_model_facts(dataset, mid)}
        for mid in MODELS
    }
    for name in BASELINES[dataset]:
        out[name] = {"layers": [0], **trial_model_facts(dataset, name)}
    return out


def trial_outputs():
    """Extra targets of trial datasets: RSA table and plot, baseline scores, searchlight maps."""
    out = []
    for name in TRIAL_DATASETS:
        base = f"{RESULTS}/{name}"
        out += [f"{base}/summary/rsa.tsv", f"{base}/plots/rsa.png"]
        if BASELINES[name]:
            out.append(f"{base}/summary/baseline_scores.tsv")
        if DATASETS[name]["trials"]["searchlight"]["enabled"]:
            for subject in SUBJECTS[name]:
                out += [
                    f"{base}/searchlight/{subject}.nii.gz",
                    f"{base}/plots/searchlight_{subject}.png",
                ]
    return out
