"""A simulated trial dataset: people viewing 60 scenes described by captions written for it.

:func:`make_trial_dataset` writes a dataset in the native trial layout
(:mod:`lmbrain.datasets.trials`) with a planted, documented ground truth. No language model is
involved: responses are generated from features computed from the caption text alone.

1. **Stimuli.** ``data/scene_captions.tsv``: 60 scenes in 6 categories (kitchen, street,
   beach, animal, sport, mountain), 2-3 captions each. Two scenes per category (the 1st and
   6th) are test images, the other 48 are training images.
2. **Planted caption features.** Every lower-cased caption word outside a short stop list gets
   a fixed standard-normal vector of size ``word_dim`` (seeded by the word itself); a caption
   is the mean of its words' vectors, a scene the mean of its captions, and each feature is
   then standardised over scenes. Scenes of a category share words, so they share features.
3. **Voxels.** Per hemisphere, half of the voxels are in ROI ``visual`` and half in
   ``control``. A visual voxel's signal is a fixed random projection (standard-normal weights,
   seeded per subject) of the scene features, standardised over scenes, with a signal fraction
   drawn uniformly in ``signal_range``; control voxels have no signal.
4. **Trials.** Each of ``n_repeats`` sessions shows every scene once, in a random order.
   A trial's beta is ``sqrt(f) * signal + sqrt(1 - f) * noise`` (white, unit variance) plus a
   per-session, per-voxel offset and scale (which session z-scoring removes).

``ground_truth/<subject>.tsv`` lists each voxel's ROI, signal fraction ``f`` and the true
``ncsnr = sqrt(f / (1 - f))``; ``ground_truth/features.npy`` holds the planted scene features
(rows in the order of ``ground_truth/stimuli.txt``).
"""

from __future__ import annotations

import csv
import re
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from lmbrain.demo import _staging

CAPTIONS_FILE = "scene_captions.tsv"
STOP_WORDS = frozenset(
    "a an the of on in at to and with by is are its his her their it as from up down near "
    "next over under into onto for two some someone this that there".split()
)
TEST_SUFFIXES = ("01", "06")


def load_scenes(path: str | Path | None = None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Captions and categories of the packaged scenes (or of a file with the same columns).

    Returns
    -------
    captions : dict of str -> list of str
    categories : dict of str -> str
    """
    if path is None:
        text = resources.files("lmbrain.data").joinpath(CAPTIONS_FILE).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    captions: dict[str, list[str]] = {}
    categories: dict[str, str] = {}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        captions.setdefault(row["stimulus"], []).append(row["caption"])
        categories[row["stimulus"]] = row["category"]
    return captions, categories


def _word_vector(word: str, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng([int(seed), zlib.crc32(word.encode("utf-8"))]).standard_normal(dim)


def planted_features(
    captions: dict[str, list[str]], stimuli: list[str], word_dim: int = 8, seed: int = 0
) -> np.ndarray:
    """Scene features from the caption words (see the module docstring, step 2).

    Returns
    -------
    ndarray, shape (n_stimuli, word_dim), columns standardised over the stimuli
    """
    rows = []
    for stim in stimuli:
        caps = []
        for caption in captions[stim]:
            words = [w for w in re.findall(r"[a-z]+", caption.lower()) if w not in STOP_WORDS]
            caps.append(np.mean([_word_vector(w, word_dim, seed) for w in words], axis=0))
        rows.append(np.mean(caps, axis=0))
    x = np.asarray(rows)
    return (x - x.mean(0)) / x.std(0)


def _write_tsv(path: Path, header: list[str], rows) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _subject(root, subject, index, seed, features, stimuli, vph, n_repeats, signal_range):
    rng = np.random.default_rng([int(seed), 1, index])
    n_vox = 2 * vph
    hemi = ["L"] * vph + ["R"] * vph
    roi = (["visual"] * (vph // 2) + ["control"] * (vph - vph // 2)) * 2
    visual = np.array([r == "visual" for r in roi])
    frac = np.where(visual, rng.uniform(*signal_range, n_vox), 0.0)
    signal = features @ rng.standard_normal((features.shape[1], n_vox))
    signal = (signal - signal.mean(0)) / signal.std(0)
    rows, betas = [], []
    for session in range(1, n_repeats + 1):
        order = rng.permutation(len(stimuli))
        noise = rng.standard_normal((len(order), n_vox))
        y = np.sqrt(frac) * signal[order] + np.sqrt(1 - frac) * noise
        offset, scale = rng.normal(0, 1, n_vox), rng.uniform(0.5, 2.0, n_vox)
        betas.append(offset + scale * y)
        rows += [(len(rows) + k, stimuli[i], session) for k, i in enumerate(order)]
    _write_tsv(root / "trials" / f"{subject}.tsv", ["trial", "stimulus", "session"], rows)
    (root / "responses" / subject).mkdir(parents=True)
    np.save(root / "responses" / subject / "betas.npy", np.concatenate(betas).astype(np.float32))
    _write_tsv(
        root / "voxels" / f"{subject}.tsv",
        ["voxel", "hemisphere", "roi"],
        zip(range(n_vox), hemi, roi, strict=True),
    )
    with np.errstate(divide="ignore"):
        snr = np.sqrt(frac / (1 - frac))
    truth = zip(
        range(n_vox), hemi, roi, (f"{f:.6g}" for f in frac), (f"{s:.6g}" for s in snr), strict=True
    )
    _write_tsv(
        root / "ground_truth" / f"{subject}.tsv",
        ["voxel", "hemisphere", "roi", "signal_fraction", "ncsnr"],
        truth,
    )


def make_trial_dataset(
    out_dir: str | Path,
    seed: int = 0,
    n_subjects: int = 2,
    voxels_per_hemisphere: int = 40,
    n_repeats: int = 3,
    *,
    word_dim: int = 8,
    signal_range: tuple[float, float] = (0.3, 0.7),
    captions_file: str | Path | None = None,
) -> Path:
    """Simulate trial responses to the packaged scenes and write them in the trial layout.

    Parameters
    ----------
    out_dir : str or Path
        Dataset root (replaced only once complete, if it already holds a dataset).
    seed : int
        Base seed; the same seed gives identical files.
    n_subjects : int
        Subjects ``sub-01``, ``sub-02``, ...
    voxels_per_hemisphere : int
        Half ``visual`` (planted signal), half ``control`` (noise only).
    n_repeats : int
        Sessions, each showing every scene once (>= 2, for the noise ceiling).
    word_dim : int
        Size of the planted word vectors.
    signal_range : (float, float)
        Range of the visual voxels' signal fractions.
    captions_file : str or Path, optional
        Another scenes file with columns ``stimulus category caption``.

    Returns
    -------
    Path
    """
    if n_repeats < 2 or n_subjects < 1 or voxels_per_hemisphere < 2:
        raise ValueError("needs n_repeats >= 2, n_subjects >= 1, voxels_per_hemisphere >= 2")
    out_dir = Path(out_dir)
    captions, categories = load_scenes(captions_file)
    stimuli = sorted(captions)
    tests = [s for s in stimuli if s.endswith(TEST_SUFFIXES)]
    features = planted_features(captions, stimuli, word_dim, seed)
    subjects = [f"sub-{i + 1:02d}" for i in range(n_subjects)]
    meta = {"name": "trials-demo", "kind": "trials", "test_stimuli": tests, "subjects": subjects}
    with _staging(out_dir) as root:
        for sub in ("stimuli", "trials", "voxels", "ground_truth"):
            (root / sub).mkdir()
        _write_tsv(
            root / "stimuli" / "captions.tsv",
            ["stimulus", "caption"],
            ((s, c) for s in stimuli for c in captions[s]),
        )
        _write_tsv(
            root / "stimuli" / "categories.tsv",
            ["stimulus", "category"],
            ((s, categories[s]) for s in stimuli),
        )
        np.save(root / "ground_truth" / "features.npy", features.astype(np.float32))
        (root / "ground_truth" / "stimuli.txt").write_text("\n".join(stimuli) + "\n")
        for i, subject in enumerate(subjects):
            _subject(
                root,
                subject,
                i,
                seed,
                features,
                stimuli,
                voxels_per_hemisphere,
                n_repeats,
                signal_range,
            )
        (root / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out_dir
