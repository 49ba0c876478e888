"""Per-voxel scores written back into the subject's space, as files brain viewers open.

A fit's ``.npz`` (:func:`lmbrain.encoding.fit_encoding_model`) holds one value per response
column (``r``, ``r2``, ``alpha``, ``cv_score``, ``cc_max``, ``r_norm``, ...). Where the
columns live is the dataset adapter's ``geometry(subject)`` (:mod:`lmbrain.geometry`), and
the map takes one of three forms (:func:`map_kind`):

``volume`` (:class:`~lmbrain.geometry.VolumeGeometry`)
    One 4-D NIfTI ``<prefix>.nii.gz``, float32, on the mask's grid and affine, **one volume
    per measure** in the order of :func:`map_measures` (``r`` first), NaN outside the mask.
    The volume names are in a BIDS-style sidecar ``<prefix>.json`` (``"volumes"``), in a
    JSON NIfTI header extension (so the image alone is enough, :func:`read_volume_map`),
    and, when short enough, in the header's ``descrip``. One file per fit rather than one
    per measure keeps the file count down (the demo writes 72 fits) and a new measure does
    not change the workflow's file names.
``surface`` (:class:`~lmbrain.geometry.SurfaceGeometry`)
    One GIfTI per hemisphere, ``<prefix>_hemi-L.func.gii`` and ``<prefix>_hemi-R.func.gii``,
    with one data array per measure (its ``Name`` metadata is the measure) holding a value
    for every vertex of the full mesh, NaN at vertices that are not response columns; the
    mesh name is in the file metadata (``lmbrain_mesh``).
``vector`` (no geometry)
    ``<prefix>.npz``: the measures as plain vectors in column order, with ``hemisphere``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from lmbrain.errors import InputError
from lmbrain.geometry import HEMISPHERES, SurfaceGeometry, VolumeGeometry
from lmbrain.io import atomic_path, save_json, save_npz

#: Measures written first, in this order, when a fit has them; other per-voxel numeric
#: arrays follow in sorted order.
MAP_MEASURES = ("r", "r2", "alpha", "cv_score", "cc_max", "r_norm", "p", "q")
KINDS = ("volume", "surface", "vector")
STRUCTURES = {"L": "CortexLeft", "R": "CortexRight"}
_EXTENSION_CODE = "comment"  # NIfTI extension code 6: free text (here JSON)
_DESCRIP_BYTES = 80


def map_kind(geometry) -> str:
    """``"volume"``, ``"surface"`` or ``"vector"`` for a geometry (``None`` is vector)."""
    if geometry is None:
        return "vector"
    if isinstance(geometry, VolumeGeometry):
        return "volume"
    if isinstance(geometry, SurfaceGeometry):
        return "surface"
    raise TypeError(f"not a geometry: {type(geometry).__name__}")


def planned_geometry(dataset, subject: str, kind: str):
    """The subject's geometry, checked against the map form planned when the DAG was built.

    Parameters
    ----------
    dataset : lmbrain.datasets dataset
        Opened dataset; one without a ``geometry`` method has vector maps.
    subject : str
    kind : str
        ``"volume"``, ``"surface"`` or ``"vector"``: the form the rule's outputs are named for.

    Returns
    -------
    VolumeGeometry, SurfaceGeometry or None

    Raises
    ------
    RuntimeError
        The geometry now gives another form (the mask or surface changed after planning).
    """
    geometry = dataset.geometry(subject) if hasattr(dataset, "geometry") else None
    if map_kind(geometry) != kind:
        raise RuntimeError(
            f"the subject's geometry gives {map_kind(geometry)} maps, the workflow expected "
            f"{kind} (did the dataset's mask or surface change after the DAG was built?)"
        )
    return geometry


def map_paths(prefix: str | Path, kind: str) -> dict[str, str]:
    """Files of one map, by role, for output prefix ``prefix`` (no extension).

    Parameters
    ----------
    prefix : str or Path
        E.g. ``results/demo/maps/sub-01/gpt2/layer-3_frac-1``.
    kind : str
        One of :data:`KINDS`.

    Returns
    -------
    dict of str to str
        ``volume``: ``{"image", "sidecar"}``; ``surface``: ``{"L", "R"}``;
        ``vector``: ``{"vector"}``.
    """
    prefix = str(prefix)
    if kind == "volume":
        return {"image": f"{prefix}.nii.gz", "sidecar": f"{prefix}.json"}
    if kind == "surface":
        return {h: f"{prefix}_hemi-{h}.func.gii" for h in HEMISPHERES}
    if kind == "vector":
        return {"vector": f"{prefix}.npz"}
    raise ValueError(f"unknown map kind {kind!r}; known: {KINDS}")


def map_measures(voxels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-voxel numeric arrays of a fit, as float32, in map order.

    Parameters
    ----------
    voxels : mapping of str to numpy.ndarray
        A fit's arrays (e.g. an opened ``.npz``). One-dimensional numeric arrays with as many
        values as ``r`` are measures; others (``hemisphere``, scalars) are left out.

    Returns
    -------
    dict of str to numpy.ndarray
        :data:`MAP_MEASURES` that are present, in that order, then the other measures sorted
        by name.

    Raises
    ------
    ValueError
        Without an ``r`` array.
    """
    if "r" not in voxels:
        raise ValueError("a fit's arrays need 'r'")
    n = np.asarray(voxels["r"]).shape
    names = [m for m in MAP_MEASURES if m in voxels]
    names += sorted(k for k in voxels if k not in MAP_MEASURES)
    out = {}
    for name in names:
        arr = np.asarray(voxels[name])
        if arr.shape == n and arr.ndim == 1 and arr.dtype.kind in "fiub":
            out[name] = arr.astype(np.float32)
    return out


def _check_columns(values: Mapping[str, np.ndarray], n_columns: int) -> None:
    for name, arr in values.items():
        if np.shape(arr) != (n_columns,):
            raise ValueError(
                f"measure {name!r} has shape {np.shape(arr)} but the geometry has "
                f"{n_columns} columns"
            )


# --------------------------------------------------------------------------- volume


def volume_image(values: Mapping[str, np.ndarray], geometry: VolumeGeometry) -> nib.Nifti1Image:
    """A 4-D float32 NIfTI, one volume per measure, NaN outside the mask.

    Parameters
    ----------
    values : mapping of str to numpy.ndarray of shape (n_voxels,)
        Measures in column order (column ``j`` is the ``j``-th mask voxel in C order).
    geometry : VolumeGeometry

    Returns
    -------
    nibabel.Nifti1Image
        Shape ``mask.shape + (n_measures,)``, the mask's affine (sform and qform), the volume
        names in a JSON header extension and, when they fit, in ``descrip``.
    """
    mask = np.asarray(geometry.mask, dtype=bool)
    _check_columns(values, int(mask.sum()))
    names = list(values)
    data = np.full((*mask.shape, len(names)), np.nan, dtype=np.float32)
    for t, name in enumerate(names):
        data[..., t][mask] = values[name]
    img = nib.Nifti1Image(data, np.asarray(geometry.affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.header.set_intent("none")
    descrip = "lmbrain volumes: " + " ".join(names)
    if len(descrip) <= _DESCRIP_BYTES:
        img.header["descrip"] = descrip.encode()
    text = json.dumps({"volumes": names}).encode()
    img.header.extensions.append(nib.nifti1.Nifti1Extension(_EXTENSION_CODE, text))
    return img


def write_volume_map(
    values: Mapping[str, np.ndarray], geometry: VolumeGeometry, prefix: str | Path, **info
) -> dict[str, str]:
    """Write :func:`volume_image` to ``<prefix>.nii.gz`` and its sidecar ``<prefix>.json``.

    ``info`` (e.g. the source fit) is added to the sidecar. Returns :func:`map_paths`.
    """
    paths = map_paths(prefix, "volume")
    img = volume_image(values, geometry)
    with atomic_path(paths["image"], suffix=".nii.gz") as tmp:
        nib.save(img, tmp)
    save_json(paths["sidecar"], {"kind": "volume", "volumes": list(values), **info})
    return paths


def read_volume_map(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read a volume map back: ``({measure: 3-D array}, affine)``.

    Raises
    ------
    InputError
        If the image lacks the volume names (not written by :func:`write_volume_map`).
    """
    img = nib.load(str(path))
    names = None
    for ext in img.header.extensions:
        try:
            names = json.loads(ext.get_content())["volumes"]
        except (ValueError, KeyError, TypeError):
            continue
    if names is None:
        raise InputError(path, "no lmbrain volume names in the NIfTI header extensions")
    data = np.asarray(img.dataobj)
    if data.ndim == 3:
        data = data[..., None]
    if data.shape[-1] != len(names):
        raise InputError(path, f"{data.shape[-1]} volumes but {len(names)} names")
    return {name: data[..., t] for t, name in enumerate(names)}, img.affine


# --------------------------------------------------------------------------- surface


def surface_images(
    values: Mapping[str, np.ndarray], geometry: SurfaceGeometry
) -> dict[str, nib.gifti.GiftiImage]:
    """One GIfTI per hemisphere, one data array per measure over the full mesh.

    Parameters
    ----------
    values : mapping of str to numpy.ndarray of shape (n_columns,)
        Measures in column order.
    geometry : SurfaceGeometry

    Returns
    -------
    dict
        ``{"L": GiftiImage, "R": GiftiImage}``; vertex ``v`` of hemisphere ``h`` holds the
        value of the column with ``hemisphere == h`` and ``vertex == v``, NaN elsewhere.

    Raises
    ------
    ValueError
        If a vertex index is out of the mesh or two columns share a vertex.
    """
    hemi = np.asarray(geometry.hemisphere).astype(str)
    vertex = np.asarray(geometry.vertex, dtype=np.int64)
    _check_columns(values, vertex.size)
    images = {}
    for h in HEMISPHERES:
        n_vert = int(geometry.n_vertices[h])
        cols = np.flatnonzero(hemi == h)
        idx = vertex[cols]
        if idx.size and (idx.min() < 0 or idx.max() >= n_vert):
            raise ValueError(f"hemisphere {h}: vertex index outside 0..{n_vert - 1}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"hemisphere {h}: two columns share a vertex")
        meta = {"AnatomicalStructurePrimary": STRUCTURES[h], "lmbrain_mesh": geometry.mesh}
        img = nib.gifti.GiftiImage(meta=nib.gifti.GiftiMetaData(meta))
        for name, arr in values.items():
            full = np.full(n_vert, np.nan, dtype=np.float32)
            full[idx] = np.asarray(arr, dtype=np.float32)[cols]
            img.add_gifti_data_array(
                nib.gifti.GiftiDataArray(
                    full,
                    intent="NIFTI_INTENT_NONE",
                    datatype="NIFTI_TYPE_FLOAT32",
                    meta=nib.gifti.GiftiMetaData({"Name": name}),
                )
            )
        images[h] = img
    return images


def write_surface_map(
    values: Mapping[str, np.ndarray], geometry: SurfaceGeometry, prefix: str | Path
) -> dict[str, str]:
    """Write :func:`surface_images` to ``<prefix>_hemi-L.func.gii`` and ``..._hemi-R...``."""
    paths = map_paths(prefix, "surface")
    for h, img in surface_images(values, geometry).items():
        with atomic_path(paths[h], suffix=".func.gii") as tmp:
            nib.save(img, tmp)
    return paths


def read_surface_map(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """Read one hemisphere's GIfTI map back: ``({measure: (n_vertices,) array}, mesh)``."""
    img = nib.load(str(path))
    out = {}
    for i, darray in enumerate(img.darrays):
        name = darray.meta.get("Name", f"array_{i}")
        out[name] = np.asarray(darray.data)
    return out, img.meta.get("lmbrain_mesh", "")


# --------------------------------------------------------------------------- vector


def write_vector_map(
    values: Mapping[str, np.ndarray], hemisphere: np.ndarray, prefix: str | Path
) -> dict[str, str]:
    """Write the measures as plain vectors (column order) with ``hemisphere`` to ``.npz``."""
    paths = map_paths(prefix, "vector")
    _check_columns(values, len(hemisphere))
    save_npz(paths["vector"], hemisphere=np.asarray(hemisphere).astype(str), **values)
    return paths


# --------------------------------------------------------------------------- one fit


def write_fit_map(fit_path: str | Path, geometry, prefix: str | Path) -> dict[str, str]:
    """Write the map of one fit in the form its geometry calls for.

    Parameters
    ----------
    fit_path : str or Path
        A fit's per-voxel ``.npz``.
    geometry : VolumeGeometry, SurfaceGeometry or None
        The subject's geometry (``dataset.geometry(subject)``).
    prefix : str or Path
        Output path without extension.

    Returns
    -------
    dict of str to str
        The files written (:func:`map_paths`).

    Raises
    ------
    InputError
        If the fit's voxel count differs from the geometry's column count.
    """
    with np.load(fit_path, allow_pickle=False) as npz:
        voxels = {k: npz[k] for k in npz.files}
    return write_voxels_map(voxels, geometry, prefix, source=str(fit_path))


def write_voxels_map(
    voxels: Mapping[str, np.ndarray], geometry, prefix: str | Path, source: str = ""
) -> dict[str, str]:
    """Write per-voxel arrays (a fit's, or derived ones such as the per-voxel best layer).

    Same as :func:`write_fit_map` for arrays already in memory; ``source`` names them in
    errors and in a volume map's sidecar.
    """
    fit_path = source
    values = map_measures(voxels)
    n = values["r"].size
    kind = map_kind(geometry)
    if geometry is not None and geometry.n_voxels != n:
        raise InputError(
            fit_path, f"has {n} voxels but the subject's {kind} geometry has {geometry.n_voxels}"
        )
    if kind == "volume":
        return write_volume_map(values, geometry, prefix, source=source)
    if kind == "surface":
        return write_surface_map(values, geometry, prefix)
    hemi = voxels.get("hemisphere", np.full(n, ""))
    return write_vector_map(values, hemi, prefix)
