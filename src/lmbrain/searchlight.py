"""Searchlight RSA on volume data (Kriegeskorte, Goebel & Bandettini 2006).

At every voxel of a subject's mask (the *centre*), the responses of the voxels within a sphere
of radius ``radius_mm`` around it (world distance, from the mask's affine) give an RDM over the
stimuli (correlation distance, :func:`lmbrain.rsa.rdm`), which is correlated with each model
RDM. The map of these correlations says where the model's representational geometry is found.

Doerig et al. (2025, Fig. 1b and Methods, searchlight RSA; authors' code github.com/adriendoerig/
visuo_llm, ``src/nsd_visuo_semantics/searchlight_analyses/``): spheres of radius 6 voxels in
NSD's 1.8 mm space (voxels at a distance ``< 6`` voxels, i.e. ``<= sqrt(35) * 1.8 = 10.65`` mm),
centres whose sphere has at least half of its grid voxels in the mask (``thr=.5``),
correlation-distance brain RDMs compared with the model RDM by Pearson correlation
(``corr_rdms`` in ``utils/tf_utils.py``); they average the maps of 100 random sets of 100
images, where this module uses one RDM over the given stimuli (the test images).

Efficiency: neighbourhoods come from a KD-tree over the voxels' world coordinates
(:class:`scipy.spatial.cKDTree`), queried for a chunk of centres at a time; the sphere RDMs of
a chunk are gathered at once from the voxel-major patterns as zero-padded, centred blocks
(padding after centring adds nothing to the products), each sphere's Gram matrix is one BLAS
product, and every model RDM is compared in one matrix product. BENCHMARKS.md, *Searchlight
RSA*: about 1 ms per centre for 100 stimuli and 895-voxel spheres on one core.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import rankdata

COMPARISONS = ("pearson", "spearman")
#: Distances within this many mm of the radius count as inside (floating-point affines).
TOLERANCE_MM = 1e-6


def sphere_size(affine: np.ndarray, radius_mm: float) -> int:
    """Number of grid voxels within ``radius_mm`` of a voxel centre (itself included).

    The grid is the affine's lattice, so the count is the same at every voxel; it is the
    denominator of a centre's in-mask fraction.
    """
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    smallest = np.linalg.svd(m, compute_uv=False).min()
    if smallest <= 0:
        raise ValueError("the affine is singular")
    reach = int(np.ceil(radius_mm / smallest))
    axis = np.arange(-reach, reach + 1)
    offsets = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(offsets @ m.T, axis=1)
    return int(np.count_nonzero(dist <= radius_mm + TOLERANCE_MM))


def iter_spheres(
    coords: np.ndarray, radius_mm: float, centres: np.ndarray | None = None, chunk: int = 256
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Centres in chunks, with the indices of the voxels within ``radius_mm`` of each.

    Parameters
    ----------
    coords : ndarray, shape (n_voxels, 3)
        World coordinates (mm) of the voxels that may be sphere members
        (:meth:`lmbrain.geometry.VolumeGeometry.world_coordinates`).
    radius_mm : float
        A voxel is a member when its distance to the centre is at most ``radius_mm``.
    centres : ndarray, shape (n_centres, 3), optional
        World coordinates of the centres (default: ``coords``).
    chunk : int
        Centres per chunk (the KD-tree is queried one chunk at a time, so the neighbourhoods
        of a whole brain are never all in memory).

    Yields
    ------
    index : ndarray of int
        Indices (into ``centres``) of this chunk's centres.
    members : list of ndarray of int
        Sorted indices (into ``coords``) of the voxels within ``radius_mm`` of each centre.
    """
    coords = np.asarray(coords, dtype=np.float64)
    centres = coords if centres is None else np.asarray(centres, dtype=np.float64)
    if len(coords) == 0:
        for lo in range(0, len(centres), chunk):
            index = np.arange(lo, min(lo + chunk, len(centres)))
            yield index, [np.zeros(0, dtype=np.int64) for _ in index]
        return
    tree = cKDTree(coords)
    for lo in range(0, len(centres), chunk):
        index = np.arange(lo, min(lo + chunk, len(centres)))
        found = tree.query_ball_point(centres[index], r=radius_mm + TOLERANCE_MM)
        yield index, [np.sort(np.asarray(f, dtype=np.int64)) for f in found]


def _centred_columns(voxel_major: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """(n_spheres, k_max, n_stimuli): each sphere's voxels, centred over the sphere, 0-padded.

    ``voxel_major`` is the patterns transposed (n_voxels, n_stimuli), so one gather gives
    contiguous blocks. Each stimulus' pattern is centred over the sphere's voxels; padding
    rows are zero after centring, so they add nothing to the products.
    """
    k_max = max(len(m) for m in members)
    index = np.zeros((len(members), k_max), dtype=np.int64)
    valid = np.zeros((len(members), k_max, 1), dtype=voxel_major.dtype)
    for b, m in enumerate(members):
        index[b, : len(m)] = m
        valid[b, : len(m)] = 1
    y = voxel_major[index] * valid
    counts = valid.sum(axis=1, keepdims=True)
    y -= y.sum(axis=1, keepdims=True) / counts
    y *= valid
    return y


def sphere_rdms(patterns: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """Correlation-distance RDMs of several spheres, as upper triangles.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_voxels)
    members : sequence of int arrays
        The voxels of each sphere.

    Returns
    -------
    ndarray, shape (n_spheres, n_stimuli * (n_stimuli - 1) / 2), float32
        Row ``b`` equals ``lmbrain.rsa.rdm(patterns[:, members[b]])`` (NaN for pairs with a
        constant row).
    """
    voxel_major = np.ascontiguousarray(np.asarray(patterns, dtype=np.float32).T)
    return _sphere_rdms(voxel_major, members)


def _sphere_rdms(voxel_major: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    y = _centred_columns(voxel_major, members)
    n = y.shape[2]
    i, j = np.triu_indices(n, k=1)
    out = np.empty((len(members), len(i)), dtype=np.float32)
    for b in range(len(members)):  # one BLAS product per sphere (a batched matmul is slower)
        gram = y[b].T @ y[b]
        norm = np.sqrt(np.diag(gram))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = gram[i, j] / (norm[i] * norm[j])
        out[b] = 1.0 - np.clip(corr, -1.0, 1.0)
    return out


def _standardise(rows: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (NaN rows stay NaN)."""
    rows = rows - rows.mean(axis=-1, keepdims=True)
    norm = np.sqrt((rows**2).sum(axis=-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return rows / norm


def compare_rdms(brain: np.ndarray, models: np.ndarray, comparison: str = "pearson") -> np.ndarray:
    """Correlation of every brain RDM with every model RDM.

    Parameters
    ----------
    brain : ndarray, shape (n_spheres, n_pairs)
    models : ndarray, shape (n_models, n_pairs)
    comparison : {"pearson", "spearman"}
        Spearman ranks each RDM (average ranks for ties), as :func:`lmbrain.rsa.spearman`.

    Returns
    -------
    ndarray, shape (n_spheres, n_models), float64; NaN where a brain RDM is not finite.
    """
    if comparison not in COMPARISONS:
        raise ValueError(f"unknown comparison {comparison!r}; use one of {COMPARISONS}")
    brain = np.asarray(brain, dtype=np.float64)
    models = np.asarray(models, dtype=np.float64)
    finite = np.isfinite(brain).all(axis=1)
    if comparison == "spearman":
        brain = np.where(finite[:, None], rankdata(np.nan_to_num(brain), axis=1), np.nan)
        models = rankdata(models, axis=1)
    out = _standardise(brain) @ _standardise(models).T
    out[~finite] = np.nan
    return out


def searchlight_rsa(
    patterns: np.ndarray,
    coords: np.ndarray,
    model_rdms: Mapping[str, np.ndarray],
    radius_mm: float,
    comparison: str = "pearson",
    min_fraction: float = 0.0,
    affine: np.ndarray | None = None,
    chunk: int = 32,
) -> dict[str, np.ndarray]:
    """The searchlight map of every model RDM.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_voxels)
        Response patterns (e.g. test images' betas averaged over repeats); voxels with a
        non-finite value are left out of every sphere.
    coords : ndarray, shape (n_voxels, 3)
        World coordinates (mm) of the voxels.
    model_rdms : mapping name -> RDM vector (upper triangle over the same stimuli)
    radius_mm : float
    comparison : {"pearson", "spearman"}
    min_fraction : float
        Centres whose sphere holds fewer than ``min_fraction * sphere_size(affine, radius)``
        usable voxels get NaN (needs ``affine``).
    affine : ndarray, shape (4, 4), optional
    chunk : int
        Centres per batch (memory: about ``chunk * n_stimuli**2 * 12`` bytes).

    Returns
    -------
    dict
        ``{name: (n_voxels,) correlation}`` per model, and ``n_voxels`` (usable voxels in
        each sphere), float32.
    """
    patterns = np.asarray(patterns, dtype=np.float64)
    coords = np.asarray(coords, dtype=np.float64)
    if patterns.shape[1] != len(coords):
        raise ValueError(f"{patterns.shape[1]} voxels of patterns but {len(coords)} coordinates")
    names = list(model_rdms)
    models = np.stack([np.asarray(model_rdms[k], dtype=np.float64) for k in names])
    n_pairs = patterns.shape[0] * (patterns.shape[0] - 1) // 2
    if models.shape[1] != n_pairs:
        raise ValueError(f"model RDMs have {models.shape[1]} pairs, patterns {n_pairs}")
    usable = np.flatnonzero(np.isfinite(patterns).all(axis=0))
    voxel_major = np.ascontiguousarray(patterns.T, dtype=np.float32)
    need = 1
    if min_fraction > 0:
        if affine is None:
            raise ValueError("min_fraction needs the affine")
        need = max(1, int(np.ceil(min_fraction * sphere_size(affine, radius_mm) - 1e-9)))
    n_vox = len(coords)
    out = {k: np.full(n_vox, np.nan) for k in names}
    size = np.zeros(n_vox)
    # Every voxel is a centre; spheres hold usable voxels only.
    for centres, found in iter_spheres(coords[usable], radius_mm, coords, chunk):
        members = [usable[f] for f in found]
        size[centres] = [len(m) for m in members]
        keep = [b for b, m in enumerate(members) if len(m) >= max(need, 2)]
        if not keep:
            continue
        rdms = _sphere_rdms(voxel_major, [members[b] for b in keep])
        rho = compare_rdms(rdms, models, comparison)
        for k, name in enumerate(names):
            out[name][centres[keep]] = rho[:, k]
    result = {k: v.astype(np.float32) for k, v in out.items()}
    result["n_voxels"] = size.astype(np.float32)
    return result


# --------------------------------------------------------------------------- datasets


def measure_name(model: str, layer: int) -> str:
    """Name of a model layer's volume in a searchlight map: ``<model>_layer-<L>``."""
    return f"{model}_layer-{int(layer)}"


def main_measure(models: Mapping[str, Mapping]) -> str:
    """The measure to draw: the first trained language model's last layer, else the first."""
    ranked = sorted(
        models.items(), key=lambda kv: (kv[1].get("baseline", False), kv[1].get("untrained", False))
    )
    mid, spec = ranked[0]
    return measure_name(mid, max(spec["layers"]))


def stimulus_samples(
    n_stimuli: int, sample_size: int | None, n_samples: int | None, seed: int
) -> list[np.ndarray]:
    """Disjoint random sets of stimuli, each RDM of a searchlight computed on one set.

    Parameters
    ----------
    n_stimuli : int
    sample_size : int or None
        Stimuli per set; None: one set of every stimulus (in order).
    n_samples : int or None
        Number of sets (at most ``n_stimuli // sample_size``; None: that many).
    seed : int
        ``default_rng(seed).permutation(n_stimuli)`` is cut into consecutive sets.

    Returns
    -------
    list of sorted int arrays
    """
    if sample_size is None:
        return [np.arange(n_stimuli)]
    most = n_stimuli // int(sample_size)
    if most < 1:
        raise ValueError(f"sample_size {sample_size} exceeds the {n_stimuli} stimuli")
    count = most if n_samples is None else int(n_samples)
    if count > most:
        raise ValueError(f"{count} disjoint sets of {sample_size} need more than {n_stimuli}")
    order = np.random.default_rng(int(seed)).permutation(n_stimuli)
    return [np.sort(order[k * sample_size : (k + 1) * sample_size]) for k in range(count)]


def dataset_searchlight(
    dataset,
    subject: str,
    models: Mapping[str, Mapping],
    settings: Mapping,
    responses: Mapping | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], object]:
    """Searchlight maps of one subject of a trial dataset, for every (model, layer).

    Parameters
    ----------
    dataset : :class:`lmbrain.datasets.trials.TrialDataset` with volume geometry
    subject : str
    models : mapping model id -> {"path", "layers", ...}
        Stimulus feature files, as for :func:`lmbrain.rsa.dataset_rsa`.
    settings : mapping
        ``trials.searchlight``: ``radius_mm``, ``min_fraction``, ``comparison``, ``stimuli``
        (``test``: the test images; ``all``: every image the subject saw at least
        ``min_repeats`` times), ``sample_size`` and ``n_samples`` (maps of disjoint random
        sets of images, averaged; :func:`stimulus_samples`).
    responses : mapping, optional
        The subject's preprocessed responses (:func:`lmbrain.trial_encoding.subject_responses`).
    seed : int
        Seed of the image sets.

    Returns
    -------
    values : dict
        ``{measure_name(model, layer): (n_voxels,)}`` (mean over the sets) and ``n_voxels``.
    geometry : VolumeGeometry

    Raises
    ------
    InputError
        If the dataset has no volume geometry for the subject.
    """
    from lmbrain.errors import InputError
    from lmbrain.geometry import VolumeGeometry
    from lmbrain.rsa import rdm
    from lmbrain.sentence_features import read_stimulus_features
    from lmbrain.trial_encoding import stimulus_means, subject_responses

    geometry = dataset.geometry(subject)
    if not isinstance(geometry, VolumeGeometry):
        raise InputError(
            getattr(dataset, "root", dataset.name),
            f"searchlight RSA needs volume data; subject {subject} has no voxel mask and affine",
        )
    data = responses or subject_responses(dataset, subject)
    if settings.get("stimuli", "test") == "test":
        ids, means, _ = stimulus_means(data["responses"], data["stimulus"], dataset.test_stimuli)
    else:
        ids, means, counts = stimulus_means(data["responses"], data["stimulus"])
        keep = counts >= int(settings.get("min_repeats", 1))
        ids, means = [s for s, k in zip(ids, keep, strict=True) if k], means[keep]
    features = {}
    for mid, spec in models.items():
        for layer in spec["layers"]:
            features[measure_name(mid, layer)] = read_stimulus_features(spec["path"], layer, ids)[1]
    samples = stimulus_samples(
        len(ids), settings.get("sample_size"), settings.get("n_samples"), seed
    )
    coords = geometry.world_coordinates()
    maps = []
    for sample in samples:
        maps.append(
            searchlight_rsa(
                means[sample],
                coords,
                {name: rdm(f[sample]) for name, f in features.items()},
                float(settings["radius_mm"]),
                comparison=settings.get("comparison", "pearson"),
                min_fraction=float(settings.get("min_fraction", 0.0)),
                affine=geometry.affine,
            )
        )
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels stay NaN
        values = {k: np.nanmean([m[k] for m in maps], axis=0).astype(np.float32) for k in maps[0]}
    return values, geometry
