"""Le Petit Prince (Li et al. 2022), OpenNeuro ds003643: English listeners, 9 runs, as published.

::

    <root>/annotation/EN/lppEN_word_information.csv      word, onset, offset, section (1-9)
    <root>/derivatives/**/sub-<id>*task-lpp*run-<n>*bold*.nii.gz   preprocessed 4-D volumes
    <mask>                                               3-D brain mask (config `mask`)

Each run (section of the book) is one story, named ``run-<section>``; a word's onset/offset
are seconds from the start of its section's run. A subject's bold files are found anywhere
under ``derivatives/`` (their names start with the subject id and hold ``task-lpp`` and
``bold``); they are sorted by their ``run-<n>`` entity and matched to the sections in order,
so that run numbering that does not start at 1 still works. Responses are the voxels of the
mask in C order (:class:`~lmbrain.geometry.VolumeGeometry`); a voxel's hemisphere comes from
its world x coordinate (x < 0 is left).

``average_subject: true`` adds the subject ``average``: for each run, the mean over the
dataset's subjects (those in ``average_of`` when given) of their responses, cropped to the
shortest run. Subjects have no repeats: the noise ceiling is the inter-subject one
(:func:`lmbrain.ceilings.isc_ceiling`).
"""

from __future__ import annotations

import re
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
from lmbrain.geometry import VolumeGeometry
from lmbrain.stimulus import Words, read_run_annotation

_RUN = re.compile(r"_run-0*(\d+)")
_SUBJECT = re.compile(r"^(sub-[A-Za-z0-9]+)_")


def story_name(section: int) -> str:
    return f"run-{section}"


class LppDataset:
    """Reader for ds003643 (see the module docstring).

    Parameters
    ----------
    root : str or Path
        The dataset folder.
    tr : float
        Repetition time (s).
    trim : dict
        TRs dropped at each end of every run.
    test_stories : list of str
        Held-out runs (``run-<n>``) when the fit does not use leave-one-run-out.
    annotation : str
        Word table, relative to ``root`` (or absolute).
    mask : str, optional
        Brain mask NIfTI; default the only ``*mask*.nii*`` file under ``derivatives/``.
    task : str
        Text the bold file names contain (``task-lpp`` matches ``task-lppEN``).
    average_subject : bool
        Offer the subject ``average``.
    average_of : list of str, optional
        Subjects averaged (default all the dataset's subjects).
    max_trailing_s : float
        Scanning allowed after a run's last word.
    """

    OPTIONS = {
        "tr": 2.0,
        "trim": {"start": 0, "end": 0},
        "test_stories": None,
        "annotation": "annotation/EN/lppEN_word_information.csv",
        "mask": None,
        "task": "task-lpp",
        "average_subject": False,
        "average_of": None,
        "max_trailing_s": DEFAULT_MAX_TRAILING_S,
    }

    def __init__(self, root: str | Path, **options):
        opts, self.trim_start, self.trim_end = adapter_settings(self.OPTIONS, options)
        self.root = Path(root)
        self.name = self.root.name
        self.tr = float(opts["tr"])
        self.task = str(opts["task"])
        self.average_subject = bool(opts["average_subject"])
        self.average_of = opts["average_of"]
        self.max_trailing_s = float(opts["max_trailing_s"])
        self.annotation_path = resolve(self.root, opts["annotation"])
        self.index_path = self.annotation_path
        self._sections = read_run_annotation(self.annotation_path)
        self.stories = [story_name(s) for s in self._sections]
        self.test_stories = test_stories_option(
            opts["test_stories"] or [self.stories[-1]], self.stories, self.annotation_path
        )
        self.train_stories = [s for s in self.stories if s not in self.test_stories]
        if len(self.train_stories) < 2:
            raise InputError(self.annotation_path, "needs at least two training runs")
        self._mask_opt = opts["mask"]
        self.skipped: list[dict] = []

    # -- layout ----------------------------------------------------------------------------
    @cached_property
    def _bold_files(self) -> dict[str, list[tuple[int, Path]]]:
        """Subject -> (run number, file) of its bold runs, sorted by run."""
        found: dict[str, list[tuple[int, Path]]] = {}
        deriv = self.root / "derivatives"
        if not deriv.is_dir():
            raise InputError(deriv, "derivatives folder not found (is `path` right?)")
        for path in sorted(deriv.rglob("sub-*")):
            name = path.name
            if not (name.endswith((".nii.gz", ".nii")) and self.task in name and "bold" in name):
                continue
            subj, run = _SUBJECT.match(name), _RUN.search(name)
            if subj is None or run is None:
                continue
            found.setdefault(subj.group(1), []).append((int(run.group(1)), path))
        for runs in found.values():
            runs.sort()
        return found

    @cached_property
    def real_subjects(self) -> list[str]:
        return sorted(self._bold_files)

    @cached_property
    def subjects(self) -> list[str]:
        """Subjects with bold runs, then ``average`` when enabled."""
        return self.real_subjects + ([AVERAGE_SUBJECT] if self.average_subject else [])

    @cached_property
    def mask_path(self) -> Path:
        if self._mask_opt is not None:
            return resolve(self.root, self._mask_opt)
        deriv = self.root / "derivatives"
        masks = sorted(p for p in deriv.rglob("*mask*.nii*") if p.is_file())
        if len(masks) != 1:
            raise InputError(
                deriv,
                f"found {len(masks)} *mask*.nii* files; set the dataset's `mask` option to the "
                "brain mask of the preprocessed volumes",
            )
        return masks[0]

    @cached_property
    def _mask(self) -> tuple[np.ndarray, np.ndarray]:
        return load_mask(self.mask_path)

    def stimulus_path(self, story: str) -> Path:
        return self.annotation_path

    def run_path(self, subject: str, story: str) -> Path | None:
        """The bold file of ``subject`` for ``story`` (the k-th run for the k-th section)."""
        runs = self._bold_files.get(subject)
        if runs is None:
            raise InputError(self.root / "derivatives", f"no bold runs for subject '{subject}'")
        k = self.stories.index(story)
        numbers = [n for n, _ in runs]
        sections = list(self._sections)
        if sections[k] in numbers and len(runs) != len(sections):
            return dict(runs)[sections[k]]
        return runs[k][1] if k < len(runs) else None

    def subject_stories(self, subject: str) -> list[str]:
        if subject == AVERAGE_SUBJECT:
            return list(self.stories)
        return [s for s in self.stories if self.run_path(subject, s) is not None]

    # -- reading ---------------------------------------------------------------------------
    def words(self, story: str) -> Words:
        return self._sections[int(story.split("-", 1)[1])]

    def _averaged(self) -> list[str]:
        return list(self.average_of) if self.average_of else self.real_subjects

    def group_responses(self, story: str, subjects: list[str] | None = None) -> np.ndarray:
        """(n_subjects, n_trs, n_voxels) responses to ``story``, cropped to the shortest run."""
        subjects = [s for s in (subjects or self.real_subjects) if s != AVERAGE_SUBJECT]
        runs = [self.responses(s, story) for s in subjects if story in self.subject_stories(s)]
        n = min(r.shape[0] for r in runs)
        return np.stack([r[:n] for r in runs])

    def responses(self, subject: str, story: str) -> np.ndarray:
        """(n_trs, n_voxels) float32 responses in the mask's voxels (C order)."""
        if subject == AVERAGE_SUBJECT:
            return self.group_responses(story, self._averaged()).mean(axis=0)
        path = self.run_path(subject, story)
        if path is None:
            raise InputError(self.root / "derivatives", f"{subject} has no run for {story}")
        return masked_timeseries(path, self._mask[0], self.mask_path)

    def repeats(self, subject: str, story: str) -> None:
        """No repeated presentations in this dataset."""
        return None

    def test_target(self, subject: str, story: str) -> np.ndarray:
        return self.responses(subject, story)

    def geometry(self, subject: str) -> VolumeGeometry:
        mask, affine = self._mask
        return VolumeGeometry(mask=mask, affine=affine)

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        hemi = self.geometry(subject).hemispheres().astype("<U1")
        return {"hemisphere": hemi, "roi": np.full(hemi.size, "")}

    # -- validation ------------------------------------------------------------------------
    def validate(self, subjects: list[str]) -> dict:
        """Check every run of ``subjects`` against the mask and the annotation.

        Raises
        ------
        InputError
            Naming the file: an image whose shape does not match the mask, a run whose TR
            count disagrees with its section's annotation by more than one TR ...
        """
        mask, _ = self._mask
        stories = {
            s: {"n_words": len(self.words(s)), "test": s in self.test_stories} for s in self.stories
        }
        checked = set()
        subj = {}
        for subject in subjects:
            members = self._averaged() if subject == AVERAGE_SUBJECT else [subject]
            for member in members:
                if member in checked:
                    continue
                checked.add(member)
                have = self.subject_stories(member)
                for story in sorted(set(self.stories) - set(have)):
                    self.skipped.append({"subject": member, "story": story, "reason": "no run"})
                for story in have:
                    path = self.run_path(member, story)
                    n_trs = nifti_n_trs(path, mask, self.mask_path)
                    check_run_length(
                        path,
                        n_trs,
                        self.tr,
                        self.words(story),
                        self.max_trailing_s,
                        self.trim_start + self.trim_end,
                    )
                    stories[story].setdefault("n_trs", n_trs)
            subj[subject] = {
                **hemisphere_counts(self.voxels(subject)["hemisphere"]),
                "stories": self.subject_stories(subject),
            }
        return {
            "dataset": self.name,
            "format": "lpp",
            "root": str(self.root),
            "tr": self.tr,
            "trim_start": self.trim_start,
            "trim_end": self.trim_end,
            "mask": str(self.mask_path),
            "stories": stories,
            "train_stories": self.train_stories,
            "test_stories": self.test_stories,
            "subjects": subj,
            "skipped": self.skipped,
        }
