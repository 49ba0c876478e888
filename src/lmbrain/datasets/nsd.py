"""The Natural Scenes Dataset (Allen et al. 2022) in its published layout (format ``nsd``).

Files read (paths relative to the dataset root, as distributed)::

    nsddata/experiments/nsd/nsd_expdesign.mat      masterordering, subjectim, sharedix
    nsddata/experiments/nsd/nsd_stim_info_merged.csv   nsdId -> cocoId, cocoSplit
    nsddata_stimuli/stimuli/nsd/annotations/captions_{train,val}2017.json   COCO captions
    nsddata/ppdata/subjXX/func1pt8mm/roi/nsdgeneral.nii.gz   voxel mask (> 0; else brainmask)
    nsddata/ppdata/subjXX/func1pt8mm/roi/streams.nii.gz      ROI labels (optional)
    nsddata_betas/ppdata/subjXX/func1pt8mm/betas_fithrf_GLMdenoise_RR/
        betas_sessionNN.nii.gz  (X, Y, Z, 750) int16 = percent signal change x 300
        or betas_sessionNN.hdf5 (dataset ``betas``, (750, Z, Y, X))

Trial ``t`` (0-based, over the sessions on disk in order, 750 per session) of subject ``s``
shows image ``subjectim[s, masterordering[t] - 1] - 1`` (the 0-based ``nsdId``); stimulus ids
are ``nsd<nsdId, 5 digits>``. Only sessions present on disk are read, so a download of a few
sessions works. Test images: the shared images (``sharedix``) that every subject on disk
saw (the shared-1000 when all sessions are there). Each image's captions are its COCO
captions. The adapter offers the interface of :class:`lmbrain.datasets.trials.TrialDataset`.
"""

from __future__ import annotations

import csv
import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from lmbrain.datasets.base import visible_glob
from lmbrain.errors import InputError

KIND = "trials"
TRIALS_PER_SESSION = 750
BETA_SCALE = 300.0
BETAS = "betas_fithrf_GLMdenoise_RR"
SPACE = "func1pt8mm"
STREAMS = {
    1: "early",
    2: "midventral",
    3: "midlateral",
    4: "midparietal",
    5: "ventral",
    6: "lateral",
    7: "parietal",
}
CAPTION_DIRS = ("nsddata_stimuli/stimuli/nsd/annotations", "annotations", ".")
_SESSION = re.compile(r"betas_session(\d+)\.(nii\.gz|nii|hdf5)$")


def stimulus_id(nsd_id: int) -> str:
    """Stimulus id of a 0-based nsdId."""
    return f"nsd{int(nsd_id):05d}"


class NSDDataset:
    """Reader of the Natural Scenes Dataset's published layout (see the module docstring).

    Parameters
    ----------
    root : str or Path
        Folder holding ``nsddata/`` and ``nsddata_betas/``.
    """

    kind = KIND
    DESCRIPTION = "nsddata/experiments/nsd/nsd_expdesign.mat"
    zscore_sessions = True
    categories = None

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.name = "nsd"
        self.design_path = self.root / self.DESCRIPTION
        self.stim_info_path = self.design_path.with_name("nsd_stim_info_merged.csv")
        self.categories_path = self.root / "stimuli" / "categories.tsv"  # none in NSD
        if not self.design_path.is_file():
            raise InputError(
                self.design_path, "NSD experimental design not found (is `path` right?)"
            )
        if not self.subjects:
            raise InputError(
                self.root / "nsddata_betas" / "ppdata", f"no subjXX/{SPACE}/{BETAS} betas"
            )
        self.stimuli = sorted(s for s in self._shown_all if s in self.captions)
        shared = {stimulus_id(i) for i in self._design["sharedix"]}
        seen_by_all = set.intersection(*(set(self._shown(s)) for s in self.subjects))
        self.test_stimuli = sorted(shared & seen_by_all & set(self.stimuli))
        test = set(self.test_stimuli)
        self.train_stimuli = [s for s in self.stimuli if s not in test]

    # -- design ----------------------------------------------------------------------------
    @cached_property
    def _design(self) -> dict[str, np.ndarray]:
        from scipy.io import loadmat

        try:
            mat = loadmat(self.design_path)
        except (ValueError, OSError, NotImplementedError) as exc:
            raise InputError(self.design_path, f"not a readable .mat file ({exc})") from exc
        missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
        if missing:
            raise InputError(self.design_path, f"lacks variable(s) {', '.join(missing)}")
        return {
            "masterordering": np.asarray(mat["masterordering"]).ravel().astype(np.int64) - 1,
            "subjectim": np.atleast_2d(np.asarray(mat["subjectim"])).astype(np.int64) - 1,
            "sharedix": np.asarray(mat["sharedix"]).ravel().astype(np.int64) - 1,
        }

    def betas_dir(self, subject: str) -> Path:
        return self.root / "nsddata_betas" / "ppdata" / subject / SPACE / BETAS

    def roi_dir(self, subject: str) -> Path:
        return self.root / "nsddata" / "ppdata" / subject / SPACE / "roi"

    def session_files(self, subject: str) -> list[tuple[int, Path]]:
        """``(session number, file)`` of the subject's beta files on disk, by session."""
        found = {}
        folder = self.betas_dir(subject)
        for path in visible_glob(folder, "betas_session*"):
            match = _SESSION.search(path.name)
            if match:
                found.setdefault(int(match.group(1)), path)  # .nii.gz before .hdf5
        return sorted(found.items())

    @cached_property
    def subjects(self) -> list[str]:
        """``subjXX`` folders that hold at least one session of betas."""
        base = self.root / "nsddata_betas" / "ppdata"
        names = [p.name for p in visible_glob(base, "subj[0-9][0-9]")]
        return [s for s in names if self.session_files(s)]

    def _subject_index(self, subject: str) -> int:
        index = int(subject[4:]) - 1
        if not 0 <= index < self._design["subjectim"].shape[0]:
            raise InputError(self.design_path, f"subjectim has no row for {subject}")
        return index

    def _shown(self, subject: str) -> list[str]:
        """Stimulus id of each trial of the sessions on disk, in order."""
        order = self._design["masterordering"]
        images = self._design["subjectim"][self._subject_index(subject)]
        out = []
        for session, path in self.session_files(subject):
            lo = (session - 1) * TRIALS_PER_SESSION
            if lo + TRIALS_PER_SESSION > len(order):
                raise InputError(path, f"session {session} is beyond masterordering")
            out += [stimulus_id(images[k]) for k in order[lo : lo + TRIALS_PER_SESSION]]
        return out

    @cached_property
    def _shown_all(self) -> set[str]:
        return set().union(*(self._shown(s) for s in self.subjects))

    # -- captions --------------------------------------------------------------------------
    @cached_property
    def captions(self) -> dict[str, list[str]]:
        """COCO captions of every shown image: ``{stimulus: [caption, ...]}``."""
        coco_of = self._coco_ids()
        wanted = {c: s for s, c in coco_of.items() if s in self._shown_all}
        out: dict[str, list[str]] = {}
        for split in ("train2017", "val2017"):
            path = self._caption_file(split)
            if path is None:
                continue
            try:
                annotations = json.loads(path.read_text())["annotations"]
            except (OSError, ValueError, KeyError) as exc:
                raise InputError(path, f"not a COCO captions file ({exc})") from exc
            for ann in annotations:
                stim = wanted.get((split, int(ann["image_id"])))
                if stim is not None:
                    out.setdefault(stim, []).append(str(ann["caption"]).strip())
        if not out:
            raise InputError(self.root / CAPTION_DIRS[0], "no COCO captions of the shown images")
        return out

    def _caption_file(self, split: str) -> Path | None:
        for folder in CAPTION_DIRS:
            path = self.root / folder / f"captions_{split}.json"
            if path.is_file():
                return path
        return None

    def _coco_ids(self) -> dict[str, tuple[str, int]]:
        if not self.stim_info_path.is_file():
            raise InputError(self.stim_info_path, "NSD stimulus info (nsdId -> cocoId) not found")
        with open(self.stim_info_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        need = ("nsdId", "cocoId", "cocoSplit")
        if not rows or any(k not in rows[0] for k in need):
            raise InputError(self.stim_info_path, f"needs columns {', '.join(need)}")
        return {
            stimulus_id(int(r["nsdId"])): (r["cocoSplit"].strip(), int(r["cocoId"])) for r in rows
        }

    # -- responses -------------------------------------------------------------------------
    def trials(self, subject: str) -> dict[str, np.ndarray]:
        """``stimulus`` and ``session`` of every trial on disk (betas rows, in order)."""
        stim = np.array(self._shown(subject), dtype=object)
        sessions = [str(s) for s, _ in self.session_files(subject)]
        session = np.repeat(np.array(sessions, dtype=object), TRIALS_PER_SESSION)
        return {"stimulus": stim, "session": session}

    @cached_property
    def _volumes(self) -> dict:
        return {}

    def _load_volume(self, path: Path):
        import nibabel as nib

        if not path.is_file():
            raise InputError(path, "file not found")
        try:
            img = nib.load(str(path))
            return np.asanyarray(img.dataobj), img.affine
        except Exception as exc:  # nibabel raises many kinds on a bad file
            raise InputError(path, f"not a readable NIfTI file ({exc})") from exc

    def mask(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        """Boolean voxel mask (nsdgeneral > 0, else brainmask > 0) and its affine."""
        key = ("mask", subject)
        if key not in self._volumes:
            path = self.roi_dir(subject) / "nsdgeneral.nii.gz"
            if not path.is_file():
                path = self.roi_dir(subject).parent / "brainmask.nii.gz"
            data, affine = self._load_volume(path)
            self._volumes[key] = (np.asarray(data) > 0, np.asarray(affine))
        return self._volumes[key]

    def geometry(self, subject: str):
        """:class:`lmbrain.geometry.VolumeGeometry` of the subject's mask (func1pt8mm)."""
        from lmbrain.geometry import VolumeGeometry

        mask, affine = self.mask(subject)
        return VolumeGeometry(mask=mask, affine=affine)

    def voxels(self, subject: str) -> dict[str, np.ndarray]:
        """``hemisphere`` (from the world x coordinate) and ``roi`` (streams label) per voxel."""
        mask, _ = self.mask(subject)
        hemi = self.geometry(subject).hemispheres()
        streams = self.roi_dir(subject) / "streams.nii.gz"
        roi = np.full(int(mask.sum()), "", dtype=object)
        if streams.is_file():
            labels = np.asarray(self._load_volume(streams)[0])[mask].astype(int)
            roi = np.array([STREAMS.get(v, "") for v in labels], dtype=object)
        return {"hemisphere": np.asarray(hemi), "roi": roi.astype(str)}

    def _session_betas(self, path: Path, mask: np.ndarray) -> np.ndarray:
        if path.name.endswith(".hdf5"):
            import h5py

            try:
                with h5py.File(path, "r") as fh:
                    data = np.asarray(fh["betas"][()]).transpose(3, 2, 1, 0)
            except (OSError, KeyError) as exc:
                raise InputError(path, f"not an NSD betas HDF5 file ({exc})") from exc
        else:
            data = np.asarray(self._load_volume(path)[0])
        if data.shape[:3] != mask.shape or data.ndim != 4:
            raise InputError(path, f"shape {data.shape} does not match the mask {mask.shape}")
        if data.shape[3] != TRIALS_PER_SESSION:
            raise InputError(path, f"has {data.shape[3]} trials, expected {TRIALS_PER_SESSION}")
        values = data[mask].T.astype(np.float32)
        return values / BETA_SCALE if np.issubdtype(data.dtype, np.integer) else values

    def betas(self, subject: str) -> np.ndarray:
        """(n_trials, n_voxels) betas in percent signal change, sessions in order."""
        mask, _ = self.mask(subject)
        parts = [self._session_betas(p, mask) for _, p in self.session_files(subject)]
        return np.concatenate(parts)

    # -- validation ------------------------------------------------------------------------
    def validate(self, subjects: list[str]) -> dict:
        """Check the design, captions and every subject's mask; return a manifest.

        Beta files are opened lazily by the fits (each is large); their headers are checked.
        """
        import nibabel as nib

        subj = {}
        for subject in subjects:
            if subject not in self.subjects:
                raise InputError(self.betas_dir(subject), f"no betas for {subject}")
            mask, _ = self.mask(subject)
            for _, path in self.session_files(subject):
                if path.name.endswith((".nii.gz", ".nii")):
                    shape = nib.load(str(path)).shape
                    if tuple(shape[:3]) != mask.shape or shape[3] != TRIALS_PER_SESSION:
                        raise InputError(
                            path, f"shape {shape} does not match the mask {mask.shape}"
                        )
            shown = self._shown(subject)
            subj[subject] = {
                "n_trials": len(shown),
                "n_voxels": int(mask.sum()),
                "n_sessions": len(self.session_files(subject)),
                "n_train_stimuli": len(set(shown) - set(self.test_stimuli)),
            }
        if len(self.test_stimuli) < 2:
            raise InputError(self.design_path, "fewer than two shared images seen by all subjects")
        return {
            "dataset": self.name,
            "kind": KIND,
            "root": str(self.root),
            "n_stimuli": len(self.stimuli),
            "n_captions": sum(len(c) for c in self.captions.values()),
            "test_stimuli": self.test_stimuli,
            "subjects": subj,
        }
