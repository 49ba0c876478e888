"""The native dataset layout (documented in README.md, "Point it at real data").

::

    <root>/dataset.yaml                       tr, trim, test_stories, n_repeats, subjects
    <root>/stimuli/<story>.tsv                word  onset  offset   (seconds from run start)
    <root>/stimuli/<story>.wav                the recording (optional; for speech models)
    <root>/responses/<subject>/<story>.npy    (n_trs, n_voxels) float
    <root>/responses/<subject>/<story>_repeats.npy   (n_repeats, n_trs, n_voxels), test stories
    <root>/voxels/<subject>.tsv               hemisphere (L or R), optional roi, vertex
    <root>/voxels/<subject>_mask.nii.gz       optional: the voxels' 3-D mask (volume data)

TR ``k`` of a run is acquired at ``k * tr + tr / 2`` seconds (:func:`lmbrain.temporal.tr_times`).
"""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from lmbrain.datasets.base import trim_setting, visible_glob
from lmbrain.errors import InputError
from lmbrain.geometry import SurfaceGeometry, VolumeGeometry
from lmbrain.stimulus import Words, read_word_table

DEFAULT_MAX_TRAILING_S = 40.0
#: Vertices per hemisphere of the FreeSurfer fsaverage meshes (``surface:`` in dataset.yaml).
FSAVERAGE_VERTICES = {
    "fsaverage3": 642,
    "fsaverage4": 2562,
    "fsaverage5": 10242,
    "fsaverage6": 40962,
    "fsaverage": 163842,
}


class NativeDataset:
    """Reader for a dataset in the native layout.

    Parameters
    ----------
    root : str or Path
        Folder holding ``dataset.yaml``.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "dataset.yaml"
        if not meta_path.is_file():
            raise InputError(meta_path, "dataset description not found (is `path` right?)")
        try:
            meta = yaml.safe_load(meta_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(meta_path, f"not valid YAML: {exc}") from exc
        self.meta_path = meta_path
        self.meta = meta
        try:
            self.tr = float(meta["tr"])
        except (KeyError, TypeError, ValueError):
            raise InputError(meta_path, "needs `tr` (repetition time in seconds)") from None
        if self.tr <= 0:
            raise InputError(meta_path, "`tr` must be positive")
        self.trim_start, self.trim_end = trim_setting(meta.get("trim"), "trim", meta_path)
        self.name = str(meta.get("name", self.root.name))
        self.n_repeats = meta.get("n_repeats")
        self.max_trailing_s = float(meta.get("max_trailing_s", DEFAULT_MAX_TRAILING_S))
        stim_dir = self.root / "stimuli"
        if not stim_dir.is_dir():
            raise InputError(stim_dir, "stimuli folder not found")
        self.stories = [p.stem for p in visible_glob(stim_dir, "*.tsv")]
        if not self.stories:
            raise InputError(stim_dir, "no <story>.tsv files")
        tests = meta.get("test_stories")
        if not tests:
            raise InputError(meta_path, "needs `test_stories` (a list of held-out stories)")
        unknown = [s for s in tests if s not in self.stories]
        if unknown:
            raise InputError(meta_path, f"test stories {unknown} have no stimuli/<story>.tsv")
        self.test_stories = list(tests)
        self.train_stories = [s for s in self.stories if s not in self.test_stories]
        if len(self.train_stories) < 2:
            raise InputError(meta_path, "needs at least two training stories for cross-validation")

    @cached_property
    def subjects(self) -> list[str]:
        """Subjects listed in ``dataset.yaml`` or, failing that, the folders in ``responses/``."""
        listed = self.meta.get("subjects")
        if listed:
            return [str(s) for s in listed]
        resp = self.root / "responses"
        return [p.name for p in visible_glob(resp, "*") if p.is_dir()]

    # -- reading ---------------------------------------------------------------------------
    def stimulus_path(self, story: str) -> Path:
        return self.root / "stimuli" / f"{story}.tsv"

    def audio_path(self, story: str) -> Path:
        """``stimuli/<story>.wav``: the recording of the story, for speech models."""
        return self.root / "stimuli" / f"{story}.wav"

    def response_path(self, subject: str, story: str) -> Path:
        return self.root / "responses" / subject / f"{story}.npy"

    def repeats_path(self, subject: str, story: str) -> Path:
        return self.root / "responses" / subject / f"{story}_repeats.npy"

    def voxels_path(self, subject: str) -> Path:
        return self.root / "voxels" / f"{subject}.tsv"

    def mask_path(self, subject: str) -> Path:
        return self.root / "voxels" / f"{subject}_mask.nii.gz"

    def words(self, story: str) -> Words:
        """Words and timings of ``story``."""
        return read_word_table(self.stimulus_path(story))

    def _load(self, path: Path, ndim: int) -> np.ndarray:
        if not path.is_file():
            raise InputError(path, "response file not found")
        try:
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise InputError(path, f"not a readable .npy array ({exc})") from exc
        if arr.ndim != ndim:
            raise InputError(path, f"expected a {ndim}-D array, found shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(path, f"expected floating-point responses, found {arr.dtype}")
        return arr

    @staticmethod
    def _check_finite(path: Path, arr: np.ndarray) -> None:
        """Stop at an infinite response: Inf is no missing value (NaN is), it is a broken
        file, and one would turn every score of its voxel into NaN silently."""
        inf = np.isinf(arr)
        if inf.any():
            where = np.argwhere(inf)
            n_vox = np.unique(where[:, -1]).size
            first = where[0]
            at = ", ".join(
                f"{n}={i}"
                for n, i in zip(("repeat", "tr", "voxel")[-arr.ndim :], first, strict=True)
            )
            raise InputError(
                path,
                f"holds {int(inf.sum())} infinite value(s) in {n_vox} voxel(s), first at "
                f"{at} (column {int(first[-1])}); mark missing data as NaN, not Inf",
            )

    def responses(self, subject: str, story: str) -> np.ndarray:
        """(n_trs, n_voxels) float32 responses of ``subject`` to ``story`` (whole run)."""
        path = self.response_path(subject, story)
        arr = np.asarray(self._load(path, 2), dtype=np.float32)
        self._check_finite(path, arr)
        return arr

    def repeats(self, subject: str, story: str) -> np.ndarray | None:
        """(n_repeats, n_trs, n_voxels) repeats of a test story, or None if absent."""
        path = self.repeats_path(subject, story)
        if not path.is_file():
            return None
        arr = np.asarray(self._load(path, 3), dtype=np.float32)
        self._check_finite(path, arr)
        return arr

    def test_target(self, subject: str, story: str) -> np.ndarray:
        """The response a model is scored against: the mean over repeats when present."""
        reps = self.repeats(subject, story)
        if reps is not None:
            return reps.mean(axis=0)
        return self.responses(subject, story)

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        """Voxel table of ``subject``: ``hemisphere`` ('L'/'R') and ``roi`` arrays."""
        path = self.voxels_path(subject)
        if not path.is_file():
            raise InputError(path, f"voxels file for subject '{subject}' not found")
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "hemisphere" not in rows[0]:
            raise InputError(path, "needs a tab-separated header with a `hemisphere` column")
        hemi = np.array([r["hemisphere"].strip().upper() for r in rows])
        bad = sorted(set(hemi) - {"L", "R"})
        if bad:
            raise InputError(path, f"hemisphere must be L or R, found {bad}")
        roi = np.array([(r.get("roi") or "").strip() for r in rows])
        return {"hemisphere": hemi, "roi": roi}

    def geometry(self, subject: str) -> VolumeGeometry | SurfaceGeometry | None:
        """Where the subject's response columns live (:mod:`lmbrain.geometry`).

        ``voxels/<subject>_mask.nii.gz`` (3-D, nonzero = voxel; columns are its voxels in C
        order) gives a :class:`~lmbrain.geometry.VolumeGeometry`; ``surface: <mesh>`` in
        ``dataset.yaml`` (an fsaverage mesh, :data:`FSAVERAGE_VERTICES`) with a ``vertex``
        column in the voxels file gives a :class:`~lmbrain.geometry.SurfaceGeometry`;
        otherwise None.

        Raises
        ------
        InputError
            Naming the mask whose voxel count differs from the voxels file, an unreadable
            or non-3-D mask, an unknown mesh, or a voxels file without integer vertices in
            range (or with a vertex used twice in a hemisphere).
        """
        mask_path = self.mask_path(subject)
        mesh = self.meta.get("surface")
        if mask_path.is_file() and mesh:
            raise InputError(mask_path, "a volume mask and `surface:` in dataset.yaml disagree")
        if mask_path.is_file():
            return self._volume_geometry(subject, mask_path)
        if mesh:
            return self._surface_geometry(subject, str(mesh))
        return None

    def _volume_geometry(self, subject: str, path: Path) -> VolumeGeometry:
        import nibabel as nib

        try:
            img = nib.load(str(path))
            data = np.asarray(img.dataobj)
        except Exception as exc:  # nibabel raises many types for a bad file
            raise InputError(path, f"not a readable NIfTI image ({exc})") from exc
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise InputError(path, f"a mask must be 3-D, found shape {data.shape}")
        mask = data != 0
        n_vox = len(self.voxels(subject)["hemisphere"])
        if int(mask.sum()) != n_vox:
            raise InputError(
                path,
                f"has {int(mask.sum())} voxels (nonzero) but {self.voxels_path(subject)} "
                f"lists {n_vox}",
            )
        return VolumeGeometry(mask=mask, affine=np.asarray(img.affine, dtype=np.float64))

    def _surface_geometry(self, subject: str, mesh: str) -> SurfaceGeometry:
        if mesh not in FSAVERAGE_VERTICES:
            raise InputError(
                self.meta_path, f"unknown surface {mesh!r}; known: {sorted(FSAVERAGE_VERTICES)}"
            )
        path = self.voxels_path(subject)
        hemi = self.voxels(subject)["hemisphere"]
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if "vertex" not in rows[0]:
            raise InputError(path, f"surface data ({mesh}) need a `vertex` column")
        try:
            vertex = np.array([int(r["vertex"]) for r in rows], dtype=np.int64)
        except (TypeError, ValueError):
            raise InputError(path, "`vertex` must hold integer vertex indices") from None
        n_vert = FSAVERAGE_VERTICES[mesh]
        if vertex.min() < 0 or vertex.max() >= n_vert:
            raise InputError(path, f"`vertex` must lie in 0..{n_vert - 1} for {mesh}")
        for h in ("L", "R"):
            idx = vertex[hemi == h]
            if np.unique(idx).size != idx.size:
                raise InputError(path, f"a vertex appears twice in hemisphere {h}")
        return SurfaceGeometry(
            mesh=mesh, hemisphere=hemi, vertex=vertex, n_vertices={"L": n_vert, "R": n_vert}
        )

    # -- validation ------------------------------------------------------------------------
    def _check_duration(self, path: Path, n_trs: int, words: Words) -> None:
        covered = n_trs * self.tr
        if covered < words.end:
            raise InputError(
                path,
                f"responses have {n_trs} TRs ({covered:.1f} s at TR {self.tr} s) but the stimulus "
                f"lasts {words.end:.1f} s: the TR count does not match the stimulus duration",
            )
        if covered - words.end > self.max_trailing_s:
            raise InputError(
                path,
                f"responses have {n_trs} TRs ({covered:.1f} s) but the stimulus ends at "
                f"{words.end:.1f} s: the TR count does not match the stimulus duration "
                f"(more than max_trailing_s={self.max_trailing_s:g} s of silence after the last word)",
            )
        if n_trs <= self.trim_start + self.trim_end:
            raise InputError(path, f"{n_trs} TRs leave nothing after trimming")

    def validate(self, subjects: list[str]) -> dict:
        """Check every file the workflow will read and return a manifest.

        Parameters
        ----------
        subjects : list of str
            Subjects to check.

        Returns
        -------
        dict
            ``stories`` (n_trs, n_words, test flag), ``subjects`` (n_voxels, hemisphere counts),
            and the timing parameters; written as the dataset manifest.

        Raises
        ------
        InputError
            Naming the first bad file and the problem.
        """
        stories = {}
        words = {story: self.words(story) for story in self.stories}
        for subject in subjects:
            vox = self.voxels(subject)
            n_vox = len(vox["hemisphere"])
            for story in self.stories:
                test = story in self.test_stories
                rep_path = self.repeats_path(subject, story)
                if test and rep_path.is_file():
                    arr = self._load(rep_path, 3)
                    n_trs, n_v, path = arr.shape[1], arr.shape[2], rep_path
                    if arr.shape[0] < 2:
                        raise InputError(rep_path, "needs at least 2 repeats for a noise ceiling")
                    own = self.response_path(subject, story)
                    if own.is_file():
                        n_own = self._load(own, 2).shape[0]
                        if n_own != n_trs:
                            raise InputError(
                                rep_path,
                                f"repeats have {n_trs} TRs but {own} (the story's own "
                                f"responses) has {n_own}: both must cover the same run",
                            )
                else:
                    path = self.response_path(subject, story)
                    arr = self._load(path, 2)
                    n_trs, n_v = arr.shape
                if n_v != n_vox:
                    raise InputError(
                        path,
                        f"has {n_v} voxels but {self.voxels_path(subject)} lists {n_vox}",
                    )
                self._check_finite(path, np.asarray(arr))
                self._check_duration(path, n_trs, words[story])
                known = stories.setdefault(story, {"n_trs": n_trs})
                if known["n_trs"] != n_trs:
                    raise InputError(
                        path,
                        f"has {n_trs} TRs but other subjects have {known['n_trs']} for {story}",
                    )
        for story in self.stories:
            stories.setdefault(story, {})
            stories[story].update(
                {"n_words": len(words[story]), "test": story in self.test_stories}
            )
        subj = {}
        for subject in subjects:
            self.geometry(subject)
            hemi = self.voxels(subject)["hemisphere"]
            subj[subject] = {
                "n_voxels": int(hemi.size),
                "n_left": int((hemi == "L").sum()),
                "n_right": int((hemi == "R").sum()),
            }
        return {
            "dataset": self.name,
            "root": str(self.root),
            "tr": self.tr,
            "trim_start": self.trim_start,
            "trim_end": self.trim_end,
            "stories": stories,
            "train_stories": self.train_stories,
            "test_stories": self.test_stories,
            "subjects": subj,
        }
