"""Forecast scores (:mod:`lmbrain.forecast`) as brain maps, and their figure.

Every (subject, model) forecast result becomes one map written by
:func:`lmbrain.brainmaps.write_voxels_map` (the writer of the fit maps: a 4-D NIfTI with a
sidecar for volume data, a GIfTI per hemisphere for surface data, an ``.npz`` without
geometry), with the measures named in the sidecar / data-array names:

``r``
    test r of the model with the voxel's chosen forecast window (layer ``k*``, distance
    ``d*``);
``r_base``
    test r without forecast;
``best_d``, ``best_k``
    ``d*`` and ``k*``, chosen by the cross-validated gain on the training stories (NaN where
    no gain is finite);
``F_best``
    ``F_{d*}`` at ``k*`` on the test stories;
``F_control_best``
    the random-future control at the same ``(k*, d*)`` (NaN without the control);
``F_d<d>`` (and ``F_control_d<d>``)
    ``F_d`` at every distance, at the voxel's ``k*``.

:func:`plot_forecast_maps` draws ``best_d`` and ``F_best`` of every model of a subject: glass
brains for volume data, the inflated fsaverage5 surface for fsaverage5 data, histograms per
hemisphere otherwise (as :mod:`lmbrain.mapplots` does for the fit maps).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lmbrain.brainmaps import map_paths, read_surface_map, read_volume_map, write_voxels_map
from lmbrain.io import atomic_path
from lmbrain.mapplots import CMAP, DPI, NILEARN_MESHES

#: Measures drawn by :func:`plot_forecast_maps`, with their colour-bar labels.
FIGURE_MEASURES = {
    "best_d": "best forecast distance d* (words ahead)",
    "F_best": "forecast score F at d*",
}


def forecast_map_values(result: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-voxel map measures of one forecast result (see the module docstring).

    Parameters
    ----------
    result : mapping
        :func:`lmbrain.forecast.fit_forecast` output (or its ``.npz``).

    Returns
    -------
    dict of str to numpy.ndarray (n_voxels,), float32
        ``r`` first (the map writer requires it), then the other measures.
    """
    distances = np.asarray(result["distances"])
    layers = np.asarray(result["layers"])
    best_d, best_k = np.asarray(result["best_d"]), np.asarray(result["best_k"])
    ok = best_d >= 0
    d_idx = np.where(ok, _index_of(distances, best_d), 0)
    k_idx = np.where(ok, _index_of(layers, best_k), 0)
    cols = np.arange(best_d.size)

    def at_best(cube, d_index=None):
        cube = np.asarray(cube, dtype=np.float64)
        picked = cube[k_idx, d_idx if d_index is None else d_index, cols]
        return np.where(ok, picked, np.nan).astype(np.float32)

    F_control = result.get("F_control", np.full(np.shape(result["F"]), np.nan))
    values = {
        "r": at_best(result["r"]),
        "r_base": np.asarray(result["r_base"], dtype=np.float32),
        "best_d": np.where(ok, best_d, np.nan).astype(np.float32),
        "best_k": np.where(ok, best_k, np.nan).astype(np.float32),
        "F_best": at_best(result["F"]),
        "F_control_best": at_best(F_control),
    }
    has_control = bool(np.isfinite(F_control).any())
    for b, d in enumerate(distances):
        values[f"F_d{int(d)}"] = at_best(result["F"], b)
        if has_control:
            values[f"F_control_d{int(d)}"] = at_best(F_control, b)
    return values


def _index_of(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    lookup = {int(k): i for i, k in enumerate(keys)}
    return np.array([lookup.get(int(v), 0) for v in values], dtype=np.int64)


def write_forecast_map(npz_path: str | Path, geometry, prefix: str | Path) -> dict[str, str]:
    """Write the map of one forecast result (``forecast/<subject>/<model>.npz``).

    Returns the files written (:func:`lmbrain.brainmaps.map_paths`).
    """
    with np.load(npz_path, allow_pickle=False) as npz:
        result = {k: npz[k] for k in npz.files}
    values = forecast_map_values(result)
    hemi = result.get("hemisphere", np.full(values["r"].size, ""))
    return write_voxels_map({**values, "hemisphere": hemi}, geometry, prefix, source=str(npz_path))


# --------------------------------------------------------------------------- figure


def plot_forecast_maps(kind: str, prefixes: Mapping[str, str], title: str, out) -> None:
    """``best_d`` and ``F_best`` of every model of one subject, one row each.

    Parameters
    ----------
    kind : {"volume", "surface", "vector"}
    prefixes : mapping
        ``{model: map prefix}`` as given to :func:`write_forecast_map`.
    title : str
    out : str or Path
        Output PNG (written atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(model, m) for model in prefixes for m in FIGURE_MEASURES]
    loaded = {model: _load(kind, map_paths(p, kind)) for model, p in prefixes.items()}
    surface = kind == "surface" and all(mesh in NILEARN_MESHES for _, mesh in loaded.values())
    height = 3.4 if kind == "volume" else 3.0
    layout = None if kind == "volume" or surface else "constrained"  # histograms only
    fig = Figure(figsize=(10.0, height * max(1, len(rows)) + 0.6), layout=layout)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(max(1, len(rows)), 2)
    for i, (model, measure) in enumerate(rows):
        values, mesh = loaded[model]
        label = f"{model}: {FIGURE_MEASURES[measure]}"
        if kind == "volume":
            ax = fig.add_subplot(grid[i, :])
            _glass_brain(fig, ax, values[measure], values["__affine__"], measure, label)
        elif surface:
            _surface_row(fig, grid, i, values, measure, mesh, label)
        else:
            ax = fig.add_subplot(grid[i, :])
            _histogram(ax, values, measure, label)
    if not rows:
        ax = fig.add_subplot(grid[0, :])
        ax.text(0.5, 0.5, "no forecast maps", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(title)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    fig.clear()


def _load(kind: str, paths: dict) -> tuple[dict, str]:
    """``({measure: values (volume: 3-D), "__affine__"/"__hemi__": ...}, mesh)``."""
    if kind == "volume":
        maps, affine = read_volume_map(paths["image"])
        return {**maps, "__affine__": affine}, ""
    if kind == "surface":
        per_hemi = {h: read_surface_map(paths[h]) for h in ("L", "R")}
        names = per_hemi["L"][0]
        values = {m: np.concatenate([per_hemi[h][0][m] for h in ("L", "R")]) for m in names}
        sizes = [per_hemi[h][0][next(iter(names))].size for h in ("L", "R")]
        values["__hemi__"] = np.repeat(["L", "R"], sizes)
        values["__split__"] = {h: per_hemi[h][0] for h in ("L", "R")}
        return values, per_hemi["L"][1]
    with np.load(paths["vector"]) as npz:
        values = {k: npz[k] for k in npz.files}
    values["__hemi__"] = values.pop("hemisphere").astype(str)
    return values, ""


def _style(measure: str, values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if measure == "best_d":
        top = float(finite.max()) if finite.size else 1.0
        return {"cmap": "viridis", "vmin": 0.0, "vmax": max(top, 1.0), "symmetric": False}
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    vmax = max(vmax, 1e-3)
    return {"cmap": CMAP, "vmin": -vmax, "vmax": vmax, "symmetric": True}


def _glass_brain(fig, ax, values, affine, measure, label):
    import nibabel as nib
    from nilearn import plotting

    style = _style(measure, values)
    img = nib.Nifti1Image(np.nan_to_num(values, nan=0.0).astype(np.float32), affine)
    ax.set_axis_off()
    plotting.plot_glass_brain(
        img,
        figure=fig,
        axes=ax,
        display_mode="lzr",
        plot_abs=False,
        colorbar=True,
        cmap=style["cmap"],
        vmin=style["vmin"],
        vmax=style["vmax"],
        symmetric_cbar=style["symmetric"],
        threshold=style["vmax"] * 1e-6,
        title=label,
    )


def _surface_row(fig, grid, row, values, measure, mesh, label):
    from nilearn import datasets, plotting

    surf = datasets.load_fsaverage(mesh)["inflated"]
    style = _style(measure, values[measure])
    for col, h in enumerate(("L", "R")):
        ax = fig.add_subplot(grid[row, col], projection="3d")
        plotting.plot_surf_stat_map(
            surf,
            values["__split__"][h][measure],
            hemi={"L": "left", "R": "right"}[h],
            view="lateral",
            axes=ax,
            figure=fig,
            colorbar=col == 1,
            cmap=style["cmap"],
            vmin=style["vmin"],
            vmax=style["vmax"],
            symmetric_cbar=style["symmetric"],
            threshold=style["vmax"] * 1e-6,
            bg_map=None,
        )
        ax.set_title(f"{label}, {h}", fontsize=8)


def _histogram(ax, values, measure, label):
    data, hemi = values[measure], values["__hemi__"]
    finite = np.isfinite(data)
    bins = np.histogram_bin_edges(data[finite] if finite.any() else [0.0, 1.0], bins=20)
    if measure == "best_d" and finite.any():  # one bin per distance
        lo, hi = np.nanmin(data), np.nanmax(data)
        bins = np.arange(lo - 0.5, hi + 1.5)
    for h in ("L", "R"):
        v = data[(hemi == h) & finite]
        ax.hist(v, bins=bins, alpha=0.55, label=f"{h} (n={v.size})")
    ax.set_xlabel(FIGURE_MEASURES[measure])
    ax.set_ylabel("voxels")
    ax.set_title(label, fontsize=9)
    ax.legend(frameon=False, title="hemisphere", fontsize=8)
