"""LeBel et al. (2023), OpenNeuro ds003020: the Huth-lab story-listening dataset, as published.

::

    <root>/derivative/TextGrids/<story>.TextGrid               Praat TextGrid (phone, word tiers)
    <root>/derivative/preprocessed_data/<UTS0x>/<story>.hf5    HDF5 dataset "data", TRs x voxels
    <root>/derivative/respdict.json                            {story: number}
    <root>/derivative/pycortex-db/<UTS0x>/transforms/<UTS0x>_auto/mask_thick.nii.gz

Every timing convention is the one of the dataset's own loader, HuthLab/deep-fMRI-dataset
(commit eaaa5cd; paths under ``encoding/``):

- **Run length and TR.** ``feature_spaces.py:16-19`` builds each story's TR grid with
  ``load_simulated_trfiles(respdict)`` (``ridge_utils/stimulus_utils.py:79-86``: ``tr=2.0``,
  ``start_time=10.0``, ``pad=5``): ``respdict[story] - 5`` TRs spaced by exactly 2.0 s
  (``TRFile.simulate``, ``stimulus_utils.py:63-66``). The scanner's nominal TR, 2.0045 s (the
  ``TRFile`` default, ``stimulus_utils.py:17``), is only used when real trigger files are read,
  and none are released; the published models are fitted on the 2.0 s grid, so ``tr`` defaults
  to 2.0 here. A run of this adapter has ``respdict[story] - 5`` TRs.
- **Where t = 0 is.** ``soundstarttime = start_time = 10`` and the TR times are taken relative to
  it (``stimulus_utils.py:68-71,83``), plus half a TR (``ridge_utils/DataSequence.py:109-113``):
  TR ``k`` of the run is at ``2k + 1 - 10`` s of the story's TextGrid clock. The story's sound
  (TextGrid 0 s) thus starts 10 s after the run's first TR: the adapter adds ``story_onset_s``
  (default 10) to every TextGrid time, and TR ``k`` is at ``k * tr + tr / 2`` as everywhere in
  lmbrain.
- **Trims and the .hf5 rows.** ``encoding_utils.py:29`` keeps feature rows ``[5 + trim : -trim]``
  with ``trim = 5`` (``encoding.py:23``): the first 10 and last 5 TRs of the run, and
  ``encoding_utils.py:35-46`` / ``ridge.bootstrap_ridge`` fit them row for row against
  ``hf["data"]``. So a released ``.hf5`` has ``respdict - 5 - 10 - 5 = respdict - 20`` rows,
  its row ``j`` being TR ``j + 10`` of the run. The adapter puts back 10 + 5 NaN rows
  (``responses_trimmed: true``) that the workflow's trim (default 10/5, never less) removes.
- **Words.** ``dsutils.py:5-19``: the second tier of the TextGrid (``tiers[1]``, named ``word``),
  labels in ``sentence_start sentence_end br lg ls ns sp`` (lower-cased, braces stripped)
  dropped; a word's time is its interval's midpoint (``DataSequence.py:105-107``). The publisher
  reads both Praat text formats (long ``ooTextFile`` and short ``OldooTextFile``,
  ``ridge_utils/textgrid.py:193-213``).
- **Test story.** ``em_data/sess_to_story.json`` (read by ``encoding.py:42-49``) holds out
  ``wheretheressmoke``; its released ``.hf5`` is read like any other story's
  (``encoding_utils.py:35-46``), so no per-repeat file is part of the published layout:
  ``repeats`` is an option.

Hemispheres are not in the release. They are derived from the subject's pycortex mask,
``derivative/pycortex-db/{subject}/transforms/{subject}_auto/mask_thick.nii.gz`` (the default
``mask``; the responses are its voxels in pycortex's (z, y, x) order, ``mask_order``): a
voxel whose world (scanner RAS) x is negative is left. A ``hemispheres`` file (per-subject
``.npy``/``.tsv``/``.npz``) takes precedence. Without either, reading a subject's voxels stops
with an error that names both options.
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
    option_pattern,
    read_array,
    read_hdf5_data,
    resolve,
    test_stories_option,
    visible_glob,
)
from lmbrain.errors import InputError
from lmbrain.geometry import VolumeGeometry
from lmbrain.stimulus import WORD_TIER_NAMES, Words, read_textgrid, read_textgrid_words

#: TRs the publisher's loader leaves off the end of ``respdict`` (``load_simulated_trfiles(pad=5)``).
RESPDICT_PAD = 5
#: TRs missing from each released ``.hf5`` at the start / end of the run (``[5 + trim : -trim]``,
#: ``trim = 5``: HuthLab/deep-fMRI-dataset ``encoding/encoding_utils.py:29``, ``encoding.py:23``).
RELEASED_TRIM = (10, 5)
#: The pycortex mask whose voxels the responses are (hemispheres and geometry by default).
PYCORTEX_MASK = "derivative/pycortex-db/{subject}/transforms/{subject}_auto/mask_thick.nii.gz"


class LebelDataset:
    """Reader for ds003020 in its published layout (see the module docstring).

    Parameters
    ----------
    root : str or Path
        The dataset folder (holding ``derivative/``).
    tr : float
        Repetition time (s); default 2.0, the publisher loader's TR grid.
    trim : dict
        ``start`` / ``end``: TRs dropped at each end of every run (default 10 / 5, the
        publisher's; with ``responses_trimmed`` never fewer, as the release lacks them).
    story_onset_s : float
        Time of the story's TextGrid 0 s in the run (default 10: the loader's ``start_time``).
    test_stories : list of str
        Held-out stories.
    stories : list of str, optional
        Restrict the dataset to these stories (default: every story with a TextGrid and a
        ``respdict.json`` entry).
    responses_trimmed : bool
        Whether the ``.hf5`` files lack the 10 + 5 trimmed TRs (as published).
    repeats : str, optional
        Path pattern (``{subject}``, ``{story}``) of a test story's repeats: ``.hf5``
        (dataset ``data``) or ``.npy``, repeats x TRs x voxels, trimmed like the responses.
    hemispheres : str, optional
        Path pattern (``{subject}``) of the voxel hemisphere labels.
    mask : str
        Path pattern (``{subject}``) of the NIfTI mask whose voxels the responses are
        (default the release's pycortex ``mask_thick``): geometry and hemispheres (world x).
    mask_order : {"pycortex", "C"}
        Voxel order of the responses within ``mask``: ``pycortex`` (default; the Huth-lab
        files follow pycortex's (z, y, x) arrays, i.e. the NIfTI's Fortran order) or ``C``
        (the NIfTI array's C order).
    max_trailing_s : float
        Silence allowed after the last word.
    word_tier : str, optional
        TextGrid tier of the words (default the tier named ``word``/``words``, else the second
        tier, which the publisher's loader reads).
    """

    OPTIONS = {
        "tr": 2.0,
        "trim": {"start": RELEASED_TRIM[0], "end": RELEASED_TRIM[1]},
        "story_onset_s": 10.0,
        "test_stories": ["wheretheressmoke"],
        "stories": None,
        "responses_trimmed": True,
        "repeats": None,
        "hemispheres": None,
        "mask": PYCORTEX_MASK,
        "max_trailing_s": DEFAULT_MAX_TRAILING_S,
        "word_tier": None,
        "mask_order": "pycortex",
    }

    @classmethod
    def remote_subject(cls, options: dict) -> str:
        """Regex of a bucket key whose first group is its subject (lmbrain.fetch.make_plan)."""
        return r"derivative/preprocessed_data/([^/]+)/"

    @classmethod
    def remote_patterns(
        cls, options: dict, subjects: list[str] | None, audio: bool
    ) -> tuple[list[str], list[str]]:
        """The files of the release this adapter reads for ``subjects`` (None: all).

        ``respdict.json``, the stories' TextGrids, the subjects' ``.hf5`` files, the mask
        (and ``hemispheres``/``repeats`` files, when dataset-relative), and the stories' wav
        files only for a speech model (``audio``). Patterns match one path component per
        ``/`` (:func:`lmbrain.fetch.needed_files`).

        Returns
        -------
        patterns, required
            The patterns, and those that must exist (a subject may lack a story's ``.hf5``:
            the adapter skips it).
        """
        opts = {**cls.OPTIONS, **options}
        stories = opts["stories"] or [None]
        required = ["derivative/respdict.json"]
        optional = []
        for story in stories:
            name = story or "*"
            required.append(f"derivative/TextGrids/{name}.TextGrid")
            if audio:
                required.append(f"stimuli/{name}.wav")
        for subject in subjects or [None]:
            for story in stories:
                optional.append(f"derivative/preprocessed_data/{subject or '*'}/{story or '*'}.hf5")
                optional.append(option_pattern(opts["repeats"], subject=subject, story=story))
            required.append(option_pattern(opts["mask"], subject=subject))
            required.append(option_pattern(opts["hemispheres"], subject=subject))
        required = sorted({p for p in required if p})
        return sorted({*required, *(p for p in optional if p)}), required

    def __init__(self, root: str | Path, **options):
        opts, self.trim_start, self.trim_end = adapter_settings(self.OPTIONS, options)
        self.root = Path(root)
        self.name = self.root.name
        self.tr = float(opts["tr"])
        self.story_onset_s = float(opts["story_onset_s"])
        self.responses_trimmed = bool(opts["responses_trimmed"])
        self.max_trailing_s = float(opts["max_trailing_s"])
        self.word_tier = opts["word_tier"]
        self._repeats, self._hemis, self._mask = opts["repeats"], opts["hemispheres"], opts["mask"]
        if opts["mask_order"] not in ("pycortex", "C"):
            raise InputError(
                self.root, f"mask_order must be pycortex or C, not {opts['mask_order']!r}"
            )
        self.mask_order = opts["mask_order"]
        if self.responses_trimmed and (
            self.trim_start < RELEASED_TRIM[0] or self.trim_end < RELEASED_TRIM[1]
        ):
            raise InputError(
                self.root,
                f"trim {{start: {self.trim_start}, end: {self.trim_end}}} keeps TRs the release "
                f"does not have: its .hf5 files lack the first {RELEASED_TRIM[0]} and last "
                f"{RELEASED_TRIM[1]} TRs of every run (trim must be at least that, or set "
                "responses_trimmed: false for untrimmed files)",
            )
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
        grids = {p.stem for p in visible_glob(self.textgrids, "*.TextGrid")}
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

    def n_trs(self, story: str) -> int:
        """TRs of ``story``'s run: ``respdict - 5``, the loader's simulated TR grid."""
        return self.respdict[story] - RESPDICT_PAD

    def n_released_rows(self, story: str) -> int:
        """Rows of ``story``'s ``.hf5``: the run less the 10 + 5 trimmed TRs (if trimmed)."""
        return self.n_trs(story) - (sum(RELEASED_TRIM) if self.responses_trimmed else 0)

    def stimulus_onset(self, story: str) -> float:
        """Seconds from the run's first TR to the story's sound (TextGrid 0 s, wav 0 s)."""
        return self.story_onset_s

    # -- layout ----------------------------------------------------------------------------
    @cached_property
    def subjects(self) -> list[str]:
        """Subject folders of ``derivative/preprocessed_data``."""
        base = self.deriv / "preprocessed_data"
        return [p.name for p in visible_glob(base, "*") if p.is_dir()]

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
        """Words of ``story`` from its TextGrid's word tier, in seconds from the run's start."""
        path = self.stimulus_path(story)
        tier = self.word_tier
        if tier is None:
            names = list(read_textgrid(path))
            named = [t for t in names if t.strip().lower() in WORD_TIER_NAMES]
            # the publisher's loader reads the second tier (dsutils.py:14, ``tiers[1]``)
            tier = named[0] if named else (names[1] if len(names) > 1 else None)
        words = read_textgrid_words(path, tier)
        shift = self.stimulus_onset(story)
        return Words(words.words, words.onsets + shift, words.offsets + shift)

    def _pad(self, arr: np.ndarray, axis: int) -> np.ndarray:
        if not self.responses_trimmed:
            return arr
        pad = [(0, 0)] * arr.ndim
        pad[axis] = RELEASED_TRIM
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

    def _mask_path(self, subject: str) -> Path | None:
        return resolve(self.root, self._mask, subject=subject)

    def geometry(self, subject: str) -> VolumeGeometry | None:
        """The subject's voxel mask (default: the release's pycortex ``mask_thick``).

        None when the default mask is not on disk (``derivative/pycortex-db`` not downloaded).
        """
        path = self._mask_path(subject)
        if path is None or (self._mask == PYCORTEX_MASK and not path.is_file()):
            return None
        mask, affine = load_mask(path)
        if self.mask_order == "pycortex":
            # pycortex holds volumes as (z, y, x) arrays (the NIfTI data transposed); the
            # responses are that array's mask voxels in C order. The transposed mask with the
            # affine's columns swapped describes the same voxels in the contract's C order.
            mask, affine = mask.transpose(2, 1, 0), affine[:, [2, 1, 0, 3]]
        return VolumeGeometry(mask=np.ascontiguousarray(mask), affine=affine)

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        """``hemisphere`` ('L'/'R') and ``roi`` ('') per voxel.

        Raises
        ------
        InputError
            When neither a ``hemispheres`` file nor the mask is there (the release has no
            hemisphere labels), naming the mask looked for and both options.
        """
        n_vox = self._n_voxels(subject)
        hemi_path = resolve(self.root, self._hemis, subject=subject)
        if hemi_path is not None:
            hemi, source = read_hemispheres(hemi_path), hemi_path
        else:
            geo, source = self.geometry(subject), self._mask_path(subject)
            if geo is None:
                raise InputError(
                    source,
                    "not found: ds003020 has no hemisphere labels, which the analysis derives "
                    "from this pycortex mask (world x < 0 is left). Download "
                    f"derivative/pycortex-db/{subject}, or set `mask` (a NIfTI mask in the "
                    "responses' voxel order) or `hemispheres` (L/R per voxel)",
                )
            hemi = geo.hemispheres()
        if hemi.size != n_vox:
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
                "n_trs": self.n_trs(s),
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
            "story_onset_s": self.story_onset_s,
            "trim_start": self.trim_start,
            "trim_end": self.trim_end,
            "stories": stories,
            "train_stories": self.train_stories,
            "test_stories": self.test_stories,
            "subjects": subj,
            "skipped": self.skipped,
        }

    def _check_story(self, subject: str, story: str, n_vox: int) -> None:
        expected = self.n_released_rows(story)
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
                relation = (
                    f"respdict - {RESPDICT_PAD + sum(RELEASED_TRIM)}: the loader's pad "
                    f"{RESPDICT_PAD} and the trims {RELEASED_TRIM[0]}/{RELEASED_TRIM[1]}"
                    if self.responses_trimmed
                    else f"respdict - {RESPDICT_PAD} (responses_trimmed: false)"
                )
                raise InputError(
                    path,
                    f"has {n_trs} TRs but {self.respdict_path} gives {self.respdict[story]} for "
                    f"{story}, so {expected} were expected ({relation})",
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
