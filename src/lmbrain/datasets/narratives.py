"""Narratives (Nastase et al. 2021), OpenNeuro ds002345, as published (BIDS).

::

    <root>/stimuli/gentle/<story>/align.json             Gentle alignment of the transcript
    <root>/task-<story>_bold.json                        sidecar: RepetitionTime (or per subject)
    <root>/<derivatives>/sub-*/func/sub-*_task-<story>_*<space>*bold.nii.gz        volume
    <root>/<derivatives>/sub-*/func/sub-*_task-<story>_*<space>_hemi-{L,R}*.func.gii surface

``derivatives`` defaults to ``derivatives/afni-nosmooth``; ``space`` is the BIDS ``space-``
entity the file names hold (``MNI152NLin2009cAsym`` for volumes, ``fsaverage6`` for surfaces);
``surface: true`` reads the GIfTI pairs (left then right columns, a
:class:`~lmbrain.geometry.SurfaceGeometry` on mesh ``mesh``), else the volumes inside ``mask``
(a NIfTI path, ``{subject}`` allowed; a :class:`~lmbrain.geometry.VolumeGeometry`, hemisphere
from world x). A story's words are the Gentle words aligned to the audio (``case ==
"success"``), shifted by the story's onset in the scan (``stimulus_onsets``, seconds; default
0). The TR comes from the BIDS sidecar ``RepetitionTime`` (the first of the subject's own sidecar
in ``sub-*/func/`` and the top-level ``task-<story>_bold.json``) unless ``tr`` is set; the
stories fitted together must share one TR.

Subjects heard few of the stories: a subject lacking a story is a logged skip listed in the
manifest (``skipped``), and its fits use the stories it has. ``average_subject: true`` adds the
subject ``average`` (per story, the mean over the subjects who heard it), the group model for
cross-validation by story; ``fitting.cv: by_subject`` fits each subject's model on the other
subjects' runs (see :func:`lmbrain.encoding.fit_encoding_model`).
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path

import numpy as np

from lmbrain.datasets.base import (
    AVERAGE_SUBJECT,
    DEFAULT_MAX_TRAILING_S,
    adapter_settings,
    check_run_length,
    hemisphere_counts,
    load_mask,
    masked_timeseries,
    nifti_n_trs,
    resolve,
    test_stories_option,
)
from lmbrain.errors import InputError
from lmbrain.geometry import SurfaceGeometry, VolumeGeometry
from lmbrain.stimulus import Words, read_gentle_alignment

log = logging.getLogger(__name__)


class NarrativesDataset:
    """Reader for ds002345 (see the module docstring).

    Parameters
    ----------
    root : str or Path
    tr : float, optional
        Overrides the sidecars' ``RepetitionTime``.
    trim : dict
        TRs dropped at each end of every run.
    test_stories : list of str, optional
        Held-out stories (default the last story in alphabetical order).
    stories : list of str, optional
        Stories (tasks) to use (default every ``stimuli/gentle/<story>/align.json``).
    derivatives, space, surface, mesh, mask
        Which preprocessed files to read (module docstring).
    stimulus_onsets : dict, optional
        Story -> seconds from the run's start to the story's start.
    average_subject : bool
        Offer the subject ``average``.
    max_trailing_s : float
        Scanning allowed after a run's last word.
    """

    OPTIONS = {
        "tr": None,
        "trim": {"start": 0, "end": 0},
        "test_stories": None,
        "stories": None,
        "derivatives": "derivatives/afni-nosmooth",
        "space": "MNI152NLin2009cAsym",
        "surface": False,
        "mesh": "fsaverage6",
        "mask": None,
        "stimulus_onsets": None,
        "average_subject": False,
        "max_trailing_s": DEFAULT_MAX_TRAILING_S,
    }

    def __init__(self, root: str | Path, **options):
        opts, self.trim_start, self.trim_end = adapter_settings(self.OPTIONS, options)
        self.root = Path(root)
        self.name = self.root.name
        self.deriv = resolve(self.root, opts["derivatives"])
        self.space = str(opts["space"])
        self.surface = bool(opts["surface"])
        self.mesh = str(opts["mesh"])
        self._mask_opt = opts["mask"]
        self.onsets = dict(opts["stimulus_onsets"] or {})
        self.average_subject = bool(opts["average_subject"])
        self.max_trailing_s = float(opts["max_trailing_s"])
        gentle = self.root / "stimuli" / "gentle"
        self.index_path = self.root / "dataset_description.json"
        if not self.index_path.is_file():
            self.index_path = gentle
        if not gentle.is_dir():
            raise InputError(gentle, "Gentle alignments folder not found (is `path` right?)")
        found = sorted(p.parent.name for p in gentle.glob("*/align.json"))
        if opts["stories"]:
            missing = [s for s in opts["stories"] if s not in found]
            if missing:
                raise InputError(gentle, f"stories {missing} have no <story>/align.json")
            found = sorted(opts["stories"])
        if len(found) < 3:
            raise InputError(gentle, f"needs at least 3 stories (found {found})")
        self.stories = found
        self.test_stories = test_stories_option(
            opts["test_stories"] or [self.stories[-1]], self.stories, gentle
        )
        self.train_stories = [s for s in self.stories if s not in self.test_stories]
        self.tr = float(opts["tr"]) if opts["tr"] is not None else self._sidecar_tr()
        self.skipped: list[dict] = []

    # -- layout ----------------------------------------------------------------------------
    def _sidecars(self, story: str) -> list[Path]:
        top = self.root / f"task-{story}_bold.json"
        own = sorted(self.root.glob(f"sub-*/func/sub-*_task-{story}_*bold.json"))
        return ([own[0]] if own else []) + ([top] if top.is_file() else [])

    def _sidecar_tr(self) -> float:
        trs = {}
        for story in self.stories:
            for path in self._sidecars(story):
                try:
                    trs[story] = (float(json.loads(path.read_text())["RepetitionTime"]), path)
                    break
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise InputError(path, f"no numeric RepetitionTime ({exc})") from exc
            else:
                raise InputError(
                    self.root / f"task-{story}_bold.json",
                    "no BIDS sidecar with RepetitionTime for this task; set the dataset's `tr`",
                )
        values = {tr for tr, _ in trs.values()}
        if len(values) > 1:
            raise InputError(
                next(iter(trs.values()))[1],
                f"stories have different TRs {sorted(values)}; fit them as separate datasets "
                "(the `stories` option) or set `tr`",
            )
        return values.pop()

    @cached_property
    def real_subjects(self) -> list[str]:
        if not self.deriv.is_dir():
            raise InputError(self.deriv, "derivatives folder not found (see `derivatives`)")
        return sorted(p.name for p in self.deriv.glob("sub-*") if p.is_dir())

    @cached_property
    def subjects(self) -> list[str]:
        return self.real_subjects + ([AVERAGE_SUBJECT] if self.average_subject else [])

    def stimulus_path(self, story: str) -> Path:
        return self.root / "stimuli" / "gentle" / story / "align.json"

    def run_files(self, subject: str, story: str) -> list[Path] | None:
        """The subject's files for ``story``: [volume] or [left, right] GIfTIs; None if absent."""
        folder = self.deriv / subject / "func"
        prefix = f"{subject}_task-{story}_"
        space = f"space-{self.space}"
        names = (
            sorted(p for p in folder.glob(f"{prefix}*") if space in p.name and p.is_file())
            if folder.is_dir()
            else []
        )
        if self.surface:
            pair = []
            for hemi in ("L", "R"):
                match = [
                    p for p in names if f"hemi-{hemi}" in p.name and p.name.endswith(".func.gii")
                ]
                pair.append(match[0] if match else None)
            return pair if all(pair) else None
        vols = [p for p in names if "bold" in p.name and p.name.endswith((".nii.gz", ".nii"))]
        return vols[:1] or None

    def subject_stories(self, subject: str) -> list[str]:
        if subject == AVERAGE_SUBJECT:
            return list(self.stories)
        return [s for s in self.stories if self.run_files(subject, s) is not None]

    # -- reading ---------------------------------------------------------------------------
    def words(self, story: str) -> Words:
        words, n_skipped = read_gentle_alignment(self.stimulus_path(story))
        if n_skipped:
            log.info("%s: %d words Gentle did not align are left out", story, n_skipped)
        shift = float(self.onsets.get(story, 0.0))
        if shift:
            words = Words(words.words, words.onsets + shift, words.offsets + shift)
        return words

    def _mask_path(self, subject: str) -> Path:
        if self._mask_opt is None:
            raise InputError(self.deriv, "volume data need the dataset's `mask` option")
        return resolve(self.root, self._mask_opt, subject=subject)

    def geometry(self, subject: str):
        if self.surface:
            n = self._n_vertices(subject)
            hemi = np.array(["L"] * n["L"] + ["R"] * n["R"])
            vertex = np.concatenate([np.arange(n["L"]), np.arange(n["R"])])
            return SurfaceGeometry(mesh=self.mesh, hemisphere=hemi, vertex=vertex, n_vertices=n)
        mask, affine = load_mask(self._mask_path(subject))
        return VolumeGeometry(mask=mask, affine=affine)

    def _first_files(self, subject: str) -> list[Path]:
        members = self.real_subjects if subject == AVERAGE_SUBJECT else [subject]
        for member in members:
            for story in self.subject_stories(member):
                return self.run_files(member, story)
        raise InputError(self.deriv / subject, f"no run of {self.stories} in space-{self.space}")

    def _n_vertices(self, subject: str) -> dict:
        left, right = self._first_files(subject)
        return {"L": _gifti_shape(left)[1], "R": _gifti_shape(right)[1]}

    def responses(self, subject: str, story: str) -> np.ndarray:
        """(n_trs, n_columns) float32 responses (voxels of the mask, or L then R vertices)."""
        if subject == AVERAGE_SUBJECT:
            return self.group_responses(story).mean(axis=0)
        files = self.run_files(subject, story)
        if files is None:
            raise InputError(self.deriv / subject, f"no {story} run in space-{self.space}")
        if self.surface:
            left, right = (_read_gifti(p) for p in files)
            if left.shape[0] != right.shape[0]:
                raise InputError(
                    files[1], f"{right.shape[0]} TRs but {files[0]} has {left.shape[0]}"
                )
            return np.concatenate([left, right], axis=1)
        mask_path = self._mask_path(subject)
        return masked_timeseries(files[0], load_mask(mask_path)[0], mask_path)

    def group_responses(self, story: str, subjects: list[str] | None = None) -> np.ndarray:
        """(n_subjects, n_trs, n_columns) responses of the subjects who heard ``story``."""
        subjects = [s for s in (subjects or self.real_subjects) if s != AVERAGE_SUBJECT]
        runs = [self.responses(s, story) for s in subjects if self.run_files(s, story)]
        if not runs:
            raise InputError(self.stimulus_path(story), "no subject has a run of this story")
        n = min(r.shape[0] for r in runs)
        return np.stack([r[:n] for r in runs])

    def repeats(self, subject: str, story: str) -> None:
        return None

    def test_target(self, subject: str, story: str) -> np.ndarray:
        return self.responses(subject, story)

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        hemi = self.geometry(subject).hemispheres().astype("<U1")
        return {"hemisphere": hemi, "roi": np.full(hemi.size, "")}

    # -- validation ------------------------------------------------------------------------
    def _n_trs(self, subject: str, story: str) -> tuple[int, Path, int]:
        files = self.run_files(subject, story)
        if self.surface:
            shapes = [_gifti_shape(p) for p in files]
            if shapes[0][0] != shapes[1][0]:
                raise InputError(files[1], f"{shapes[1][0]} TRs but {files[0]} has {shapes[0][0]}")
            return shapes[0][0], files[0], shapes[0][1] + shapes[1][1]
        mask_path = self._mask_path(subject)
        mask = load_mask(mask_path)[0]
        return nifti_n_trs(files[0], mask, mask_path), files[0], int(mask.sum())

    def validate(self, subjects: list[str]) -> dict:
        """Check the runs of ``subjects``; a missing story is a logged skip, not an error.

        Raises
        ------
        InputError
            A run whose TR count disagrees with its story's alignment by more than one TR,
            an image that does not match the mask, a subject with fewer than 2 stories ...
        """
        words = {s: self.words(s) for s in self.stories}
        stories = {s: {"n_words": len(words[s]), "test": s in self.test_stories} for s in words}
        subj, checked = {}, set()
        for subject in subjects:
            members = self.real_subjects if subject == AVERAGE_SUBJECT else [subject]
            if subject != AVERAGE_SUBJECT and not (self.deriv / subject).is_dir():
                raise InputError(self.deriv / subject, f"no folder for subject '{subject}'")
            for member in members:
                if member in checked:
                    continue
                checked.add(member)
                have = self.subject_stories(member)
                for story in sorted(set(self.stories) - set(have)):
                    log.warning("%s has no %s run in space-%s: skipped", member, story, self.space)
                    self.skipped.append(
                        {
                            "subject": member,
                            "story": story,
                            "reason": f"no run in space-{self.space}",
                        }
                    )
                for story in have:
                    n_trs, path, _ = self._n_trs(member, story)
                    check_run_length(
                        path,
                        n_trs,
                        self.tr,
                        words[story],
                        self.max_trailing_s,
                        self.trim_start + self.trim_end,
                    )
                    stories[story].setdefault("n_trs", n_trs)
            have = self.subject_stories(subject)
            if not have:
                raise InputError(self.deriv / subject, f"no run of {self.stories}")
            subj[subject] = {
                **hemisphere_counts(self.voxels(subject)["hemisphere"]),
                "stories": have,
                "missing_stories": sorted(set(self.stories) - set(have)),
            }
        return {
            "dataset": self.name,
            "format": "narratives",
            "root": str(self.root),
            "tr": self.tr,
            "trim_start": self.trim_start,
            "trim_end": self.trim_end,
            "space": self.space,
            "surface": self.surface,
            "stories": stories,
            "train_stories": self.train_stories,
            "test_stories": self.test_stories,
            "subjects": subj,
            "skipped": self.skipped,
        }


def _gifti_shape(path: Path) -> tuple[int, int]:
    """(n_trs, n_vertices) of a functional GIfTI (one data array per TR), from its XML header.

    The data arrays' ``Dim0`` attributes are read without decoding the data, so checking every
    run of a large dataset when the workflow starts stays fast.
    """
    import xml.etree.ElementTree as ET

    if not path.is_file():
        raise InputError(path, "GIfTI file not found")
    sizes, n = set(), 0
    try:
        for _, elem in ET.iterparse(path, events=("start",)):
            if elem.tag == "DataArray":
                n += 1
                dims = [
                    int(elem.get(f"Dim{i}", 1)) for i in range(int(elem.get("Dimensionality", 1)))
                ]
                sizes.add(tuple(dims))
    except (ET.ParseError, ValueError) as exc:
        raise InputError(path, f"not a readable GIfTI file ({exc})") from exc
    if n == 0:
        raise InputError(path, "no data arrays (expected one per TR)")
    if len(sizes) != 1:
        raise InputError(path, f"data arrays of different shapes {sorted(sizes)}")
    dims = sizes.pop()
    if n == 1 and len(dims) == 2:  # one (vertices, TRs) array
        return dims[1], dims[0]
    return n, int(np.prod(dims))


def _load_gifti(path: Path):
    import nibabel as nib

    if not path.is_file():
        raise InputError(path, "GIfTI file not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for bad files
        raise InputError(path, f"not a readable GIfTI image ({exc})") from exc
    if not getattr(img, "darrays", None):
        raise InputError(path, "no data arrays (expected one per TR)")
    return img


def _read_gifti(path: Path) -> np.ndarray:
    """(n_trs, n_vertices) float32 from a functional GIfTI."""
    img = _load_gifti(path)
    if len(img.darrays) == 1 and np.asarray(img.darrays[0].data).ndim == 2:
        return np.asarray(img.darrays[0].data, dtype=np.float32).T
    return np.stack([np.asarray(d.data, dtype=np.float32).ravel() for d in img.darrays])
