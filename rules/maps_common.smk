"""Input functions and DAG expansions of the brain-map stage (rules/maps.smk)."""

from functools import cache

from lmbrain.brainmaps import map_kind as _kind_of_geometry
from lmbrain.roi import rois_from_labels


@cache
def _opened(name):
    spec = DATASETS[name]
    return open_dataset(spec["path"], spec["format"], spec)


@cache
def map_kind(name, subject):
    """'volume', 'surface' or 'vector': the form of a subject's maps (see lmbrain.brainmaps)."""
    if "simulate" in DATASETS[name]:
        # the story simulation writes a mask (lmbrain.demo.demo_mask); the trial one none
        return "vector" if DATASETS[name]["format"] in ("trials", "nsd") else "volume"
    if fetch_pending(
        name
    ):  # not on disk yet: the form its adapter gives (lmbrain.datasets)
        spec = DATASETS[name]
        surface = spec["format"] == "narratives" and spec.get("surface", True)
        return "surface" if surface else "volume"
    dataset = _opened(name)
    if not hasattr(dataset, "geometry"):
        return "vector"
    try:
        return _kind_of_geometry(dataset.geometry(subject))
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None


def model_fits(wildcards):
    """Per-voxel files of every fit of a (subject, model): the inputs of its map job."""
    prefixes = model_fit_prefixes(wildcards.dataset, wildcards.subject, wildcards.model)
    return [f"{prefix}.npz" for prefix in prefixes]


def model_fit_rows(wildcards):
    """Summary rows (.json) of every fit of a (subject, model): n_layers of the best-layer map."""
    return [f[: -len(".npz")] + ".json" for f in model_fits(wildcards)]


def subject_maps(wildcards):
    """Map folders of every model of a subject (inputs of its map figure)."""
    base = f"{RESULTS}/{wildcards.dataset}/maps/{wildcards.subject}"
    return [f"{base}/{mid}" for mid in MODELS]


def roi_config(dataset):
    """The dataset's ROI atlas and masks from the config (empty when none)."""
    spec = DATASETS[dataset]
    return {k: spec[k] for k in ("roi_atlas", "roi_masks") if spec.get(k)}


def roi_inputs(wildcards):
    """Atlas, label table and ROI masks of every subject, as inputs."""
    spec = roi_config(wildcards.dataset)
    paths = list(spec.get("roi_atlas", {}).values()) + list(
        spec.get("roi_masks", {}).values()
    )
    return sorted(
        {p.format(subject=s) for p in paths for s in SUBJECTS[wildcards.dataset]}
    )


@cache
def has_rois(name):
    """Whether ROI summaries can be made: an atlas or masks in the config, or `roi` labels."""
    if roi_config(name) or "simulate" in DATASETS[name]:
        return True
    if fetch_pending(name):  # the public adapters' voxels carry no ROI labels
        return False
    try:
        dataset = _opened(name)
        return any(
            bool(rois_from_labels(dataset.voxels(s).get("roi", [])))
            for s in SUBJECTS[name]
        )
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None


def map_outputs(name):
    """Targets of this stage for one dataset (added to `all_outputs`)."""
    out = [f"{RESULTS}/{name}/plots/brainmap_{s}.png" for s in SUBJECTS[name]]
    if has_rois(name):
        out += [
            f"{RESULTS}/{name}/summary/scores_roi.tsv",
            f"{RESULTS}/{name}/summary/scaling_fits_roi.tsv",
            f"{RESULTS}/{name}/summary/scaling_extrapolation_roi.tsv",
            f"{RESULTS}/{name}/plots/roi.png",
            f"{RESULTS}/{name}/plots/roi_scaling.png",
        ]
    return out
