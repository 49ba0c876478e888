"""The native trial layout: one response pattern (a GLM beta) per image trial.

::

    <root>/dataset.yaml                  kind: trials, test_stimuli, subjects, zscore_sessions
    <root>/stimuli/captions.tsv          stimulus <TAB> caption  (several rows per stimulus)
    <root>/stimuli/categories.tsv        stimulus <TAB> category (optional)
    <root>/trials/<subject>.tsv          trial <TAB> stimulus <TAB> session  (row k = betas row k)
    <root>/responses/<subject>/betas.npy (n_trials, n_voxels) float
    <root>/voxels/<subject>.tsv          hemisphere (L or R), optional roi

``test_stimuli`` in ``dataset.yaml`` is either a list of stimulus ids or the name of a text
file (relative to the root) with one id per line, e.g. NSD's shared-1000 images. Every other
stimulus with a caption is a training stimulus. The model is trained on training stimuli and
scored on the test stimuli; a stimulus never appears in both.
"""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from lmbrain.datasets.base import visible_glob
from lmbrain.errors import InputError

KIND = "trials"


def _read_tsv(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Rows of a tab-separated file with a header, checking the required columns."""
    if not path.is_file():
        raise InputError(path, "file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(
                path, f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
            )
        rows = list(reader)
    for i, row in enumerate(rows):
        for col in required:
            if row.get(col) is None or not str(row[col]).strip():
                raise InputError(path, f"row {i + 2}: empty `{col}`")
    return rows


class TrialDataset:
    """Reader for a dataset in the native trial layout (see the module docstring).

    Parameters
    ----------
    root : str or Path
        Folder holding ``dataset.yaml``.
    """

    kind = KIND

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.meta_path = self.root / "dataset.yaml"
        if not self.meta_path.is_file():
            raise InputError(self.meta_path, "dataset description not found (is `path` right?)")
        try:
            meta = yaml.safe_load(self.meta_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(self.meta_path, f"not valid YAML: {exc}") from exc
        if not isinstance(meta, dict):
            raise InputError(self.meta_path, "must be a mapping")
        if meta.get("kind", KIND) != KIND:
            raise InputError(self.meta_path, f"`kind` is {meta.get('kind')!r}, expected 'trials'")
        self.meta = meta
        self.name = str(meta.get("name", self.root.name))
        self.zscore_sessions = bool(meta.get("zscore_sessions", True))
        self.stimuli = sorted(self.captions)
        if not self.stimuli:
            raise InputError(self.captions_path, "no captions")
        self.test_stimuli = self._read_test_stimuli()
        test = set(self.test_stimuli)
        self.train_stimuli = [s for s in self.stimuli if s not in test]
        if len(self.train_stimuli) < 2:
            raise InputError(self.meta_path, "needs at least two training stimuli")

    # -- stimuli ---------------------------------------------------------------------------
    @property
    def captions_path(self) -> Path:
        return self.root / "stimuli" / "captions.tsv"

    @property
    def categories_path(self) -> Path:
        return self.root / "stimuli" / "categories.tsv"

    @cached_property
    def captions(self) -> dict[str, list[str]]:
        """``{stimulus: [caption, ...]}`` in file order."""
        out: dict[str, list[str]] = {}
        for row in _read_tsv(self.captions_path, ("stimulus", "caption")):
            out.setdefault(row["stimulus"].strip(), []).append(row["caption"].strip())
        return out

    @cached_property
    def categories(self) -> dict[str, str] | None:
        """``{stimulus: category}`` from ``stimuli/categories.tsv``, or None without it."""
        path = self.categories_path
        if not path.is_file():
            return None
        rows = _read_tsv(path, ("stimulus", "category"))
        out = {r["stimulus"].strip(): r["category"].strip() for r in rows}
        missing = [s for s in self.stimuli if s not in out]
        if missing:
            raise InputError(path, f"no category for stimuli {missing[:5]} ({len(missing)} in all)")
        return out

    def _read_test_stimuli(self) -> list[str]:
        spec = self.meta.get("test_stimuli")
        if not spec:
            raise InputError(self.meta_path, "needs `test_stimuli` (a list, or a file of ids)")
        where = self.meta_path
        if isinstance(spec, str):
            where = self.root / spec
            if not where.is_file():
                raise InputError(where, "test stimuli file not found")
            spec = [line.strip() for line in where.read_text().splitlines() if line.strip()]
        tests = [str(s) for s in spec]
        unknown = [s for s in tests if s not in self.captions]
        if unknown:
            raise InputError(
                where, f"test stimuli {unknown[:5]} have no caption in {self.captions_path}"
            )
        return sorted(set(tests))

    # -- subjects --------------------------------------------------------------------------
    @cached_property
    def subjects(self) -> list[str]:
        """Subjects listed in ``dataset.yaml`` or, failing that, the files in ``trials/``."""
        listed = self.meta.get("subjects")
        if listed:
            return [str(s) for s in listed]
        folder = self.root / "trials"
        return [p.stem for p in visible_glob(folder, "*.tsv")]

    def trials_path(self, subject: str) -> Path:
        return self.root / "trials" / f"{subject}.tsv"

    def betas_path(self, subject: str) -> Path:
        return self.root / "responses" / subject / "betas.npy"

    def voxels_path(self, subject: str) -> Path:
        return self.root / "voxels" / f"{subject}.tsv"

    def trials(self, subject: str) -> dict[str, np.ndarray]:
        """Trial table of ``subject``: ``stimulus`` (str) and ``session`` (str) per betas row.

        Raises
        ------
        InputError
            A missing column, a stimulus without a caption, or ``trial`` values that are not
            the row numbers 0..n-1 (when the column is present).
        """
        path = self.trials_path(subject)
        rows = _read_tsv(path, ("stimulus", "session"))
        stim = np.array([r["stimulus"].strip() for r in rows], dtype=object)
        unknown = sorted(set(stim) - set(self.captions))
        if unknown:
            raise InputError(
                path,
                f"unknown stimulus id(s) {unknown[:5]} ({len(unknown)} in all): "
                f"not in {self.captions_path}",
            )
        if rows and "trial" in rows[0]:
            try:
                order = np.array([int(r["trial"]) for r in rows])
            except ValueError:
                raise InputError(path, "`trial` must be integers (the betas row)") from None
            if not np.array_equal(order, np.arange(len(rows))):
                raise InputError(path, "`trial` must number the betas rows 0..n-1 in order")
        session = np.array([r["session"].strip() for r in rows], dtype=object)
        return {"stimulus": stim, "session": session}

    def betas(self, subject: str) -> np.ndarray:
        """(n_trials, n_voxels) float32 betas of ``subject``."""
        return np.asarray(self._open_betas(subject), dtype=np.float32)

    def _open_betas(self, subject: str) -> np.ndarray:
        """The betas file memory-mapped (checked for shape and dtype, not read)."""
        path = self.betas_path(subject)
        if not path.is_file():
            raise InputError(path, "betas file not found")
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise InputError(path, f"not a readable .npy array ({exc})") from exc
        if arr.ndim != 2:
            raise InputError(path, f"expected a 2-D (trials x voxels) array, found {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(path, f"expected floating-point betas, found {arr.dtype}")
        return arr

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        """Voxel table of ``subject``: ``hemisphere`` ('L'/'R') and ``roi`` arrays."""
        path = self.voxels_path(subject)
        if not path.is_file():
            raise InputError(path, f"voxels file for subject '{subject}' not found")
        rows = _read_tsv(path, ("hemisphere",))
        hemi = np.array([r["hemisphere"].strip().upper() for r in rows])
        bad = sorted(set(hemi) - {"L", "R"})
        if bad:
            raise InputError(path, f"hemisphere must be L or R, found {bad}")
        roi = np.array([(r.get("roi") or "").strip() for r in rows])
        return {"hemisphere": hemi, "roi": roi}

    def geometry(self, subject: str):  # noqa: ARG002 - the adapter contract
        """No brain geometry is known for the native trial layout."""
        return None

    # -- validation ------------------------------------------------------------------------
    def validate(self, subjects: list[str]) -> dict:
        """Check every file the workflow will read and return a manifest.

        Raises
        ------
        InputError
            Naming the first bad file: a trial count that differs from the betas rows,
            unknown stimulus ids, a voxel count that differs from the voxels file, a test
            stimulus never shown to a subject.
        """
        _ = self.categories  # checked when present
        subj = {}
        for subject in subjects:
            trials = self.trials(subject)
            n_trials = len(trials["stimulus"])
            betas = self._open_betas(subject)  # shape only: validation runs at every start
            if betas.shape[0] != n_trials:
                raise InputError(
                    self.betas_path(subject),
                    f"has {betas.shape[0]} rows but {self.trials_path(subject)} lists "
                    f"{n_trials} trials",
                )
            vox = self.voxels(subject)
            if betas.shape[1] != len(vox["hemisphere"]):
                raise InputError(
                    self.betas_path(subject),
                    f"has {betas.shape[1]} voxels but {self.voxels_path(subject)} lists "
                    f"{len(vox['hemisphere'])}",
                )
            shown = set(trials["stimulus"])
            unseen = [s for s in self.test_stimuli if s not in shown]
            if unseen:
                raise InputError(
                    self.trials_path(subject),
                    f"test stimuli {unseen[:5]} ({len(unseen)} in all) are never shown",
                )
            n_train = len(shown - set(self.test_stimuli))
            if n_train < 2:
                raise InputError(self.trials_path(subject), "fewer than two training stimuli")
            counts = np.unique(trials["stimulus"], return_counts=True)[1]
            subj[subject] = {
                "n_trials": n_trials,
                "n_voxels": int(betas.shape[1]),
                "n_left": int((vox["hemisphere"] == "L").sum()),
                "n_right": int((vox["hemisphere"] == "R").sum()),
                "n_train_stimuli": n_train,
                "max_repeats": int(counts.max()),
                "rois": sorted(str(r) for r in set(vox["roi"]) - {""}),
            }
        return {
            "dataset": self.name,
            "kind": KIND,
            "root": str(self.root),
            "n_stimuli": len(self.stimuli),
            "n_captions": sum(len(c) for c in self.captions.values()),
            "test_stimuli": self.test_stimuli,
            "subjects": subj,
        }
