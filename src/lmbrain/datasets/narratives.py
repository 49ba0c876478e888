"""Narratives (Nastase et al. 2021), OpenNeuro ds002345, read as the publishers release it.

::

    <root>/stimuli/gentle/<story>/align.json                 Gentle alignment of one transcript
    <root>/task-<task>_bold.json                             sidecar: RepetitionTime (inherited)
    <root>/participants.tsv                                  task, condition (comma lists)
    <root>/sub-*/func/sub-*_task-<task>[_run-<n>]_events.tsv onset, duration, trial_type
    <root>/code/scan_exclude.json                            {task: {subject: [scan prefix]}}
    <root>/<derivatives>/sub-*/func/sub-*_task-<task>[_run-<n>]_space-<space>_hemi-{L,R}_desc-clean.func.gii
    <root>/<derivatives>/sub-*/func/sub-*_task-<task>[_run-<n>]_space-<space>_res-native_desc-clean_bold.nii.gz

Stories, tasks and conditions. A *story* is one transcript, a Gentle folder; a *task* is the
BIDS ``task-`` entity of the scans. They coincide except where one task was heard in several
versions, e.g. task ``milkyway`` with the transcripts ``milkywayoriginal``, ``milkywayvodka``
and ``milkywaysynonyms``: the story's task is the longest task name that begins the folder
name and the rest (``vodka``) is the condition, which ``participants.tsv`` gives per subject
and task (columns ``task`` and ``condition``, parallel comma lists: staging/
compile_participants.py lines 78-88 of github.com/snastase/narratives; the condition names are
the keys ``original``/``vodka``/``synonyms`` of staging/compile_events.py line 38). A subject
has the story ``milkywayvodka`` when it has a ``task-milkyway`` scan and its ``milkyway``
condition is ``vodka``. ``stories:`` may name a task (``milkyway``): it stands for all its
transcripts.

Timing. Gentle's ``start``/``end`` are seconds on the clock of the story's audio file
``stimuli/<task>_audio.wav``, which holds what was played, music included: the publishers'
code/plot_stim.py (lines 18, 66-85) draws the first 21 words of Pie Man ("I began my
illustrious career ...") between 15 and 23 s of ``pieman_audio.wav`` straight from
``align.json``, and the story event of ``task-pieman_events.tsv`` starts at 15.0 s after a
music event at 0.0 s (staging/compile_events.py line 28); the audio (450 s) spans the 300-TR
scan (paper, Fig. 1a). So a word's time in the scan is its Gentle time plus the time the
audio started, the onset of the first event of the story's ``events.tsv`` (0 s for the stories
that open with music; 3 s for tunnel and lucy, 12 s for bronx, black, forgot and piemanpni).
For the stories without a music event the public sources do not say whether the audio file
also holds the silence before the story; the adapter assumes it does not (the audio starts at
the story event) and the ``stimulus_onsets`` option (story -> seconds from the scan's start to
the audio's start) overrides it. The story's *nominal* onsets are those most subjects' events
files give (the publishers check every subject against one subject's values:
code/compile_metadata.py lines 143-166). A scan whose story event starts elsewhere carries a
published timing correction (staging/compile_events.py lines 133-150: the audio of sub-038
and sub-105 in prettymouth and milkyway was started 6 and 7.5 s early): its responses are
shifted by the difference, rounded to whole TRs, onto the nominal timeline (the first TRs,
before the scan started, hold the run's mean), and the correction is listed in the manifest
(``timing_corrections``).

Exclusions. The publishers' ``code/scan_exclude.json`` (option ``scan_exclude``; ``false``
uses every scan) lists scans to leave out; a scan is excluded when one of its entries is a
substring of the scan's file name, as the publishers' code/exclude_scans.py (``exclude_scan``,
lines 5-48) does. Excluded scans are listed in the manifest (``skipped``, reason
``scan_exclude.json``).

Repeated runs. Some subjects heard a story twice (``task-pieman_run-1``/``run-2``).
``repeated_runs: average`` (default) uses the mean of the scans left after the exclusions
(cut to the shortest): they are repeats of one stimulus on one timeline, and averaging them is
what a repeated presentation is for; ``first`` uses the lowest run. The choice is listed in the
manifest (``repeated_runs``).

Data. ``derivatives`` defaults to ``derivatives/afni-nosmooth`` (the unsmoothed, confound-
regressed data; code/run_regression.py writes ``desc-clean``), ``surface: true`` (default)
reads the fsaverage6 GIfTI pairs (left then right columns, a
:class:`~lmbrain.geometry.SurfaceGeometry` on mesh ``mesh``), the space of the publishers'
whole-brain analyses (code/run_isc.py line 11, there on ``afni-smooth``) that needs no
mask (``derivatives: derivatives/afni-smooth`` reads their ``desc-sm6`` files); ``surface: false`` reads the
``space`` volumes inside ``mask`` (a NIfTI path, ``{subject}`` allowed; a
:class:`~lmbrain.geometry.VolumeGeometry`, hemisphere from world x). The TR is the sidecar
``RepetitionTime`` of the story's task (the subject's own ``sub-*/func`` sidecar, else the
top-level ``task-<task>_bold.json``, BIDS inheritance) unless ``tr`` is set; the stories fitted
together must share one TR.

A subject lacking a story is a logged skip listed in the manifest (``skipped``), and its fits
use the stories it has. ``average_subject: true`` adds the subject ``average`` (per story, the
mean over the subjects who heard it).
"""

from __future__ import annotations

import csv
import json
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
from lmbrain.geometry import SurfaceGeometry, VolumeGeometry
from lmbrain.stimulus import Words, read_gentle_alignment

log = logging.getLogger(__name__)

REPEATED_RUNS = ("average", "first")
_TASK = re.compile(r"_task-([A-Za-z0-9]+)")
_RUN = re.compile(r"_run-([0-9]+)")


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
        Stories (Gentle folders) or tasks to use (default every story whose task has scans).
    derivatives, space, surface, mesh, mask
        Which preprocessed files to read (module docstring).
    stimulus_onsets : dict, optional
        Story -> seconds from the scan's start to its audio's start (default: events.tsv).
    scan_exclude : str or False
        The publishers' exclusion list (default ``code/scan_exclude.json``).
    repeated_runs : {"average", "first"}
        How a story heard twice is read.
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
        "space": None,
        "surface": True,
        "mesh": "fsaverage6",
        "mask": None,
        "stimulus_onsets": None,
        "scan_exclude": "code/scan_exclude.json",
        "repeated_runs": "average",
        "average_subject": False,
        "max_trailing_s": DEFAULT_MAX_TRAILING_S,
    }

    @classmethod
    def remote_subject(cls, options: dict) -> str:
        """Regex of a bucket key whose first group is its subject (lmbrain.fetch.make_plan)."""
        deriv = option_pattern({**cls.OPTIONS, **options}["derivatives"]).rstrip("/")
        return re.escape(deriv) + r"/(sub-[^/]+)/"

    @classmethod
    def remote_patterns(
        cls, options: dict, subjects: list[str] | None, audio: bool
    ) -> tuple[list[str], list[str]]:
        """The files of the release this adapter reads for ``subjects`` (None: all).

        ``dataset_description.json``, ``participants.tsv``, ``scan_exclude`` (the publishers'
        ``code/scan_exclude.json``), the top-level ``task-*_bold.json`` and ``task-*_events.tsv``,
        every subject's ``events.tsv`` (the nominal onsets are counted over all subjects),
        the subjects' own ``bold.json`` sidecars, the Gentle ``align.json`` of the stories
        (``stories:`` may name a task: its transcripts), and the subjects' scans in the chosen
        ``derivatives`` and ``space`` (+ ``mask`` when dataset-relative). No audio is read.

        Returns
        -------
        patterns, required
            The patterns, and those that must match.
        """
        opts = {**cls.OPTIONS, **options}
        space = opts["space"] or ("fsaverage6" if opts["surface"] else "MNI152NLin2009cAsym")
        deriv = option_pattern(opts["derivatives"]).rstrip("/")
        required = [
            "dataset_description.json",
            "participants.tsv",
            "task-*_bold.json",
            option_pattern(opts["scan_exclude"]),
        ]
        optional = ["task-*_events.tsv", "sub-*/func/sub-*_task-*_events.tsv"]
        for story in opts["stories"] or [None]:
            required.append(f"stimuli/gentle/{story + '*' if story else '*'}/align.json")
        for subject in [s for s in subjects or [None] if s != "average"]:
            name = subject or "sub-*"
            optional.append(f"{name}/func/{name}_task-*bold.json")
            required.append(f"{deriv}/{name}/func/{name}_task-*_space-{space}_*")
            if not opts["surface"]:
                required.append(option_pattern(opts["mask"], subject=subject))
        required = sorted({p for p in required if p})
        return sorted({*required, *optional}), required

    def __init__(self, root: str | Path, **options):
        opts, self.trim_start, self.trim_end = adapter_settings(self.OPTIONS, options)
        self.root = Path(root)
        self.name = self.root.name
        self.deriv = resolve(self.root, opts["derivatives"])
        self.surface = bool(opts["surface"])
        default_space = "fsaverage6" if self.surface else "MNI152NLin2009cAsym"
        self.space = str(opts["space"] or default_space)
        self.mesh = str(opts["mesh"])
        self._mask_opt = opts["mask"]
        self.onset_override = {k: float(v) for k, v in (opts["stimulus_onsets"] or {}).items()}
        self.average_subject = bool(opts["average_subject"])
        self.max_trailing_s = float(opts["max_trailing_s"])
        self.repeated_runs = str(opts["repeated_runs"])
        if self.repeated_runs not in REPEATED_RUNS:
            raise InputError(
                self.root,
                f"repeated_runs must be one of {REPEATED_RUNS}, not {self.repeated_runs!r}",
            )
        gentle = self.root / "stimuli" / "gentle"
        self.index_path = self.root / "dataset_description.json"
        if not self.index_path.is_file():
            self.index_path = gentle
        if not gentle.is_dir():
            raise InputError(gentle, "Gentle alignments folder not found (is `path` right?)")
        self.exclude_path = (
            resolve(self.root, opts["scan_exclude"]) if opts["scan_exclude"] else None
        )
        folders = sorted(p.parent.name for p in visible_glob(gentle, "*/align.json"))
        tasks = self._release_tasks()
        self.story_task = {s: _task_of(s, tasks) for s in folders}
        self.stories = self._chosen_stories(opts["stories"], folders, tasks, gentle)
        self.test_stories = test_stories_option(
            opts["test_stories"] or [self.stories[-1]], self.stories, gentle
        )
        self.train_stories = [s for s in self.stories if s not in self.test_stories]
        self.tr = float(opts["tr"]) if opts["tr"] is not None else self._sidecar_tr()
        self.skipped: list[dict] = []
        self.timing_corrections: list[dict] = []
        self._runs_cache: dict[tuple[str, str], dict[str, list[Path]]] = {}

    # -- stories, tasks, conditions --------------------------------------------------------
    def _release_tasks(self) -> set[str]:
        """BIDS task names of the release: top-level sidecars and the derivatives' scans."""
        tasks = {
            p.name[len("task-") : -len("_bold.json")]
            for p in visible_glob(self.root, "task-*_bold.json")
        }
        if self.deriv.is_dir():
            for path in visible_glob(self.deriv, "sub-*/func/*_task-*"):
                match = _TASK.search(path.name)
                if match:
                    tasks.add(match.group(1))
        return tasks

    def _chosen_stories(self, chosen, folders, tasks, gentle) -> list[str]:
        if not chosen:
            found = [s for s in folders if self.story_task[s] in tasks]
            dropped = sorted(set(folders) - set(found))
            if dropped:
                log.info("stories without scans of their task in the release: %s", dropped)
        else:
            found = []
            for name in chosen:
                members = (
                    [name]
                    if name in folders
                    else [s for s in folders if self.story_task[s] == name and s != name]
                )
                if not members:
                    raise InputError(
                        gentle,
                        f"story {name!r} has no <story>/align.json and is no task of the "
                        f"Gentle folders {folders}",
                    )
                found += members
            found = sorted(set(found))
        if len(found) < 3:
            raise InputError(gentle, f"needs at least 3 stories (found {found})")
        return found

    def task(self, story: str) -> str:
        """The BIDS task of ``story`` (``milkywayvodka`` -> ``milkyway``)."""
        return self.story_task[story]

    def condition(self, story: str) -> str | None:
        """The condition a story's transcript stands for (``vodka``), None for the only one."""
        task = self.task(story)
        return story[len(task) :] or None

    @cached_property
    def participant_conditions(self) -> dict[str, dict[str, str]]:
        """subject -> task -> condition, from participants.tsv (empty if no story needs it)."""
        if all(self.condition(s) is None for s in self.stories):
            return {}
        path = self.root / "participants.tsv"
        if not path.is_file():
            raise InputError(
                path,
                "not found; it says which condition of "
                f"{sorted({self.task(s) for s in self.stories if self.condition(s)})} "
                "each subject heard",
            )
        out = {}
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or not {"participant_id", "task", "condition"} <= set(rows[0]):
            raise InputError(path, "needs the columns participant_id, task and condition")
        for row in rows:
            tasks = row["task"].split(",")
            conds = row["condition"].split(",")
            if len(tasks) != len(conds):
                raise InputError(
                    path, f"{row['participant_id']}: {len(tasks)} tasks but {len(conds)} conditions"
                )
            out[row["participant_id"]] = dict(zip(tasks, conds, strict=True))
        return out

    # -- layout ----------------------------------------------------------------------------
    def _sidecars(self, task: str) -> list[Path]:
        top = self.root / f"task-{task}_bold.json"
        own = sorted(visible_glob(self.root, f"sub-*/func/sub-*_task-{task}_*bold.json"))
        return ([own[0]] if own else []) + ([top] if top.is_file() else [])

    def _sidecar_tr(self) -> float:
        trs = {}
        for story in self.stories:
            task = self.task(story)
            for path in self._sidecars(task):
                try:
                    trs[story] = (float(json.loads(path.read_text())["RepetitionTime"]), path)
                    break
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise InputError(path, f"no numeric RepetitionTime ({exc})") from exc
            else:
                raise InputError(
                    self.root / f"task-{task}_bold.json",
                    f"no BIDS sidecar with RepetitionTime for task {task} (story {story}); "
                    "download the top-level task-*_bold.json files or set the dataset's `tr`",
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
    def scan_exclude(self) -> list[str]:
        """Scan name prefixes the publishers exclude (flattened scan_exclude.json)."""
        if self.exclude_path is None:
            return []
        if not self.exclude_path.is_file():
            raise InputError(
                self.exclude_path,
                "not found: download the publishers' code/scan_exclude.json or set "
                "`scan_exclude: false` to use every scan",
            )
        try:
            data = json.loads(self.exclude_path.read_text())
            return [e for subj in data.values() for runs in subj.values() for e in runs]
        except (json.JSONDecodeError, AttributeError, TypeError) as exc:
            raise InputError(
                self.exclude_path, f"expected {{task: {{subject: [scan name, ...]}}}} ({exc})"
            ) from exc

    @cached_property
    def real_subjects(self) -> list[str]:
        if not self.deriv.is_dir():
            raise InputError(self.deriv, "derivatives folder not found (see `derivatives`)")
        return sorted(p.name for p in visible_glob(self.deriv, "sub-*") if p.is_dir())

    @cached_property
    def subjects(self) -> list[str]:
        return self.real_subjects + ([AVERAGE_SUBJECT] if self.average_subject else [])

    def stimulus_path(self, story: str) -> Path:
        return self.root / "stimuli" / "gentle" / story / "align.json"

    def _all_runs(self, subject: str, story: str) -> dict[str, list[Path]]:
        """Scan name (``sub-*_task-*[_run-*]``) -> [volume] or [left, right], before exclusions
        (looked up once per subject and story: the DAG-time checks ask for every subject)."""
        key = (subject, story)
        if key not in self._runs_cache:
            self._runs_cache[key] = self._find_runs(subject, story)
        return dict(self._runs_cache[key])

    def _find_runs(self, subject: str, story: str) -> dict[str, list[Path]]:
        folder = self.deriv / subject / "func"
        if not folder.is_dir():
            return {}
        cond = self.condition(story)
        if cond is not None:
            heard = self.participant_conditions.get(subject, {}).get(self.task(story))
            if heard != cond:
                return {}
        prefix = f"{subject}_task-{self.task(story)}_"
        space = f"_space-{self.space}_"
        names = sorted(
            p
            for p in visible_glob(folder, f"{prefix}*")
            if space in p.name.replace(".", "_") and p.is_file()
        )
        scans: dict[str, list[Path]] = {}
        for path in names:
            scans.setdefault(path.name.split("_space-")[0], []).append(path)
        out = {}
        for scan, paths in scans.items():
            if self.surface:
                pair = []
                for hemi in ("L", "R"):
                    match = [
                        p
                        for p in paths
                        if f"hemi-{hemi}" in p.name and p.name.endswith(".func.gii")
                    ]
                    pair.append(match[0] if match else None)
                if all(pair):
                    out[scan] = pair
            else:
                vols = [
                    p for p in paths if "bold" in p.name and p.name.endswith((".nii.gz", ".nii"))
                ]
                if vols:
                    out[scan] = vols[:1]
        return dict(sorted(out.items(), key=lambda kv: _run_number(kv[0])))

    def _excluded(self, scan: str) -> bool:
        """Whether an entry of scan_exclude.json names ``scan`` (the publishers match entries
        as substrings of the file name; here they must end at an entity boundary, so that
        ``sub-021_task-pieman`` does not also exclude ``sub-021_task-piemanpni``)."""
        return any(f"{scan}_".startswith(f"{entry}_") for entry in self.scan_exclude)

    def runs(self, subject: str, story: str) -> dict[str, list[Path]]:
        """The subject's scans of ``story`` that the publishers do not exclude."""
        return {k: v for k, v in self._all_runs(subject, story).items() if not self._excluded(k)}

    def run_files(self, subject: str, story: str) -> list[Path] | None:
        """The files of the subject's first kept scan of ``story``; None if none."""
        runs = self.runs(subject, story)
        return next(iter(runs.values())) if runs else None

    def subject_stories(self, subject: str) -> list[str]:
        if subject == AVERAGE_SUBJECT:
            return list(self.stories)
        return [s for s in self.stories if self.runs(subject, s)]

    # -- timing ----------------------------------------------------------------------------
    def events_path(self, scan: str) -> Path | None:
        """The scan's events.tsv (its own, else the top-level ``task-<task>_events.tsv``)."""
        subject = scan.split("_")[0]
        own = self.root / subject / "func" / f"{scan}_events.tsv"
        if own.is_file():
            return own
        task = _TASK.search(scan).group(1)
        top = self.root / f"task-{task}_events.tsv"
        return top if top.is_file() else None

    def _event_onsets(self, scan: str) -> tuple[float, float] | None:
        """(first event onset, story event onset) of a scan's events.tsv, None without one."""
        path = self.events_path(scan)
        if path is None:
            return None
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "onset" not in rows[0]:
            raise InputError(path, "needs an `onset` column and at least one event")
        try:
            onsets = [float(r["onset"]) for r in rows]
        except ValueError as exc:
            raise InputError(path, f"non-numeric onset ({exc})") from exc
        story = [o for o, r in zip(onsets, rows, strict=True) if r.get("trial_type") == "story"]
        return onsets[0], (story[0] if story else onsets[0])

    @cached_property
    def _nominal(self) -> dict[str, tuple[float, float] | None]:
        """Story -> the (first, story) event onsets most scans of its task have (None: no
        events files). Counted over the task's scans of every condition and subject, as the
        publishers check every subject against one reference (compile_metadata.py 143-166)."""
        by_task: dict[str, Counter] = {}
        for task in sorted({self.task(s) for s in self.stories}):
            seen = by_task[task] = Counter()
            for subject in self.real_subjects:
                folder = self.deriv / subject / "func"
                scans = {
                    p.name.split("_space-")[0]
                    for p in visible_glob(folder, f"{subject}_task-{task}_*")
                }
                for scan in scans:
                    onsets = self._event_onsets(scan)
                    if onsets is not None:
                        seen[onsets] += 1
        out = {}
        for story in self.stories:
            seen = by_task[self.task(story)]
            out[story] = max(seen, key=lambda k: (seen[k], k[1])) if seen else None
        return out

    def audio_onset(self, story: str) -> float:
        """Seconds from the scan's start to the start of the story's audio (module docstring)."""
        if story in self.onset_override:
            return self.onset_override[story]
        nominal = self._nominal[story]
        if nominal is None:
            raise InputError(
                self.root / "sub-*" / "func" / f"sub-*_task-{self.task(story)}_events.tsv",
                "no events.tsv gives the story's onset: download them (README) or set "
                f"`stimulus_onsets: {{{story}: <seconds>}}`",
            )
        return nominal[0]

    def scan_shift_trs(self, scan: str, story: str) -> int:
        """TRs to move a scan's responses onto the story's nominal timeline (0: on time)."""
        nominal = self._nominal.get(story)
        onsets = self._event_onsets(scan)
        if nominal is None or onsets is None or onsets[1] == nominal[1]:
            return 0
        delta = onsets[1] - nominal[1]
        return int(round(-delta / self.tr))

    def _record_correction(self, subject, story, scan, shift):
        entry = {
            "subject": subject,
            "story": story,
            "scan": scan,
            "events": str(self.events_path(scan)),
            "story_onset_s": self._event_onsets(scan)[1],
            "nominal_onset_s": self._nominal[story][1],
            "shift_trs": shift,
        }
        if entry not in self.timing_corrections:
            self.timing_corrections.append(entry)
            log.info(
                "%s %s: story starts at %.1f s, not %.1f s: responses shifted by %+d TRs",
                subject,
                story,
                entry["story_onset_s"],
                entry["nominal_onset_s"],
                shift,
            )

    # -- reading ---------------------------------------------------------------------------
    def words(self, story: str) -> Words:
        """The story's aligned words, in seconds from the scan's start (nominal timeline)."""
        words, n_skipped = read_gentle_alignment(self.stimulus_path(story))
        if n_skipped:
            log.info("%s: %d words Gentle did not align are left out", story, n_skipped)
        shift = self.audio_onset(story)
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

    def _read_scan(self, subject: str, files: list[Path]) -> np.ndarray:
        if self.surface:
            left, right = (_read_gifti(p) for p in files)
            if left.shape[0] != right.shape[0]:
                raise InputError(
                    files[1], f"{right.shape[0]} TRs but {files[0]} has {left.shape[0]}"
                )
            return np.concatenate([left, right], axis=1)
        mask_path = self._mask_path(subject)
        return masked_timeseries(files[0], load_mask(mask_path)[0], mask_path)

    def responses(self, subject: str, story: str) -> np.ndarray:
        """(n_trs, n_columns) float32 responses (voxels of the mask, or L then R vertices),
        on the story's nominal timeline; repeated scans averaged or the first taken."""
        if subject == AVERAGE_SUBJECT:
            return self.group_responses(story).mean(axis=0)
        runs = self.runs(subject, story)
        if not runs:
            raise InputError(self.deriv / subject, f"no {story} run in space-{self.space}")
        if self.repeated_runs == "first":
            runs = dict([next(iter(runs.items()))])
        data = []
        for scan, files in runs.items():
            y = self._read_scan(subject, files)
            shift = self.scan_shift_trs(scan, story)
            if shift:
                self._record_correction(subject, story, scan, shift)
                y = shift_run(y, shift)
            data.append(y)
        n = min(y.shape[0] for y in data)
        return np.mean([y[:n] for y in data], axis=0).astype(np.float32)

    def group_responses(self, story: str, subjects: list[str] | None = None) -> np.ndarray:
        """(n_subjects, n_trs, n_columns) responses of the subjects who heard ``story``."""
        subjects = [s for s in (subjects or self.real_subjects) if s != AVERAGE_SUBJECT]
        runs = [self.responses(s, story) for s in subjects if self.runs(s, story)]
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
    def _n_trs(self, subject: str, files: list[Path]) -> tuple[int, Path, int]:
        if self.surface:
            shapes = [_gifti_shape(p) for p in files]
            if shapes[0][0] != shapes[1][0]:
                raise InputError(files[1], f"{shapes[1][0]} TRs but {files[0]} has {shapes[0][0]}")
            return shapes[0][0], files[0], shapes[0][1] + shapes[1][1]
        mask_path = self._mask_path(subject)
        mask = load_mask(mask_path)[0]
        return nifti_n_trs(files[0], mask, mask_path), files[0], int(mask.sum())

    def _check_member(self, member: str, words: dict, stories: dict) -> None:
        for story in self.stories:
            every = self._all_runs(member, story)
            for scan in every:
                if self._excluded(scan):
                    entry = {
                        "subject": member,
                        "story": story,
                        "scan": scan,
                        "reason": "scan_exclude.json",
                    }
                    self.skipped.append(entry)
                    log.warning("%s: %s is excluded by %s", member, scan, self.exclude_path)
            kept = self.runs(member, story)
            cond = self.condition(story)
            heard = self.participant_conditions.get(member, {}).get(self.task(story))
            if not kept:
                if cond is not None and heard not in (None, cond):
                    self.skipped.append(
                        {
                            "subject": member,
                            "story": story,
                            "reason": f"heard {self.task(story)} as {heard} (participants.tsv)",
                        }
                    )
                elif not every:
                    log.warning("%s has no %s run in space-%s (skipped)", member, story, self.space)
                    self.skipped.append(
                        {
                            "subject": member,
                            "story": story,
                            "reason": f"no run in space-{self.space}",
                        }
                    )
                continue
            for scan, files in kept.items():
                n_trs, path, _ = self._n_trs(member, files)
                shift = self.scan_shift_trs(scan, story)
                if shift:
                    self._record_correction(member, story, scan, shift)
                check_run_length(
                    path,
                    n_trs + shift,
                    self.tr,
                    words[story],
                    self.max_trailing_s,
                    self.trim_start + self.trim_end,
                )
                stories[story].setdefault("n_trs", n_trs + shift)

    def validate(self, subjects: list[str]) -> dict:
        """Check the runs of ``subjects``; a missing story is a logged skip, not an error.

        Raises
        ------
        InputError
            A run whose TR count disagrees with its story's alignment by more than one TR,
            an image that does not match the mask, a subject with no story ...
        """
        words = {s: self.words(s) for s in self.stories}
        stories = {
            s: {
                "n_words": len(words[s]),
                "test": s in self.test_stories,
                "task": self.task(s),
                "condition": self.condition(s),
                "audio_onset_s": self.audio_onset(s),
                "events_onsets_s": self._nominal[s] and list(self._nominal[s]),
            }
            for s in words
        }
        subj, checked = {}, set()
        for subject in subjects:
            members = self.real_subjects if subject == AVERAGE_SUBJECT else [subject]
            if subject != AVERAGE_SUBJECT and not (self.deriv / subject).is_dir():
                raise InputError(self.deriv / subject, f"no folder for subject '{subject}'")
            for member in members:
                if member not in checked:
                    checked.add(member)
                    self._check_member(member, words, stories)
            have = self.subject_stories(subject)
            if not have:
                raise InputError(self.deriv / subject, f"no run of {self.stories}")
            subj[subject] = {
                **hemisphere_counts(self.voxels(subject)["hemisphere"]),
                "stories": have,
                "missing_stories": sorted(set(self.stories) - set(have)),
                "scans": {s: list(self.runs(subject, s)) for s in have}
                if subject != AVERAGE_SUBJECT
                else {},
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
            "scan_exclude": str(self.exclude_path) if self.exclude_path else None,
            "timing_corrections": self.timing_corrections,
            "repeated_runs": self.repeated_runs,
        }


def _task_of(story: str, tasks: set[str]) -> str:
    """The longest task name that begins ``story`` (the story itself when none does)."""
    matches = [t for t in tasks if story.startswith(t)]
    return max(matches, key=len) if matches else story


def _run_number(scan: str) -> int:
    match = _RUN.search(scan)
    return int(match.group(1)) if match else 0


def shift_run(y: np.ndarray, shift: int) -> np.ndarray:
    """Move a run ``shift`` TRs later (``shift > 0``: the first rows hold the run's mean) or
    earlier (``shift < 0``: its first ``-shift`` rows are dropped)."""
    if shift > 0:
        pad = np.repeat(y.mean(axis=0, keepdims=True), shift, axis=0)
        return np.concatenate([pad, y]).astype(y.dtype)
    return y[-shift:] if shift < 0 else y


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
