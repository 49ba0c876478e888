"""LeBel et al. (2023), OpenNeuro ds003020: the Huth-lab story-listening dataset, as published.

::

    <root>/derivative/TextGrids/<story>.TextGrid               Praat TextGrid, tier "word"
    <root>/derivative/preprocessed_data/<UTS0x>/<story>.hf5    HDF5 dataset "data", TRs x voxels
    <root>/derivative/respdict.json                            {story: number of TRs}

The published responses hold the TRs kept after the conventional trim (10 at the start, 5 at
the end): with ``responses_trimmed: true`` (the default) the adapter puts back ``trim.start`` and
``trim.end`` rows of NaN so that a run has its full length; the workflow's trim removes them
again, and the features are computed on the full run as in the original pipeline. Each word's
time is the midpoint of its TextGrid interval; TR ``k`` is acquired at ``k * tr + tr / 2``.

Hemispheres are not in the release: give ``hemispheres`` (a per-subject ``.npy`` or ``.tsv``
of L/R per voxel, or an ``.npz`` holding a ``hemisphere`` array) or ``mask`` (a per-subject
NIfTI mask in the voxel order of the responses, whose world x gives the hemisphere and which
becomes the subject's :class:`~lmbrain.geometry.VolumeGeometry`). Without either, every voxel's
hemisphere is unknown ('') and the left/right outputs are left out.
"""

from __future__ import annotations

import csv
import json
from functools import cached_property
from pathlib import Path

import numpy as np

from lmbrain.datasets.base import (
    DEFAULT_MAX_TRAILING_S,
    adapter_settings,
    check_run_length,
    hdf5_data_shape,
    hemisphere_counts,
    load_mask,
    read_array,
    read_hdf5_data,
    resolve,
    test_stories_option,
)
from lmbrain.errors import InputError
from lmbrain.geometry import VolumeGeometry
from lmbrain.stimulus import Words, read_textgrid_words


class LebelDataset:
    """Reader for ds003020 in its published layout (see the module docstring).

    Parameters
    ----------
    root : str or Path
        The dataset folder (holding ``derivative/``).
    tr : float
        Repetition time (s).
    trim : dict
        ``start`` / ``end``: TRs dropped at each end of every story.
    test_stories : list of str
        Held-out stories.
    stories : list of str, optional
        Restrict the dataset to these stories (default: every story with a TextGrid and a
        ``respdict.json`` entry).
    responses_trimmed : bool
        Whether the ``.hf5`` files lack the trimmed TRs (as published).
    repeats : str, optional
        Path pattern (``{subject}``, ``{story}``) of a test story's repeats: ``.hf5``
        (dataset ``data``) or ``.npy``, repeats x TRs x voxels, trimmed like the responses.
    hemispheres, mask : str, optional
        Path patterns (``{subject}``) of the voxel hemisphere labels or of a NIfTI mask.
    mask_order : {"pycortex", "C"}
        Voxel order of the responses within ``mask``: ``pycortex`` (default; the Huth-lab
        files follow pycortex's (z, y, x) arrays, i.e. the NIfTI's Fortran order) or ``C``
        (the NIfTI array's C order).
    max_trailing_s : float
        Silence allowed after the last word.
    word_tier : str, optional
        TextGrid tier of the words (default ``word``/``words``).
    """

    OPTIONS = {
        "tr": 2.0045,
        "trim": {"start": 10, "end": 5},
        "test_stories": ["wheretheressmoke"],
        "stories": None,
        "responses_trimmed": True,
        "repeats": None,
        "hemispheres": None,
        "mask": None,
        "max_trailing_s": DEFAULT_MAX_TRAILING_S,
        "word_tier": None,
        "mask_order": "pycortex",
    }

    def __init__(self, root: str | Path, **options):
        opts, self.trim_start, self.trim_end = adapter_settings(self.OPTIONS, options)
        self.root = Path(root)
        self.name = self.root.name
        self.tr = float(opts["tr"])
        self.responses_trimmed = bool(opts["responses_trimmed"])
        self.max_trailing_s = float(opts["max_trailing_s"])
        self.word_tier = opts["word_tier"]
        self._repeats, self._hemis, self._mask = opts["repeats"], opts["hemispheres"], opts["mask"]
        if opts["mask_order"] not in ("pycortex", "C"):
            raise InputError(
                self.root, f"mask_order must be pycortex or C, not {opts['mask_order']!r}"
            )
        self.mask_order = opts["mask_order"]
        self.deriv = self.root / "derivative"
        self.textgrids = self.deriv / "TextGrids"
        self.respdict_path = self.deriv / "respdict.json"
        self.index_path = self.respdict_path
        if not self.textgrids.is_dir():
            raise InputError(self.textgrids, "TextGrids folder not found (is `path` right?)")
        if not self.respdict_path.is_file():
            raise InputError(self.respdict_path, "respdict.json (TRs per story) not found")
        try:
            self.respdict = {
                str(k): int(v) for k, v in json.loads(self.respdict_path.read_text()).items()
            }
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(self.respdict_path, f"expected {{story: n_trs}} JSON ({exc})") from exc
        grids = {p.stem for p in self.textgrids.glob("*.TextGrid")}
        available = sorted(grids & set(self.respdict))
        if opts["stories"]:
            missing = [s for s in opts["stories"] if s not in available]
            if missing:
                raise InputError(
                    self.textgrids, f"stories {missing} need a TextGrid and a respdict.json entry"
                )
            available = sorted(opts["stories"])
        if not available:
            raise InputError(self.textgrids, "no story has both a TextGrid and a respdict entry")
        self.stories = available
        self.test_stories = test_stories_option(opts["test_stories"], self.stories, self.textgrids)
        self.train_stories = [s for s in self.stories if s not in self.test_stories]
        if len(self.train_stories) < 2:
            raise InputError(self.textgrids, "needs at least two training stories")
        self.skipped: list[dict] = []

    # -- layout ----------------------------------------------------------------------------
    @cached_property
    def subjects(self) -> list[str]:
        """Subject folders of ``derivative/preprocessed_data``."""
        base = self.deriv / "preprocessed_data"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def stimulus_path(self, story: str) -> Path:
        return self.textgrids / f"{story}.TextGrid"

    def audio_path(self, story: str) -> Path:
        """``stimuli/<story>.wav`` of the OpenNeuro release (for speech models)."""
        return self.root / "stimuli" / f"{story}.wav"

    def response_path(self, subject: str, story: str) -> Path:
        return self.deriv / "preprocessed_data" / subject / f"{story}.hf5"

    def subject_stories(self, subject: str) -> list[str]:
        """Stories with a response file for ``subject`` (or repeats, for test stories)."""
        return [
            s
            for s in self.stories
            if self.response_path(subject, s).is_file() or self._repeats_path(subject, s)
        ]

    def _repeats_path(self, subject: str, story: str) -> Path | None:
        if story not in self.test_stories:
            return None
        path = resolve(self.root, self._repeats, subject=subject, story=story)
        return path if path is not None and path.is_file() else None

    # -- reading ---------------------------------------------------------------------------
    def words(self, story: str) -> Words:
        """Words of ``story`` from its TextGrid's word tier."""
        return read_textgrid_words(self.stimulus_path(story), self.word_tier)

    def _pad(self, arr: np.ndarray, axis: int) -> np.ndarray:
        if not self.responses_trimmed:
            return arr
        pad = [(0, 0)] * arr.ndim
        pad[axis] = (self.trim_start, self.trim_end)
        return np.pad(arr, pad, constant_values=np.nan)

    def responses(self, subject: str, story: str) -> np.ndarray:
        """(n_trs, n_voxels) float32 responses over the whole run (trimmed TRs are NaN)."""
        return self._pad(read_hdf5_data(self.response_path(subject, story), 2), 0)

    def repeats(self, subject: str, story: str) -> np.ndarray | None:
        """(n_repeats, n_trs, n_voxels) repeats of a test story, or None without them."""
        path = self._repeats_path(subject, story)
        return None if path is None else self._pad(read_array(path, 3), 1)

    def test_target(self, subject: str, story: str) -> np.ndarray:
        reps = self.repeats(subject, story)
        return reps.mean(axis=0) if reps is not None else self.responses(subject, story)

    def _n_voxels(self, subject: str) -> int:
        for story in self.subject_stories(subject):
            path = self.response_path(subject, story)
            if path.is_file():
                return hdf5_data_shape(path)[1]
        raise InputError(self.deriv / "preprocessed_data" / subject, "no response file")

    def geometry(self, subject: str) -> VolumeGeometry | None:
        """The subject's voxel mask when ``mask`` is configured, else None."""
        path = resolve(self.root, self._mask, subject=subject)
        if path is None:
            return None
        mask, affine = load_mask(path)
        if self.mask_order == "pycortex":
            # pycortex holds volumes as (z, y, x) arrays (the NIfTI data transposed); the
            # responses are that array's mask voxels in C order. The transposed mask with the
            # affine's columns swapped describes the same voxels in the contract's C order.
            mask, affine = mask.transpose(2, 1, 0), affine[:, [2, 1, 0, 3]]
        return VolumeGeometry(mask=np.ascontiguousarray(mask), affine=affine)

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        """``hemisphere`` ('L'/'R', '' where unknown) and ``roi`` ('') per voxel."""
        n_vox = self._n_voxels(subject)
        hemi_path = resolve(self.root, self._hemis, subject=subject)
        if hemi_path is not None:
            hemi = read_hemispheres(hemi_path)
        elif self._mask is not None:
            hemi = self.geometry(subject).hemispheres()
        else:
            hemi = np.full(n_vox, "")
        if hemi.size != n_vox:
            source = hemi_path or resolve(self.root, self._mask, subject=subject)
            raise InputError(source, f"gives {hemi.size} voxels but the responses have {n_vox}")
        return {"hemisphere": hemi.astype("<U1"), "roi": np.full(n_vox, "")}

    # -- validation ------------------------------------------------------------------------
    def validate(self, subjects: list[str]) -> dict:
        """Check every file the workflow reads for ``subjects`` and return a manifest.

        Raises
        ------
        InputError
            Naming the first bad file (TextGrid without a word tier, hf5 without ``data``,
            TR count disagreeing with respdict.json or with the TextGrid ...).
        """
        words = {story: self.words(story) for story in self.stories}
        stories = {
            s: {
                "n_trs": self._full(self.respdict[s]),
                "n_words": len(words[s]),
                "test": s in self.test_stories,
            }
            for s in self.stories
        }
        for story in self.stories:
            check_run_length(
                self.respdict_path,
                stories[story]["n_trs"],
                self.tr,
                words[story],
                self.max_trailing_s,
                self.trim_start + self.trim_end,
            )
        subj = {}
        for subject in subjects:
            folder = self.deriv / "preprocessed_data" / subject
            if not folder.is_dir():
                raise InputError(folder, f"no response folder for subject '{subject}'")
            have = self.subject_stories(subject)
            for story in sorted(set(self.stories) - set(have)):
                self.skipped.append(
                    {"subject": subject, "story": story, "reason": "no response file"}
                )
            if not any(s in have for s in self.test_stories):
                raise InputError(folder, f"has none of the test stories {self.test_stories}")
            n_vox = self._n_voxels(subject)
            for story in have:
                self._check_story(subject, story, n_vox)
            subj[subject] = {
                **hemisphere_counts(self.voxels(subject)["hemisphere"]),
                "stories": have,
            }
        return {
            "dataset": self.name,
            "format": "lebel",
            "root": str(self.root),
            "tr": self.tr,
            "trim_start": self.trim_start,
            "trim_end": self.trim_end,
            "stories": stories,
            "train_stories": self.train_stories,
            "test_stories": self.test_stories,
            "subjects": subj,
            "skipped": self.skipped,
        }

    def _full(self, n: int) -> int:
        return n + (self.trim_start + self.trim_end if self.responses_trimmed else 0)

    def _check_story(self, subject: str, story: str, n_vox: int) -> None:
        expected = self.respdict[story]
        paths = [self.response_path(subject, story)]
        rep = self._repeats_path(subject, story)
        if rep is not None:
            paths.append(rep)
        for path in paths:
            if not path.is_file():
                continue
            shape = (
                hdf5_data_shape(path)
                if path.suffix != ".npy"
                else np.load(path, mmap_mode="r").shape
            )
            n_trs, n_v = shape[-2], shape[-1]
            if n_trs != expected:
                raise InputError(
                    path, f"has {n_trs} TRs but {self.respdict_path} gives {expected} for {story}"
                )
            if n_v != n_vox:
                raise InputError(path, f"has {n_v} voxels but other runs of {subject} have {n_vox}")


def read_hemispheres(path: Path) -> np.ndarray:
    """Hemisphere labels ('L'/'R') per voxel from ``.npy``, ``.tsv`` or ``.npz``.

    ``.npy``: strings L/R, or numbers (0 = left, 1 = right). ``.tsv``: a ``hemisphere`` column.
    ``.npz``: a ``hemisphere`` array, or ``mask`` (3-D bool) with ``affine`` (world x < 0 is
    left).
    """
    if not path.is_file():
        raise InputError(path, "hemisphere file not found")
    if path.suffix == ".tsv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "hemisphere" not in rows[0]:
            raise InputError(path, "needs a tab-separated header with a `hemisphere` column")
        hemi = np.array([r["hemisphere"].strip().upper() for r in rows])
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "hemisphere" in z:
                hemi = np.char.upper(np.asarray(z["hemisphere"]).astype(str))
            elif "mask" in z and "affine" in z:
                hemi = VolumeGeometry(mask=z["mask"].astype(bool), affine=z["affine"]).hemispheres()
            else:
                raise InputError(path, "needs a `hemisphere` array, or `mask` and `affine`")
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(path, f"not a readable .npy array ({exc})") from exc
        if np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
            hemi = np.where(arr.astype(int) == 0, "L", "R")
        else:
            hemi = np.char.upper(arr.astype(str))
    hemi = np.char.strip(hemi.ravel().astype(str))
    bad = sorted(set(hemi.tolist()) - {"L", "R"})
    if bad:
        raise InputError(path, f"hemisphere must be L or R, found {bad[:5]}")
    return hemi


__all__ = ["LebelDataset", "read_hemispheres"]
