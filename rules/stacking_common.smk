"""Stacked regression: the configured stacked models, their spaces, inputs and targets."""

STACKING = {spec["name"]: spec for spec in CFG["stacking"]}
for _name in DATASETS:
    if STACKING and DATASETS[_name]["format"] not in ("trials", "nsd"):
        EXTRA_TARGETS[_name] += [
            f"{RESULTS}/{_name}/summary/stacking.tsv",
            f"{RESULTS}/{_name}/plots/stacking.png",
        ]


def stacking_spaces(name):
    """Spaces of a stacked model: model id, resolved layer and output label each."""
    out = []
    for i, space in enumerate(STACKING[name]["spaces"]):
        mid = space["model"]
        try:  # a baseline holds one layer, 0
            entry = MODELS[mid]
            n_layers = 0 if is_baseline(entry) else read_n_layers(entry, CACHE)
            (layer,) = resolve_layers([space["layer"]], n_layers)
        except (LmbrainError, ValueError) as exc:
            raise WorkflowError(f"stacked model '{name}', space {i}: {exc}") from None
        out.append({"model": mid, "layer": layer, "label": space.get("name", mid)})
    return out


def stacking_feature_files(wildcards):
    """Feature files of a stacked model's spaces, in space order."""
    return [
        feature_path(wildcards.dataset, s["model"])
        for s in stacking_spaces(wildcards.stacked)
    ]


def stacking_fits(wildcards):
    """Every (subject, stacked model) fit of a dataset."""
    return [
        f"{RESULTS}/{wildcards.dataset}/stacking/{subject}/{name}.npz"
        for subject in SUBJECTS[wildcards.dataset]
        for name in STACKING
    ]
