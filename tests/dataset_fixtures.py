"""Small copies of the three public datasets, in their published layouts and file formats.

Each writer builds a few short stories of words from :func:`lmbrain.testing.corpus_words` (so
the tiny test tokenizers know them), and voxel responses with a planted signal: the number of
words heard in each TR, two TRs later, times a positive per-voxel weight, plus Gaussian noise
(the word rate is captured by any language model's features, trained or not).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmbrain.testing import corpus_words

DELAY_TRS = 2


def story_words(rng, n_words: int, start_s: float):
    """Words, onsets and offsets with irregular pauses (a varying word rate)."""
    vocab = [w.strip(".,;:!?") for w in corpus_words()]
    vocab = [w for w in vocab if w]
    words, on, off, t = [], [], [], start_s
    for i in range(n_words):
        dur = rng.uniform(0.2, 0.5)
        words.append(vocab[i % len(vocab)])
        on.append(round(t, 3))
        off.append(round(t + dur, 3))
        t += dur + (rng.uniform(1.0, 4.0) if rng.random() < 0.25 else rng.uniform(0.0, 0.1))
    return words, np.array(on), np.array(off)


def run_trs(offsets, tr: float, tail_s: float = 12.0) -> int:
    """TRs of a run that ends ``tail_s`` seconds after its last word."""
    return int(np.ceil((offsets[-1] + tail_s) / tr))


def planted_run(rng, onsets, offsets, n_trs: int, tr: float, weights, noise: float = 0.4):
    """(n_trs, n_voxels) responses: delayed word rate x weights + noise."""
    n_trs = n_trs or run_trs(offsets, tr)
    mid = (onsets + offsets) / 2
    rate = np.bincount(np.minimum((mid // tr).astype(int), n_trs - 1), minlength=n_trs)
    signal = np.roll(rate.astype(float), DELAY_TRS)
    signal[:DELAY_TRS] = 0
    signal = (signal - signal.mean()) / (signal.std() + 1e-9)
    y = signal[:, None] * weights[None, :] + noise * rng.standard_normal((n_trs, weights.size))
    return y.astype(np.float32)


# -- LeBel et al. (ds003020) -----------------------------------------------------------------
def write_textgrid(path: Path, intervals, short: bool = False, xmax: float | None = None):
    """A Praat TextGrid with a phone tier and a word tier, long or short text format."""
    xmax = xmax if xmax is not None else intervals[-1][1]
    tiers = [("phone", [(0.0, xmax, "")]), ("word", intervals)]
    if short:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", f"{xmax}"]
        lines += ["<exists>", str(len(tiers))]
        for name, items in tiers:
            lines += ['"IntervalTier"', f'"{name}"', "0", f"{xmax}", str(len(items))]
            for a, b, t in items:
                lines += [f"{a}", f"{b}", '"' + t.replace('"', '""') + '"']
    else:
        lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 "]
        lines += [f"xmax = {xmax} ", "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
        for k, (name, items) in enumerate(tiers, start=1):
            lines += [f"    item [{k}]:", '        class = "IntervalTier" ']
            lines += [f'        name = "{name}" ', "        xmin = 0 ", f"        xmax = {xmax} "]
            lines += [f"        intervals: size = {len(items)} "]
            for j, (a, b, t) in enumerate(items, start=1):
                text = t.replace('"', '""')
                lines += [f"        intervals [{j}]:", f"            xmin = {a} "]
                lines += [f"            xmax = {b} ", f'            text = "{text}" ']
    path.write_text("\n".join(lines) + "\n")


def word_intervals(words, on, off, rng):
    """Contiguous TextGrid intervals: words, with sp / {NS} / empty fillers between them."""
    items, t = [], 0.0
    for w, a, b in zip(words, on, off, strict=True):
        if a > t:
            items.append((round(t, 3), float(a), str(rng.choice(["sp", "", "{NS}", "br"]))))
        items.append((float(a), float(b), w))
        t = float(b)
    items.append((t, t + 5.0, "sentence_end"))
    return items


def make_lebel(root: Path, seed: int = 0, n_vox: int = 40) -> dict:
    """ds003020 layout: 4 stories, UTS01 has all, UTS02 lacks one training story."""
    import h5py

    rng = np.random.default_rng(seed)
    tr = 2.0045
    stories = ["alternateithicatom", "avatar", "legacy", "wheretheressmoke"]
    (root / "derivative" / "TextGrids").mkdir(parents=True)
    truth = {"stories": stories, "words": {}}
    respdict = {}
    runs = {}
    for i, story in enumerate(stories):
        words, on, off = story_words(rng, 110, start_s=22.0)
        truth["words"][story] = words
        write_textgrid(
            root / "derivative" / "TextGrids" / f"{story}.TextGrid",
            word_intervals(words, on, off, rng),
            short=(i % 2 == 1),
        )
        respdict[story] = run_trs(off, tr) - 15
        runs[story] = (on, off)
    (root / "derivative" / "respdict.json").write_text(json.dumps(respdict))
    for subject in ["UTS01", "UTS02"]:
        folder = root / "derivative" / "preprocessed_data" / subject
        folder.mkdir(parents=True)
        weights = rng.uniform(0.5, 1.5, n_vox)
        for story in stories:
            if subject == "UTS02" and story == "avatar":
                continue
            y = planted_run(rng, *runs[story], 0, tr, weights)
            with h5py.File(folder / f"{story}.hf5", "w") as fh:
                fh["data"] = y[10:-5]
    return truth


# -- Le Petit Prince (ds003643) --------------------------------------------------------------
#: A small grid, 3 mm voxels, centred on x = 0 (no voxel at x = 0, so every voxel has a side);
#: the brain is large enough (radii 5-7 voxels) to survive the EPI mask's morphological opening.
LPP_GRID_SHAPE = (16, 14, 12)
LPP_GRID_AFFINE = np.array([[3.0, 0, 0, -22.5], [0, 3, 0, -19.5], [0, 0, 3, -16.5], [0, 0, 0, 1]])
#: The small grid other fixtures and tests use for volumes.
LPP_SHAPE = (5, 4, 3)
LPP_AFFINE = np.array([[3.0, 0, 0, -7.5], [0, 3, 0, -6], [0, 0, 3, 0], [0, 0, 0, 1]])
#: English subject ids of the release (BGP README L165: EN057 EN058 EN059 EN061 EN062; the
#: Pallier lab's LPP scripts list 57, 58, 59, 61, 62, 63, 64, 65, ...).
LPP_SUBJECTS = ["EN057", "EN058", "EN059", "EN061", "EN062", "EN063", "EN064", "EN065"]
#: Baseline EPI intensity inside the brain (outside: |noise| around 0), so that an EPI mask
#: (nilearn compute_epi_mask, the publishers' method) finds the brain.
LPP_BASELINE = 100.0


def lpp_brain() -> np.ndarray:
    """The fixture's brain: an ellipsoid, mirror-symmetric across x = 0."""
    ijk = np.indices(LPP_GRID_SHAPE).reshape(3, -1).T
    xyz = np.c_[ijk, np.ones(len(ijk))] @ LPP_GRID_AFFINE.T
    r = (xyz[:, 0] / 21.5) ** 2 + (xyz[:, 1] / 18.5) ** 2 + (xyz[:, 2] / 15.5) ** 2
    return (r <= 1.0).reshape(LPP_GRID_SHAPE)


def lpp_bold_name(subject: str, run: int) -> str:
    """The release's file name (e.g. ``sub-EN057_task-lppEN_run-15_space-MNIColin27_desc-
    preproc_bold.nii.gz``, seen in public code that reads ds003643 derivatives)."""
    return f"sub-{subject}_task-lppEN_run-{run}_space-MNIColin27_desc-preproc_bold.nii.gz"


def write_lpp_mask(path: Path, mask: np.ndarray) -> Path:
    import nibabel as nib

    nib.save(nib.Nifti1Image(mask.astype(np.uint8), LPP_GRID_AFFINE), path)
    return path


def make_lpp(
    root: Path,
    seed: int = 1,
    n_subjects: int = 4,
    n_runs: int = 4,
    missing=(),
    signal=None,
):
    """ds003643 layout: the English annotation CSV and one 4-D NIfTI per subject and run.

    - ``annotation/EN/lppEN_word_information.csv`` with the columns the publishers' code reads
      (``word``, ``onset``, ``offset``, ``section``; BGP extract_llm_activations.py L104 and
      L199-202) and one more (the release has more columns than these), onsets in seconds
      from the start of the section's run;
    - ``derivatives/sub-EN0xx/func/<lpp_bold_name>``; run numbers are acquisition numbers:
      from 15 (as EN057's ``run-15``) for even-indexed subjects, from 8 for the others (so a
      text sort, which puts run-10 before run-8, would misplace them);
    - no mask (none ships with the release); sections of different lengths, as the real
      ones (EN: 282, 298, 340, 303, 265, 343, 325, 292, 368 scans).

    ``missing`` lists (subject index from 1, section) runs absent from the release.
    ``signal``, if given, maps (section, onsets, offsets, n_trs) to the (n_trs,) planted
    time course instead of :func:`planted_run`'s delayed word rate. Subjects share the
    planted signal (same weights) with their own noise. Brain voxels hold ``LPP_BASELINE``
    plus the response; the truth returned has the brain mask and the weights of its voxels.
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    tr = 2.0
    ann = root / "annotation" / "EN"
    ann.mkdir(parents=True)
    rows, runs = ["word,onset,offset,section,lemma"], {}
    for section in range(1, n_runs + 1):
        words, on, off = story_words(rng, 80 + 12 * section, start_s=3.0)
        runs[section] = (on, off)
        for w, a, b in zip(words, on, off, strict=True):
            rows.append(f"{w},{a},{b},{section},{w.lower()}")
    (ann / "lppEN_word_information.csv").write_text("\n".join(rows) + "\n")
    lengths = {s: run_trs(off, tr) for s, (_, off) in runs.items()}
    assert len(set(lengths.values())) == len(lengths), "sections must differ in length"
    brain = lpp_brain()
    weights = rng.uniform(0.5, 1.5, int(brain.sum()))
    deriv = root / "derivatives"
    for k in range(1, n_subjects + 1):
        subject = LPP_SUBJECTS[k - 1]
        func = deriv / f"sub-{subject}" / "func"
        func.mkdir(parents=True)
        first = 15 if k % 2 else 8
        for section in range(1, n_runs + 1):
            if (k, section) in missing:
                continue
            on, off = runs[section]
            if signal is None:
                y = planted_run(rng, on, off, lengths[section], tr, weights, noise=0.8)
            else:
                s = signal(section, on, off, lengths[section])
                y = s[:, None] * weights[None, :]
                y = y + 0.8 * rng.standard_normal(y.shape)
            vol = np.abs(rng.normal(0, 2.0, (*LPP_GRID_SHAPE, lengths[section]))).astype(np.float32)
            vol[brain] = LPP_BASELINE + y.T
            name = lpp_bold_name(subject, first + section - 1)
            nib.save(nib.Nifti1Image(vol, LPP_GRID_AFFINE), func / name)
    return {
        "mask": brain,
        "weights": weights,
        "subjects": [f"sub-{s}" for s in LPP_SUBJECTS[:n_subjects]],
        "lengths": lengths,
        "runs": runs,
    }


# -- Narratives (ds002345) -------------------------------------------------------------------
NARRATIVES_STORIES = ["lucy", "pieman", "tunnel", "wheretheressmoke"]


def gentle_json(words, on, off, rng, n_unaligned: int = 3) -> dict:
    """A Gentle align.json: aligned words plus a few 'not-found-in-audio' ones."""
    entries = [
        {
            "alignedWord": w.lower(),
            "case": "success",
            "start": float(a),
            "end": float(b),
            "word": w,
            "phones": [],
        }
        for w, a, b in zip(words, on, off, strict=True)
    ]
    for k in range(n_unaligned):
        pos = int(rng.integers(1, len(entries)))
        entries.insert(pos, {"case": "not-found-in-audio", "word": f"um{k}"})
    return {"transcript": " ".join(words), "words": entries}


def make_narratives(
    root: Path,
    seed: int = 2,
    n_subjects: int = 5,
    n_vert: int = 30,
    n_trs: int = 80,
    surface: bool = True,
    missing=(("sub-004", "lucy"),),
):
    """ds002345 layout: Gentle alignments, BIDS sidecars, fsaverage-style GIfTI (or NIfTI) runs.

    ``missing`` lists (subject, story) runs absent from the release (a logged skip).
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    tr = 1.5
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "Narratives"}))
    runs = {}
    for story in NARRATIVES_STORIES:
        folder = root / "stimuli" / "gentle" / story
        folder.mkdir(parents=True)
        words, on, off = story_words(rng, 90, start_s=4.0)
        runs[story] = (on, off)
        (folder / "align.json").write_text(json.dumps(gentle_json(words, on, off, rng)))
        (root / f"task-{story}_bold.json").write_text(json.dumps({"RepetitionTime": tr}))
    deriv = root / "derivatives" / "afni-nosmooth"
    mask = np.ones(LPP_SHAPE, dtype=bool)
    if not surface:
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), LPP_AFFINE), root / "group_mask.nii.gz")
    n_cols = 2 * n_vert if surface else int(mask.sum())
    weights = rng.uniform(0.5, 1.5, n_cols)
    for s in range(1, n_subjects + 1):
        subject = f"sub-{s:03d}"
        func = deriv / subject / "func"
        func.mkdir(parents=True)
        for story in NARRATIVES_STORIES:
            if (subject, story) in missing:
                continue
            y = planted_run(rng, *runs[story], 0, tr, weights, noise=0.6)
            stem = f"{subject}_task-{story}"
            if surface:
                space = "space-fsaverage6"
                for h, cols in (("L", y[:, :n_vert]), ("R", y[:, n_vert:])):
                    img = nib.gifti.GiftiImage(
                        darrays=[nib.gifti.GiftiDataArray(row.astype(np.float32)) for row in cols]
                    )
                    nib.save(img, func / f"{stem}_{space}_hemi-{h}_desc-clean.func.gii")
            else:
                vol = np.zeros((*LPP_SHAPE, y.shape[0]), dtype=np.float32)
                vol[mask] = y.T
                name = f"{stem}_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz"
                nib.save(nib.Nifti1Image(vol, LPP_AFFINE), func / name)
    return {"weights": weights}
