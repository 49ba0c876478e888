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


# The release's conventions, each from the publisher's loader, HuthLab/deep-fMRI-dataset
# (commit eaaa5cd), not from lmbrain's adapter:
#: ``load_simulated_trfiles(respdict, tr=2.0, start_time=10.0, pad=5)``,
#: encoding/ridge_utils/stimulus_utils.py:79-86 (called by encoding/feature_spaces.py:18).
LEBEL_TR, LEBEL_START_TIME, LEBEL_PAD = 2.0, 10.0, 5
#: Feature rows kept ``[5 + trim : -trim]`` with ``trim = 5`` (encoding/encoding_utils.py:29,
#: encoding/encoding.py:23), fitted row for row against ``hf["data"]`` (encoding_utils.py:35-46).
LEBEL_TRIM = (10, 5)
#: Non-word labels the loader drops (encoding/ridge_utils/dsutils.py:5, after ``.lower()`` and
#: ``.strip("{}")``, dsutils.py:17): the release's fillers between words.
LEBEL_FILLERS = ["sp", "SP", "{NS}", "br", "{LG}", "ls", "sentence_start"]
#: Stories of session 1 and the test story (em_data/sess_to_story.json, "1").
LEBEL_STORIES = ["alternateithicatom", "avatar", "legacy", "wheretheressmoke"]


def lebel_trigger_times(n_respdict: int) -> np.ndarray:
    """The loader's TR onsets on the story's (TextGrid) clock for a ``respdict`` entry.

    ``TRFile.simulate(n - pad)`` puts TRs at ``arange(n - pad) * tr`` (stimulus_utils.py:63-66)
    and ``get_reltriggertimes`` subtracts ``soundstarttime = start_time`` (lines 68-71, 83).
    """
    return np.arange(n_respdict - LEBEL_PAD) * LEBEL_TR - LEBEL_START_TIME


def lebel_word_rate(n_respdict: int, onsets, offsets) -> np.ndarray:
    """Words per loader TR: word midpoints (DataSequence.py:105-107) in ``[trig, trig + tr)``."""
    trig = lebel_trigger_times(n_respdict)
    mid = (np.asarray(onsets) + np.asarray(offsets)) / 2
    k = np.floor((mid - trig[0]) / LEBEL_TR).astype(int)
    k = k[(k >= 0) & (k < trig.size)]
    return np.bincount(k, minlength=trig.size).astype(float)


def spm_like_hrf(tr: float, length_s: float = 30.0) -> np.ndarray:
    """A double-gamma HRF (peak near 5 s, undershoot near 15 s) sampled every ``tr`` seconds."""
    from math import gamma

    t = np.arange(0.0, length_s, tr)
    peak = t**5 * np.exp(-t) / gamma(6)
    under = t**15 * np.exp(-t) / gamma(16)
    return peak - under / 6


def lebel_planted_response(rng, n_respdict, onsets, offsets, weights, noise=0.4):
    """Released ``.hf5`` rows: the loader-grid word rate convolved with an HRF, trimmed 10/5.

    Row ``j`` of the release is loader TR ``j + 10`` (the ``[5 + trim : -trim]`` rows), so the
    array has ``respdict - 5 - 15 = respdict - 20`` rows.
    """
    rate = lebel_word_rate(n_respdict, onsets, offsets)
    signal = np.convolve(rate, spm_like_hrf(LEBEL_TR))[: rate.size]
    signal = (signal - signal.mean()) / (signal.std() + 1e-9)
    y = signal[:, None] * weights[None, :] + noise * rng.standard_normal((rate.size, weights.size))
    return y[LEBEL_TRIM[0] : rate.size - LEBEL_TRIM[1]].astype(np.float32)


def lebel_intervals(words, on, off, rng):
    """Contiguous word-tier intervals: words with the release's non-word fillers between."""
    items, t = [], 0.0
    for w, a, b in zip(words, on, off, strict=True):
        if a > t:
            items.append((round(t, 3), float(a), str(rng.choice(LEBEL_FILLERS))))
        items.append((float(a), float(b), w))
        t = float(b)
    items.append((t, t + 5.0, "sp"))
    return items


def make_lebel(root: Path, seed: int = 0, n_vox: int = 40, noise: float = 0.4) -> dict:
    """ds003020 layout: 4 stories, UTS01 has all, UTS02 lacks one training story.

    - ``derivative/TextGrids/<story>.TextGrid``, ``derivative/respdict.json`` and
      ``derivative/preprocessed_data/<subject>/<story>.hf5`` (dataset ``data``): the paths the
      loader opens (stimulus_utils.py:9-12, feature_spaces.py:16, encoding_utils.py:38-43);
    - TextGrids in Praat's long and short text formats, one with CRLF line ends: the loader's
      reader handles both formats and either line end (textgrid.py:94-110, 193-213);
    - ``.hf5`` rows = respdict - 20 (see :func:`lebel_planted_response`);
    - not every subject heard every story (LeBel et al. 2023, Sci Data 10:555: UTS01-03 heard
      more stories than UTS04-08): UTS02 has no ``avatar``;
    - ``derivative/pycortex-db/<S>/transforms/<S>_auto/mask_thick.nii.gz``: the pycortex mask
      whose voxels, in pycortex's (z, y, x) order, the responses are. pycortex saves its
      (z, y, x) masks transposed into NIfTI (x, y, z) arrays; here a ``n_vox``-voxel mask of a
      (5, 4, 3) grid with world x from -7.5 to 4.5 mm (when ``n_vox <= 60``).
    """
    import h5py
    import nibabel as nib

    rng = np.random.default_rng(seed)
    (root / "derivative" / "TextGrids").mkdir(parents=True)
    truth = {"stories": LEBEL_STORIES, "words": {}, "onsets": {}, "offsets": {}, "respdict": {}}
    for i, story in enumerate(LEBEL_STORIES):
        words, on, off = story_words(rng, 110, start_s=1.0)
        truth["words"][story], truth["onsets"][story], truth["offsets"][story] = words, on, off
        path = root / "derivative" / "TextGrids" / f"{story}.TextGrid"
        write_textgrid(path, lebel_intervals(words, on, off, rng), short=(i % 2 == 1))
        if i == 2:
            path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
        n_run = int(np.ceil((LEBEL_START_TIME + off[-1] + 12.0) / LEBEL_TR))
        truth["respdict"][story] = n_run + LEBEL_PAD
    (root / "derivative" / "respdict.json").write_text(json.dumps(truth["respdict"]))
    weights = rng.uniform(0.5, 1.5, n_vox)
    truth["weights"] = weights
    mask = None
    if n_vox <= int(np.prod(LPP_SHAPE)):
        flat = np.zeros(int(np.prod(LPP_SHAPE)), dtype=bool)
        flat[rng.choice(flat.size, n_vox, replace=False)] = True
        mask = flat.reshape(LPP_SHAPE)
    truth["mask"] = mask
    for subject in ["UTS01", "UTS02"]:
        folder = root / "derivative" / "preprocessed_data" / subject
        folder.mkdir(parents=True)
        for story in LEBEL_STORIES:
            if subject == "UTS02" and story == "avatar":
                continue
            on, off = truth["onsets"][story], truth["offsets"][story]
            y = lebel_planted_response(rng, truth["respdict"][story], on, off, weights, noise=noise)
            with h5py.File(folder / f"{story}.hf5", "w") as fh:
                fh["data"] = y
        if mask is not None:
            xfm = root / "derivative" / "pycortex-db" / subject / "transforms" / f"{subject}_auto"
            xfm.mkdir(parents=True)
            img = nib.Nifti1Image(mask.astype(np.uint8), LPP_AFFINE)
            nib.save(img, xfm / "mask_thick.nii.gz")
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
# The layout follows the publishers' scripts (github.com/snastase/narratives): file names from
# code/task_meta.json (`sub-001_task-pieman_run-1_space-fsaverage6_hemi-L...func.gii`) with the
# `desc-clean` that code/run_regression.py (lines 58-66) adds for afni-nosmooth; events.tsv
# columns and values from staging/compile_events.py (lines 23-49: pieman music 0.0 s then story
# 15.0 s, milkyway music 0.0 s then story 21.0 s per condition, tunnel/lucy story at 3.0 s); the
# onset correction of lines 133-150 (story at 21 - 6 = 15 s: the audio started 6 s early);
# participants.tsv columns from staging/compile_participants.py (lines 78-88, comma lists);
# code/scan_exclude.json's {task: {subject: [scan name]}} shape (e.g. "sub-013_task-pieman_run-2");
# Gentle align.json entries {word, alignedWord, case, start, end, phones} with
# `not-found-in-audio` words carrying no times (code/get_words.py lines 27-35), times on the
# audio file's clock (code/plot_stim.py lines 18, 66-85: Pie Man's first words at 15-23 s).
NARRATIVES_STORIES = ["lucy", "milkywayoriginal", "milkywayvodka", "pieman", "tunnel"]
NARRATIVES_TASKS = {
    "lucy": "lucy",
    "milkywayoriginal": "milkyway",
    "milkywayvodka": "milkyway",
    "pieman": "pieman",
    "tunnel": "tunnel",
}
# events.tsv rows (onset, duration, trial_type) before the story's duration is known
NARRATIVES_EVENTS = {
    "pieman": [(0.0, 13.0, "music"), (15.0, None, "story")],
    "milkyway": [(0.0, 18.0, "music"), (21.0, None, "story")],
    "lucy": [(3.0, None, "story")],
    "tunnel": [(3.0, None, "story")],
}
# where the story starts on its audio file's clock (0 where the audio holds only the story)
NARRATIVES_AUDIO_STORY_START = {"pieman": 15.0, "milkyway": 21.0, "lucy": 0.0, "tunnel": 0.0}


def gentle_json(words, on, off, rng, n_unaligned: int = 3) -> dict:
    """A Gentle align.json: aligned words plus a few 'not-found-in-audio' ones (no times)."""
    entries = [
        {
            "alignedWord": w.lower(),
            "case": "success",
            "end": float(b),
            "endOffset": 0,
            "phones": [{"duration": float(b - a), "phone": "ah_I"}],
            "start": float(a),
            "startOffset": 0,
            "word": w,
        }
        for w, a, b in zip(words, on, off, strict=True)
    ]
    for k in range(n_unaligned):
        pos = int(rng.integers(1, len(entries)))
        entries.insert(
            pos, {"case": "not-found-in-audio", "endOffset": 0, "startOffset": 0, "word": f"um{k}"}
        )
    return {"transcript": " ".join(words), "words": entries}


def _write_tsv(path: Path, header, rows) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def make_narratives(
    root: Path,
    seed: int = 2,
    n_subjects: int = 6,
    n_vert: int = 30,
    surface: bool = True,
    missing=(("sub-004", "lucy"),),
    lag_trs: int = 0,
):
    """ds002345 as released, small: see the source comments above for each file's evidence.

    Subjects: sub-001..003 heard milkyway ``original``, sub-004.. ``vodka``; sub-002 heard
    pieman twice (run-1, run-2, both kept), sub-005 too (run-2 excluded by scan_exclude.json);
    sub-003's milkyway is excluded; sub-004's milkyway audio started 6 s early (its events.tsv
    says story at 15.0 s); sub-006 heard only pieman and tunnel. ``missing`` lists (subject,
    story) scans absent from the release. The planted responses follow the word rate on the
    scan's true timeline (events.tsv's story onset + the word's time in the story), two TRs
    later, moved by ``lag_trs`` more (a wrong timeline, for the timing test).

    Returns
    -------
    dict
        ``weights`` (per column), ``scan_words`` ({(subject, scan): word onsets in the scan}).
    """
    import nibabel as nib

    rng = np.random.default_rng(seed)
    tr = 1.5
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "Narratives", "BIDSVersion": "1.2.0"})
    )
    story_times = {}  # story -> (onsets, offsets) from the story's first word, seconds
    for story in NARRATIVES_STORIES:
        folder = root / "stimuli" / "gentle" / story
        folder.mkdir(parents=True)
        words, on, off = story_words(rng, 90, start_s=0.6)
        story_times[story] = (on, off)
        audio = NARRATIVES_AUDIO_STORY_START[NARRATIVES_TASKS[story]]
        doc = gentle_json(words, on + audio, off + audio, rng)
        (folder / "align.json").write_text(json.dumps(doc))
        (folder / "transcript.txt").write_text(doc["transcript"])
    for task in sorted(set(NARRATIVES_TASKS.values())):
        # BIDS inheritance: one top-level sidecar per task (no per-subject sidecar here)
        (root / f"task-{task}_bold.json").write_text(
            json.dumps({"RepetitionTime": tr, "TaskName": task})
        )
    (root / "code").mkdir()
    (root / "code" / "scan_exclude.json").write_text(
        json.dumps(
            {
                "lucy": {},
                "milkyway": {"sub-003": ["sub-003_task-milkyway"]},
                "pieman": {"sub-005": ["sub-005_task-pieman_run-2"]},
                "tunnel": {},
            },
            indent=2,
        )
    )
    deriv = root / "derivatives" / "afni-nosmooth"
    mask = np.ones(LPP_SHAPE, dtype=bool)
    if not surface:
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), LPP_AFFINE), root / "group_mask.nii.gz")
    n_cols = 2 * n_vert if surface else int(mask.sum())
    weights = rng.uniform(0.5, 1.5, n_cols)
    participants, scan_words = [], {}
    for s in range(1, n_subjects + 1):
        subject = f"sub-{s:03d}"
        cond = "original" if s <= 3 else "vodka"
        heard = ["pieman", "tunnel"] if s == 6 else ["pieman", "tunnel", "lucy", "milkyway"]
        heard = [t for t in heard if (subject, t) not in missing]
        participants.append(
            [
                subject,
                "25",
                "F",
                ",".join(heard),
                ",".join(cond if t == "milkyway" else "n/a" for t in heard),
                ",".join("n/a" for _ in heard),
            ]
        )
        func = deriv / subject / "func"
        func.mkdir(parents=True)
        raw = root / subject / "func"
        raw.mkdir(parents=True)
        for task in heard:
            story = f"milkyway{cond}" if task == "milkyway" else task
            on, off = story_times[story]
            n_runs = 2 if task == "pieman" and subject in ("sub-002", "sub-005") else 1
            for run in range(1, n_runs + 1):
                scan = f"{subject}_task-{task}" + (f"_run-{run}" if n_runs > 1 else "")
                events = [list(e) for e in NARRATIVES_EVENTS[task]]
                story_onset = events[-1][0]  # where the story truly starts in this scan
                if subject == "sub-004" and task == "milkyway":
                    events[-1][0] = story_onset = 15.0  # audio started 6 s early
                events[-1][1] = round(float(off[-1]) + 1.0, 1)
                _write_tsv(
                    raw / f"{scan}_events.tsv",
                    ["onset", "duration", "trial_type", "stim_file"],
                    [[*e, f"{task}{cond if task == 'milkyway' else ''}_audio.wav"] for e in events],
                )
                scan_on = np.clip(on + story_onset + lag_trs * tr, 0, None)
                scan_off = np.clip(off + story_onset + lag_trs * tr, 0.1, None)
                scan_words[(subject, scan)] = on + story_onset
                n_trs = run_trs(off + NARRATIVES_EVENTS[task][-1][0], tr)
                y = planted_run(rng, scan_on, scan_off, n_trs, tr, weights, noise=0.6)
                if surface:
                    for h, cols in (("L", y[:, :n_vert]), ("R", y[:, n_vert:])):
                        img = nib.gifti.GiftiImage(
                            darrays=[
                                nib.gifti.GiftiDataArray(row.astype(np.float32)) for row in cols
                            ]
                        )
                        nib.save(
                            img, func / f"{scan}_space-fsaverage6_hemi-{h}_desc-clean.func.gii"
                        )
                else:
                    vol = np.zeros((*LPP_SHAPE, y.shape[0]), dtype=np.float32)
                    vol[mask] = y.T
                    name = f"{scan}_space-MNI152NLin2009cAsym_res-native_desc-clean_bold.nii.gz"
                    nib.save(nib.Nifti1Image(vol, LPP_AFFINE), func / name)
    _write_tsv(
        root / "participants.tsv",
        ["participant_id", "age", "sex", "task", "condition", "comprehension"],
        participants,
    )
    return {"weights": weights, "scan_words": scan_words}
