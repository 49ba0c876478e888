"""Le Petit Prince (Li et al. 2022), OpenNeuro ds003643: English listeners, 9 runs, as released.

::

    <root>/annotation/EN/lppEN_word_information.csv   word, onset, offset, section (1-9), ...
    <root>/derivatives/sub-EN057/func/sub-EN057_task-lppEN_run-15_space-MNIColin27_desc-preproc_bold.nii.gz

Sources (cited by file and line; the publishers' analysis code is Bonnasse-Gahot & Pallier
2024, github.com/l-bg/llms_brain_lateralization, "BGP" below):

- **Files.** One preprocessed 4-D volume per subject and run under ``derivatives/sub-*/func/``
  (BGP ``resample_fmri_data.py`` L29 and L34: ``derivatives/sub-EN*``, ``func/*.nii.gz``).
  The default ``task`` is ``task-lppEN``: the release's derivatives also hold the French
  (``lppFR``) and Chinese (``lppCN``) listeners, whose runs do not follow the English
  annotation.
- **Run entity.** The ``run-<n>`` labels are acquisition numbers, not section numbers: the
  English files start at ``run-15`` for some subjects and elsewhere for others (file names
  such as ``sub-EN057_task-lppEN_run-15_...`` and ``sub-EN092_task-lppEN_run-10_...`` in
  public code using the release). BGP maps the k-th file of a subject, in sorted order, to
  section k (``resample_fmri_data.py`` L34-41). Here the runs are sorted by the *number* in
  their ``run-`` entity (so ``run-9`` comes before ``run-10``, which a text sort gets wrong).
  A subject with all nine runs gets section k for its k-th run. A subject with fewer runs
  has each run identified by its TR count: each section has its own length (EN scans per
  section 282, 298, 340, 303, 265, 343, 325, 292, 368 in public NeuroSpin LPP analysis
  scripts, ``scans = [...]``; their repository could not be identified), so a
  run is the section whose TR count it shares, to within one TR, with the complete subjects
  (the most common count of that section among them). A run that matches no section, or a subject whose runs
  cannot be placed in order, stops with an :class:`~lmbrain.errors.InputError` naming the
  file; a section without its run is skipped and listed in the manifest's ``skipped``. Runs
  are never matched by position alone.
- **Timing.** ``onset``/``offset`` are seconds from the start of the section's run (BGP
  ``extract_llm_activations.py`` L199-202 takes them per section unchanged, and
  ``fit_average_subject.py`` L96 puts scan k at ``k * t_r + t_r / 2`` of the same run), TR
  2 s (BGP ``llms_brain_lateralization.py`` L28), so t = 0 is the first scan of each run.
- **Trim.** 10 TRs (20 s) dropped at both ends of every run after the regressors are built
  on the whole run (BGP ``fit_average_subject.py`` L50-53 and L98); the default ``trim``.
- **Mask.** None ships with the release. BGP computes one EPI mask from every run of every
  subject with nilearn ``compute_multi_epi_mask(..., threshold=0.5)`` and keeps only voxels
  whose mirror image across the midline is also in it (``compute_mask.py`` L30-33). The
  default here does the same on the released grid (BGP first resampled to 4 mm,
  ``resample_fmri_data.py`` L20-38; this adapter does not resample): see
  :func:`derive_mask`. The mask is cached under ``<root>/.lmbrain/`` keyed by the runs it
  was computed from; ``mask: <file>`` uses a mask of your own instead.
- **Subjects.** Every ``sub-EN*`` folder with runs is used: no exclusion list for the
  released derivatives could be established from the dataset paper or BGP (BGP's individual
  analyses use EN057, EN058, EN059, EN061, EN062, README L165); use the workflow's
  ``subjects`` to choose.

Responses are the voxels of the mask in C order (:class:`~lmbrain.geometry.VolumeGeometry`);
a voxel's hemisphere comes from its world x coordinate (x < 0 is left).

``average_subject: true`` adds the subject ``average``: for each run, the mean over the
dataset's subjects (those in ``average_of`` when given) of their responses, cropped to the
shortest run (BGP ``compute_average_subject_fmri.py`` L42-46 averages every subject). Subjects
have no repeats: the noise ceiling is the inter-subject one
(:func:`lmbrain.ceilings.isc_ceiling`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
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
    option_pattern,
    resolve,
    test_stories_option,
    visible_glob,
)
from lmbrain.errors import InputError
from lmbrain.geometry import VolumeGeometry
from lmbrain.stimulus import Words, read_run_annotation

log = logging.getLogger(__name__)

_RUN = re.compile(r"_run-0*(\d+)")
#: TRs by which a run may differ from its section's usual length and still be identified by it
#: (the EN section lengths differ by 3 TRs or more).
RUN_TOLERANCE = 1
#: BGP compute_mask.py L30: compute_multi_epi_mask(..., threshold=0.5).
MASK_THRESHOLD = 0.5
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
    trim : int or dict
        TRs dropped at each end of every run (default 10 at both ends, as BGP).
    test_stories : list of str
        Held-out runs (``run-<n>``) when the fit does not use leave-one-run-out.
    annotation : str
        Word table, relative to ``root`` (or absolute).
    mask : str, optional
        Brain mask NIfTI on the runs' grid; default derived (:func:`derive_mask`), cached.
    mask_cache : str
        Folder of the derived mask, relative to ``root`` (or absolute).
    task : str
        Text the bold file names contain (``task-lppEN``: the English listeners).
    average_subject : bool
        Offer the subject ``average``.
    average_of : list of str, optional
        Subjects averaged (default all the dataset's subjects).
    max_trailing_s : float
        Scanning allowed after a run's last word.
    """

    OPTIONS = {
        "tr": 2.0,
        "trim": {"start": 10, "end": 10},
        "test_stories": None,
        "annotation": "annotation/EN/lppEN_word_information.csv",
        "mask": None,
        "mask_cache": ".lmbrain",
        "task": "task-lppEN",
        "average_subject": False,
        "average_of": None,
        "max_trailing_s": DEFAULT_MAX_TRAILING_S,
    }

    @classmethod
    def remote_subject(cls, options: dict) -> str:
        """Regex of a bucket key whose first group is its subject (lmbrain.fetch.make_plan)."""
        return r"derivatives/(sub-[^/]+)/"

    @classmethod
    def remote_patterns(
        cls, options: dict, subjects: list[str] | None, audio: bool
    ) -> tuple[list[str], list[str]]:
        """The files of the release this adapter reads for ``subjects`` (None: all).

        The annotation, each subject's ``task`` bold runs under ``derivatives/<subject>/func/``
        (the files :meth:`_bold_files` keeps) and ``mask`` when dataset-relative. The derived
        mask is computed from the runs on disk, i.e. from the fetched subjects only. No audio
        is read. Returns the patterns and those that must match (every one here).
        """
        opts = {**cls.OPTIONS, **options}
        out = [option_pattern(opts["annotation"]), option_pattern(opts["mask"])]
        task = opts["task"]
        for subject in [s for s in subjects or ["sub-*"] if s != "average"]:
            out.append(f"derivatives/{subject}/func/*{task}*bold*.nii*")
        out = sorted({p for p in out if p})
        return out, out

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
        self._mask_cache = resolve(self.root, opts["mask_cache"])
        self.skipped: list[dict] = []

    # -- layout ----------------------------------------------------------------------------
    @cached_property
    def _bold_files(self) -> dict[str, list[tuple[int, Path]]]:
        """Subject -> (run number, file) of its bold runs, sorted by run number."""
        found: dict[str, dict[int, Path]] = {}
        deriv = self.root / "derivatives"
        if not deriv.is_dir():
            raise InputError(deriv, "derivatives folder not found (is `path` right?)")
        for path in visible_glob(deriv, "sub-*", recursive=True):
            name = path.name
            if not (name.endswith((".nii.gz", ".nii")) and self.task in name and "bold" in name):
                continue
            subj, run = _SUBJECT.match(name), _RUN.search(name)
            if subj is None or run is None:
                continue
            runs = found.setdefault(subj.group(1), {})
            n = int(run.group(1))
            if n in runs:
                raise InputError(
                    path,
                    f"{runs[n]} is also run {n} of {subj.group(1)}: keep one preprocessed "
                    "version per run under derivatives/ (or narrow the dataset's `task`)",
                )
            runs[n] = path
        return {subj: sorted(runs.items()) for subj, runs in found.items()}

    def _n_trs(self, path: Path) -> int:
        """TR count of a 4-D run (header only)."""
        from lmbrain.datasets.base import load_nifti

        shape = load_nifti(path).shape
        if len(shape) != 4:
            raise InputError(path, f"expected a 4-D (x, y, z, time) image, found shape {shape}")
        return int(shape[3])

    @cached_property
    def section_lengths(self) -> dict[int, int]:
        """Section -> its TR count: the most common among subjects with every run."""
        sections = list(self._sections)
        counts: dict[int, Counter] = {s: Counter() for s in sections}
        for runs in self._bold_files.values():
            if len(runs) == len(sections):
                for section, (_, path) in zip(sections, runs, strict=True):
                    counts[section][self._n_trs(path)] += 1
        if not any(counts.values()):
            raise InputError(
                self.root / "derivatives",
                f"no subject has all {len(sections)} runs, so a subject's runs cannot be "
                "matched to the sections by their TR counts",
            )
        return {s: c.most_common(1)[0][0] for s, c in counts.items()}

    @cached_property
    def _run_sections(self) -> dict[str, dict[int, Path]]:
        """Subject -> section -> its run file (see the module docstring)."""
        sections = list(self._sections)
        out = {}
        for subject, runs in self._bold_files.items():
            if len(runs) == len(sections):
                out[subject] = {s: p for s, (_, p) in zip(sections, runs, strict=True)}
                continue
            if len(runs) > len(sections):
                raise InputError(
                    runs[0][1].parent,
                    f"{subject} has {len(runs)} runs ({[n for n, _ in runs]}) but the "
                    f"annotation has {len(sections)} sections",
                )
            out[subject] = self._identify(subject, runs)
        return out

    def _identify(self, subject: str, runs: list[tuple[int, Path]]) -> dict[int, Path]:
        """Sections of an incomplete subject's runs, by TR count, in run order."""
        lengths = self.section_lengths
        placed: dict[int, Path] = {}
        last = None
        for _, path in runs:
            n = self._n_trs(path)
            match = [s for s, length in lengths.items() if abs(length - n) <= RUN_TOLERANCE]
            later = [s for s in match if last is None or s > last]
            if len(later) != 1:
                raise InputError(
                    path,
                    f"{subject} lacks a run, and this run's {n} TRs "
                    + ("match no section" if not match else f"match sections {match}")
                    + f" after section {last} (section TR counts {lengths}): cannot tell "
                    "which section it is",
                )
            last = later[0]
            placed[last] = path
        log.warning(
            "%s: %d of %d runs; by TR count they are sections %s",
            subject,
            len(runs),
            len(lengths),
            sorted(placed),
        )
        return placed

    @cached_property
    def real_subjects(self) -> list[str]:
        return sorted(self._bold_files)

    @cached_property
    def subjects(self) -> list[str]:
        """Subjects with bold runs, then ``average`` when enabled."""
        return self.real_subjects + ([AVERAGE_SUBJECT] if self.average_subject else [])

    @cached_property
    def mask_path(self) -> Path:
        """The configured ``mask``, or the derived one (:func:`derive_mask`), cached."""
        if self._mask_opt is not None:
            return resolve(self.root, self._mask_opt)
        runs = [p for s in self.real_subjects for _, p in self._bold_files[s]]
        if not runs:
            raise InputError(self.root / "derivatives", f"no {self.task} bold runs to mask")
        key = hashlib.sha256()
        for p in runs:
            key.update(f"{p.relative_to(self.root)}:{p.stat().st_size}\n".encode())
        path = self._mask_cache / f"mask_{self.task}_{key.hexdigest()[:16]}.nii.gz"
        if not path.is_file():
            log.info("deriving the LPP brain mask from %d runs into %s", len(runs), path)
            derive_mask(runs, path)
        return path

    @cached_property
    def _mask(self) -> tuple[np.ndarray, np.ndarray]:
        return load_mask(self.mask_path)

    def stimulus_path(self, story: str) -> Path:
        return self.annotation_path

    def run_path(self, subject: str, story: str) -> Path | None:
        """The bold file of ``subject`` for ``story`` (section), or None if it has none."""
        if subject not in self._bold_files:
            raise InputError(self.root / "derivatives", f"no bold runs for subject '{subject}'")
        return self._run_sections[subject].get(int(story.split("-", 1)[1]))

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
            if subject != AVERAGE_SUBJECT:
                subj[subject]["runs"] = {
                    s: self.run_path(subject, s).name for s in self.subject_stories(subject)
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


def symmetric_mask(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose mirror image across x = 0 (world) is also in ``mask``.

    The mirror of a voxel is the voxel nearest to its world position with x negated, so the
    grid need not be centred on the midline (BGP ``compute_mask.py`` L33 flips the array,
    which needs a grid centred on x = 0, as their resampled one is).
    """
    ijk = np.argwhere(mask)
    xyz = np.c_[ijk, np.ones(len(ijk))] @ affine.T
    xyz[:, 0] *= -1
    back = np.rint(xyz @ np.linalg.inv(affine).T)[:, :3].astype(int)
    inside = np.all((back >= 0) & (back < np.array(mask.shape)), axis=1)
    keep = np.zeros(len(ijk), dtype=bool)
    keep[inside] = mask[tuple(back[inside].T)]
    out = np.zeros_like(mask, dtype=bool)
    out[tuple(ijk[keep].T)] = True
    return out


def derive_mask(runs: list[Path], path: Path) -> Path:
    """Write the brain mask of ``runs`` (4-D NIfTIs on one grid) to ``path``, atomically.

    nilearn ``compute_multi_epi_mask(runs, threshold=0.5)`` (an EPI mask of each run's mean
    image, kept where at least half of the runs agree), then :func:`symmetric_mask`: the
    method of BGP ``compute_mask.py`` L30-33.

    Raises
    ------
    InputError
        Naming ``path`` if the derived mask is empty.
    """
    import nibabel as nib
    from nilearn.masking import compute_multi_epi_mask

    from lmbrain.io import atomic_path

    try:
        img = compute_multi_epi_mask([str(p) for p in runs], threshold=MASK_THRESHOLD)
    except (ValueError, TypeError) as exc:  # nilearn: runs on different grids, 3-D runs ...
        raise InputError(
            path.parent, f"cannot derive a brain mask from the runs ({exc}); set `mask`"
        ) from exc
    affine = np.asarray(img.affine, dtype=float)
    mask = symmetric_mask(np.asarray(img.dataobj) > 0, affine)
    if not mask.any():
        raise InputError(path, f"the mask derived from {len(runs)} runs is empty")
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(tmp))
    return path
