"""What the public-dataset adapters share: options, run-length checks, file readers.

An adapter class declares ``OPTIONS`` (config key -> default); :func:`lmbrain.datasets.open_dataset`
passes it the keys of the dataset's config block that it declares. Besides the reading
interface of :mod:`lmbrain.datasets`, these adapters offer

- ``subject_stories(subject)``: the stories a subject has responses for (subjects of the public
  datasets did not all hear every story); the fit uses the subject's stories only;
- ``geometry(subject)``: :mod:`lmbrain.geometry` (VolumeGeometry, SurfaceGeometry or None);
- ``group_responses(story, subjects)``: (n_subjects, n_trs, n_voxels) responses of the subjects
  who heard ``story``, for the inter-subject noise ceiling (:func:`lmbrain.ceilings.isc_ceiling`);
- ``skipped``: a list of ``{"subject", "story", "reason"}`` for data the published release lacks,
  reported in the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lmbrain.errors import ConfigError, InputError
from lmbrain.stimulus import Words

log = logging.getLogger(__name__)

#: Name of the "average subject" (mean over subjects' responses), where an adapter offers one.
AVERAGE_SUBJECT = "average"
DEFAULT_MAX_TRAILING_S = 40.0


def check_run_length(
    path: Path, n_trs: int, tr: float, words: Words, max_trailing_s: float, n_trim: int
) -> None:
    """Check a run's TR count against its word annotation.

    The run must cover the last word to within one TR (``n_trs * tr >= end - tr``) and must
    not go on for more than ``max_trailing_s`` seconds (plus one TR) after it.

    Raises
    ------
    InputError
        Naming ``path``, the TR count, the annotation's duration and the rule broken.
    """
    covered = n_trs * tr
    end = words.end
    if covered < end - tr:
        raise InputError(
            path,
            f"has {n_trs} TRs ({covered:.1f} s at TR {tr:g} s) but the word annotation lasts "
            f"{end:.1f} s: the TR count disagrees with the annotation's duration by more than "
            "one TR",
        )
    if covered - end > max_trailing_s + tr:
        raise InputError(
            path,
            f"has {n_trs} TRs ({covered:.1f} s) but the word annotation ends at {end:.1f} s: "
            f"the TR count disagrees with the annotation's duration (more than "
            f"max_trailing_s={max_trailing_s:g} s after the last word)",
        )
    if n_trs <= n_trim:
        raise InputError(path, f"{n_trs} TRs leave nothing after trimming")


def read_hdf5_data(path: Path, ndim: int = 2) -> np.ndarray:
    """The float32 array in an HDF5 file's dataset ``data`` (LeBel et al. ``.hf5`` files)."""
    import h5py

    if not path.is_file():
        raise InputError(path, "response file not found")
    try:
        with h5py.File(path, "r") as fh:
            if "data" not in fh:
                raise InputError(path, f"no dataset 'data' (found {sorted(fh.keys())})")
            arr = fh["data"][()]
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file ({exc})") from exc
    if arr.ndim != ndim:
        raise InputError(path, f"expected a {ndim}-D 'data' array, found shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(path, f"expected numeric responses, found {arr.dtype}")
    return np.asarray(arr, dtype=np.float32)


def hdf5_data_shape(path: Path) -> tuple[int, ...]:
    """Shape of an HDF5 file's ``data`` without reading it."""
    import h5py

    if not path.is_file():
        raise InputError(path, "response file not found")
    try:
        with h5py.File(path, "r") as fh:
            if "data" not in fh:
                raise InputError(path, f"no dataset 'data' (found {sorted(fh.keys())})")
            return tuple(fh["data"].shape)
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file ({exc})") from exc


def read_array(path: Path, ndim: int) -> np.ndarray:
    """An ``.npy`` or ``.hf5``/``.h5`` (dataset ``data``) array with ``ndim`` dimensions."""
    if path.suffix in (".hf5", ".h5", ".hdf5"):
        return read_hdf5_data(path, ndim)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        arr = np.load(path)
    except (ValueError, OSError) as exc:
        raise InputError(path, f"not a readable .npy array ({exc})") from exc
    if arr.ndim != ndim:
        raise InputError(path, f"expected a {ndim}-D array, found shape {arr.shape}")
    return np.asarray(arr, dtype=np.float32)


def load_nifti(path: Path):
    """A NIfTI image, with a clear error for a missing or unreadable file."""
    import nibabel as nib

    if not path.is_file():
        raise InputError(path, "NIfTI file not found")
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for bad files
        raise InputError(path, f"not a readable NIfTI image ({exc})") from exc


def load_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A boolean 3-D brain mask (values > 0) and its affine from a NIfTI file."""
    img = load_nifti(path)
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"a mask must be 3-D, found shape {data.shape}")
    mask = data > 0
    if not mask.any():
        raise InputError(path, "the mask selects no voxel")
    return mask, np.asarray(img.affine, dtype=float)


def _run_image(path: Path, mask: np.ndarray, mask_path: Path):
    """A 4-D NIfTI (header read, data not yet), its shape checked against the mask."""
    img = load_nifti(path)
    if len(img.shape) != 4:
        raise InputError(path, f"expected a 4-D (x, y, z, time) image, found shape {img.shape}")
    if tuple(img.shape[:3]) != tuple(mask.shape):
        raise InputError(
            path,
            f"image shape {tuple(img.shape[:3])} does not match the mask {mask_path} "
            f"shape {tuple(mask.shape)}",
        )
    return img


def masked_timeseries(path: Path, mask: np.ndarray, mask_path: Path) -> np.ndarray:
    """(n_trs, n_voxels) float32 time series of a 4-D NIfTI inside ``mask`` (C order)."""
    img = _run_image(path, mask, mask_path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    return np.ascontiguousarray(data[mask].T)


def nifti_n_trs(path: Path, mask: np.ndarray, mask_path: Path) -> int:
    """TR count of a 4-D NIfTI (header only), checking its shape against the mask."""
    return int(_run_image(path, mask, mask_path).shape[3])


def resolve(root: Path, value: str | None, **fields) -> Path | None:
    """A config path, ``{subject}``/``{story}`` filled in, relative to the dataset root."""
    if value is None:
        return None
    path = Path(str(value).format(**fields))
    return path if path.is_absolute() else root / path


def test_stories_option(value, stories: list[str], where: Path) -> list[str]:
    """Validate the configured test stories against the dataset's stories."""
    tests = [value] if isinstance(value, str) else list(value)
    unknown = [s for s in tests if s not in stories]
    if unknown:
        raise InputError(where, f"test stories {unknown} are not stories of this dataset {stories}")
    return tests


def hemisphere_counts(hemi: np.ndarray) -> dict:
    return {
        "n_voxels": int(hemi.size),
        "n_left": int((hemi == "L").sum()),
        "n_right": int((hemi == "R").sum()),
        "n_unknown_hemisphere": int((~np.isin(hemi, ["L", "R"])).sum()),
    }


def trim_setting(value, where: str = "trim", source: Path | None = None) -> tuple[int, int]:
    """TRs dropped at the start and end of every run, from a config ``trim`` value.

    ``trim: 4`` drops 4 TRs at both ends; ``trim: {start: 4, end: 2}`` each end on its own
    (a missing key is 0); None or ``{}`` drops nothing.

    Raises
    ------
    ConfigError
        Naming ``where`` (and ``source``, the file it came from) for anything else: a
        negative count, an unknown key, a list ...
    """
    if value is None:
        return 0, 0
    if isinstance(value, bool):
        raise ConfigError(
            where, f"must be a whole number of TRs or {{start, end}}, got {value!r}", source
        )
    if isinstance(value, int):
        counts = {"start": value, "end": value}
    elif isinstance(value, dict):
        unknown = sorted(set(value) - {"start", "end"})
        if unknown:
            raise ConfigError(where, f"unknown keys {unknown}; use start and end", source)
        counts = {"start": value.get("start", 0) or 0, "end": value.get("end", 0) or 0}
    else:
        raise ConfigError(
            where,
            f"must be a whole number of TRs or {{start: n, end: m}}, got {value!r}",
            source,
        )
    for key, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(
                f"{where}.{key}", f"must be a whole number of TRs >= 0, got {n!r}", source
            )
    return int(counts["start"]), int(counts["end"])


def adapter_settings(defaults: dict, options: dict) -> tuple[dict, int, int]:
    """An adapter's options over its ``OPTIONS`` defaults (None keeps the default), and
    the TRs trimmed at the start and end of every run (:func:`trim_setting`; a ``trim``
    mapping is merged key by key over the default, a number replaces it)."""
    opts = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    given = opts["trim"]
    if isinstance(given, dict) and isinstance(defaults["trim"], dict):
        given = {**defaults["trim"], **given}
    start, end = trim_setting(given)
    return opts, start, end


def visible(path: Path, below: Path) -> bool:
    """False for a path with a hidden part (``.DS_Store``, ``._story.tsv``, ``.git/``) below
    ``below``: macOS and archive tools leave such files in copied dataset folders."""
    try:
        parts = path.relative_to(below).parts
    except ValueError:
        parts = path.parts
    return not any(part.startswith(".") for part in parts)


def visible_glob(folder: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """``folder.glob(pattern)`` (``rglob`` when ``recursive``), sorted, without hidden files
    or anything inside hidden folders (:func:`visible`). Every adapter lists files
    through this."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    return sorted(p for p in found if visible(p, folder))


def option_pattern(value, **fields) -> str | None:
    """For the adapters' ``remote_patterns`` (:mod:`lmbrain.fetch`): a dataset-relative path option as a listing pattern: ``{field}`` filled with its value,
    or ``*`` when the value is None (every subject, story). ``None`` for an absolute path or
    an unset option (nothing to fetch)."""
    if not value:
        return None
    text = str(value)
    if Path(text).is_absolute():
        return None
    for name, field in fields.items():
        text = text.replace("{" + name + "}", "*" if field is None else str(field))
    while text.startswith("./"):
        text = text[2:]
    return text
