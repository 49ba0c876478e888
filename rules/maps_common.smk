"""Input functions and DAG expansions of the brain-map stage (rules/maps.smk)."""

from functools import cache

from lmbrain.brainmaps import map_kind as _kind_of_geometry
from lmbrain.brainmaps import map_paths
from lmbrain.roi import rois_from_labels
from lmbrain.voxel_scaling import same_space


@cache
def _opened(name):
    spec = DATASETS[name]
    return open_dataset(spec["path"], spec["format"], spec)


@cache
def _geometry(name, subject):
    """A subject's geometry, read once per workflow start (map forms and the group mean)."""
    return _opened(name).geometry(subject)


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
        return _kind_of_geometry(_geometry(name, subject))
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


# -- voxelwise scaling slope maps (lmbrain.voxel_scaling) -----------------------------------
SLOPE_MAP = "scaling-slope"
# the map folders of rules/maps.smk are `maps/<subject>/<model>`: only model ids name them
# (a slope map `maps/<subject>/scaling-slope.nii.gz` is not a model's folder)
MAP_MODEL_RE = _alternatives(MODELS)
# the points of a slope map: trained models that are not baselines (untrained twins and
# baselines have no meaningful parameter count, lmbrain.baselines)
SCALING_MODELS = [
    mid
    for mid, entry in MODELS.items()
    if not entry.get("untrained") and not is_baseline(entry)
]


def slope_map_prefix(dataset, subject):
    """Output prefix of a subject's slope map (lmbrain.brainmaps.map_paths adds extensions)."""
    return f"{RESULTS}/{dataset}/maps/{subject}/{SLOPE_MAP}"


def slope_group_prefix(dataset):
    """Output prefix of a dataset's group-mean slope map."""
    return f"{RESULTS}/{dataset}/maps/{SLOPE_MAP}_mean"


def slope_map_files(wildcards):
    """A subject's slope map files (input of its figure)."""
    kind = map_kind(wildcards.dataset, wildcards.subject)
    return list(
        map_paths(slope_map_prefix(wildcards.dataset, wildcards.subject), kind).values()
    )


def slope_map_fits(wildcards):
    """Per-voxel files of every fit of the subject's trained, non-baseline models."""
    return [
        f"{prefix}.npz"
        for mid in SCALING_MODELS
        for prefix in model_fit_prefixes(wildcards.dataset, wildcards.subject, mid)
    ]


def slope_map_rows(wildcards):
    """Score rows (.json) of the same fits: each model's layer, fraction and n_params."""
    return [f[: -len(".npz")] + ".json" for f in slope_map_fits(wildcards)]


def group_slope_inputs(wildcards):
    """Every subject's slope map files (input of the group mean)."""
    return [
        f
        for s in SUBJECTS[wildcards.dataset]
        for f in map_paths(
            slope_map_prefix(wildcards.dataset, s),
            map_kind(wildcards.dataset, s),
        ).values()
    ]


_SLOPE_NOTES = set()


def has_slope_maps(name):
    """Whether slope maps are made: two or more trained, non-baseline models (else a log line)."""
    if len(SCALING_MODELS) >= 2:
        return True
    if name not in _SLOPE_NOTES:
        _SLOPE_NOTES.add(name)
        logger.info(
            f"dataset '{name}': no voxelwise slope maps ({len(SCALING_MODELS)} trained, "
            "non-baseline model(s); a slope needs two or more sizes)"
        )
    return False


@cache
def slope_group_kind(name):
    """'volume' or 'surface' when the subjects share a space (a group mean is written), else None.

    One surface mesh, or one volume grid (mask shape and affine) across two or more subjects
    (lmbrain.voxel_scaling.same_space); maps without geometry are per subject only.
    """
    subjects = SUBJECTS[name]
    kinds = {map_kind(name, s) for s in subjects}
    if len(subjects) < 2 or len(kinds) != 1 or kinds == {"vector"}:
        return None
    kind = kinds.pop()
    if "simulate" in DATASETS[name]:  # one demo mask for every subject (lmbrain.demo)
        return kind
    if fetch_pending(
        name
    ):  # a public surface dataset is on one mesh; a volume is checked later
        return kind if kind == "surface" else None
    try:
        common = same_space([_geometry(name, s) for s in subjects])
    except LmbrainError as exc:
        raise WorkflowError(f"dataset '{name}': {exc}") from None
    return kind if common else None


def slope_outputs(name):
    """Slope-map targets of one dataset: each subject's figure, and the group mean's files."""
    if not has_slope_maps(name):
        return []
    out = [f"{RESULTS}/{name}/plots/slope_map_{s}.png" for s in SUBJECTS[name]]
    kind = slope_group_kind(name)
    if kind is not None:
        out += list(map_paths(slope_group_prefix(name), kind).values())
    return out


def map_outputs(name):
    """Targets of this stage for one dataset (added to `all_outputs`)."""
    out = [f"{RESULTS}/{name}/plots/brainmap_{s}.png" for s in SUBJECTS[name]]
    out += [
        f"{RESULTS}/{name}/summary/near_ceiling.tsv",
        f"{RESULTS}/{name}/plots/ceiling_scatter.png",
    ]
    out += slope_outputs(name)
    if has_rois(name):
        out += [
            f"{RESULTS}/{name}/summary/scores_roi.tsv",
            f"{RESULTS}/{name}/summary/scaling_fits_roi.tsv",
            f"{RESULTS}/{name}/summary/scaling_extrapolation_roi.tsv",
            f"{RESULTS}/{name}/plots/roi.png",
            f"{RESULTS}/{name}/plots/roi_scaling.png",
        ]
    return out
