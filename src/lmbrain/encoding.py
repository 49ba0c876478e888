"""One encoding model, end to end: design matrices, ridge fit, held-out scores.

This composes the steps of :mod:`lmbrain.temporal`, :mod:`lmbrain.fitting`,
:mod:`lmbrain.scoring` and :mod:`lmbrain.ceilings` for one (subject, model, layer, train
fraction). The workflow's fit rule calls :func:`fit_encoding_model`; so can a notebook.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lmbrain.config import section
from lmbrain.features import read_feature_info, read_feature_times, read_features
from lmbrain.fitting import alpha_grid, fit_ridge_cv, nested_train_subsets
from lmbrain.scoring import normalized_r, paper_summaries, pearson_r, r2_score, summarize_scores
from lmbrain.significance import voxel_significance
from lmbrain.temporal import build_design, prepare_responses


def story_design(dataset, feature_path, story: str, layer: int, n_trs: int, temporal: dict):
    """Design matrix of one story: features -> TRs -> trim -> z-score -> delays.

    Word features take their words' times; time-based features (speech models) the times
    stored with them.

    Parameters
    ----------
    dataset : dataset adapter
        Gives the story's words and timing parameters.
    feature_path : str or Path
        HDF5 file written by the extraction rule.
    story : str
    layer : int
        Hidden-state index.
    n_trs : int
        Number of TRs of the story's run (before trimming).
    temporal : dict
        The config's ``temporal`` section (method, window, delays).

    Returns
    -------
    ndarray, shape (n_trs - trim, n_features * n_delays), float32
    """
    feats = read_features(feature_path, story, layer)
    times = read_feature_times(feature_path, story)  # speech models: one row per window
    if times is None:
        words = dataset.words(story)
        if feats.shape[0] != len(words):
            raise ValueError(
                f"{feature_path}: story {story} has {feats.shape[0]} feature rows "
                f"but {len(words)} words in {dataset.stimulus_path(story)}"
            )
        times, durations = word_events(words, temporal)
        return design_from_features(dataset, feats, times, n_trs, temporal, durations)
    return design_from_features(dataset, feats, times, n_trs, temporal)


def word_events(words, temporal: dict):
    """Times (and durations) of a story's words for :func:`design_from_features`.

    Parameters
    ----------
    words : lmbrain.stimulus.Words
    temporal : dict
        The config's ``temporal`` section.

    Returns
    -------
    times : ndarray
        The words' midpoints, or their onsets for ``method: hrf`` with ``hrf_events: boxcar``.
    durations : ndarray or None
        ``offsets - onsets`` for boxcars, else None (impulses at the midpoints).
    """
    if temporal.get("method") == "hrf" and temporal.get("hrf_events", "impulse") == "boxcar":
        return words.onsets, words.offsets - words.onsets
    return words.times, None


def design_from_features(dataset, feats, times, n_trs: int, temporal: dict, durations=None):
    """:func:`lmbrain.temporal.build_design` with the dataset's TR and trims.

    Parameters
    ----------
    dataset : dataset adapter
        Gives ``tr``, ``trim_start`` and ``trim_end``.
    feats : ndarray, shape (n_rows, n_features)
    times : ndarray, shape (n_rows,)
        Time of each row, in seconds from the run's start.
    n_trs : int
        Number of TRs of the run (before trimming).
    temporal : dict
        The config's ``temporal`` section (method, window, delays); missing keys take their
        defaults (:func:`lmbrain.config.section`).
    durations : ndarray, shape (n_rows,), optional
        Row durations (boxcar events of ``method: hrf``, :func:`word_events`).
    """
    temporal = section("temporal", temporal)
    return build_design(
        feats,
        times,
        n_trs,
        dataset.tr,
        dataset.trim_start,
        dataset.trim_end,
        method=temporal["method"],
        delays=tuple(temporal["delays"]),
        window=temporal["window"],
        durations=durations,
    )


#: Outer cross-validation schemes (``fitting.cv``).
CV_SCHEMES = ("test_stories", "leave_one_run_out", "by_subject")


def _own_stories(dataset, subject: str) -> list[str]:
    """Stories ``subject`` has responses for (every story for adapters that do not say)."""
    own = getattr(dataset, "subject_stories", None)
    return list(own(subject)) if own is not None else list(dataset.stories)


def outer_folds(
    dataset, subject: str, fraction: float, cv: str, seed: int, subjects=None
) -> list[tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """Train and test ``(subject, story)`` pairs of each outer fold.

    Parameters
    ----------
    dataset : dataset adapter
    subject : str
        The subject scored.
    fraction : float
        Fraction of the training stories (``by_subject``: of the training subjects), nested
        subsets drawn with ``seed``.
    cv : {"test_stories", "leave_one_run_out", "by_subject"}
        ``test_stories``: one fold, the subject's training stories against the dataset's test
        stories (those the subject heard). ``leave_one_run_out``: each of the subject's stories
        (runs) is held out in turn and the model is fitted on the others. ``by_subject``: one
        fold, fitted on every story of the other subjects (``subjects``, default the dataset's,
        without ``average``) and tested on every story of ``subject``.
    seed : int
    subjects : list of str, optional
        The subjects of the study (``by_subject``).

    Returns
    -------
    list of (train_pairs, test_pairs)
    """
    own = _own_stories(dataset, subject)
    if cv == "test_stories":
        train = [s for s in dataset.train_stories if s in own]
        test = [s for s in dataset.test_stories if s in own]
        if not test or len(train) < 2:
            raise ValueError(
                f"{subject} has {len(train)} training and {len(test)} test stories "
                f"(of {dataset.test_stories}); it needs 2 and 1 (or fitting.cv: by_subject)"
            )
        chosen = nested_train_subsets(train, [fraction], seed)[fraction]
        return [([(subject, s) for s in chosen], [(subject, s) for s in test])]
    if cv == "leave_one_run_out":
        if len(own) < 3:
            raise ValueError(f"{subject} has {len(own)} runs; leave-one-run-out needs 3")
        folds = []
        for held in own:
            rest = [s for s in own if s != held]
            chosen = nested_train_subsets(rest, [fraction], seed)[fraction]
            folds.append(([(subject, s) for s in chosen], [(subject, held)]))
        return folds
    if cv == "by_subject":
        if subject == "average":
            raise ValueError("by_subject cross-validation cannot score the average subject")
        pool = [t for t in (subjects or dataset.subjects) if t not in (subject, "average")]
        if len(pool) < 1:
            raise ValueError("by_subject cross-validation needs other subjects to train on")
        chosen = nested_train_subsets(pool, [fraction], seed)[fraction]
        train = [(t, s) for t in chosen for s in _own_stories(dataset, t)]
        if len(train) < 2:
            raise ValueError(f"the subjects {chosen} have fewer than 2 runs to train on")
        return [(train, [(subject, s) for s in own])]
    raise ValueError(f"unknown fitting.cv {cv!r}; use one of {CV_SCHEMES}")


def cv_shortfall(dataset, subject: str, cv: str, subjects=None) -> str | None:
    """Why ``subject`` cannot be fitted under ``cv`` with the stories it has, or None.

    The workflow asks this when it builds the DAG (rules/common.smk), so that a subject with
    too few stories is skipped (or, when listed explicitly, stops the run) before any job
    starts, instead of failing inside its fit jobs. The rules are those of
    :func:`outer_folds`, checked on the full training set (fraction 1).
    """
    if not _own_stories(dataset, subject):
        return f"{subject} has none of the stories {list(dataset.stories)}"
    try:
        outer_folds(dataset, subject, 1.0, cv, 0, subjects)
    except ValueError as exc:
        return str(exc)
    return None


def fit_encoding_model(
    dataset,
    subject: str,
    feature_path,
    layer: int,
    fraction: float,
    *,
    temporal: dict | None = None,
    fitting: dict | None = None,
    cc_max: np.ndarray | None = None,
    min_cc_max: float = 0.1,
    reliable_fraction: float = 0.25,
    seed: int = 0,
    subjects: list[str] | None = None,
    designs: dict | None = None,
    significance: dict | None = None,
):
    """Fit and score one voxelwise encoding model.

    Parameters
    ----------
    dataset : dataset adapter
    subject : str
    feature_path : str or Path
        Per-word features of every story (HDF5 from the extraction rule).
    layer : int
        Hidden-state index to use.
    fraction : float
        Fraction of the training stories (nested subsets drawn with ``seed``).
    temporal, fitting : dict, optional
        Config sections, partial ones allowed (the schema's defaults fill the rest,
        :func:`lmbrain.config.section`); ``fitting["cv"]`` picks the outer cross-validation
        (:func:`outer_folds`, default ``test_stories``).
    cc_max : ndarray, optional
        Per-voxel noise ceiling; without it ``r_norm`` is all NaN.
    min_cc_max : float
        Voxels with a lower ceiling are left out of ``r_norm``.
    reliable_fraction : float
        Share of voxels (top by ``cc_max``) behind ``mean_r_reliable*``
        (:func:`lmbrain.scoring.paper_summaries`).
    seed : int
        Seed of the train-story subsets.
    subjects : list of str, optional
        The study's subjects (training pool of ``fitting.cv: by_subject``).
    designs : dict, optional
        Cache of the stories' design matrices, filled as they are built. Pass the same dict
        to the fits of several train fractions of one (subject, feature file, layer,
        ``temporal``) to build each story's matrix once (the workflow's fit job does); the
        fractions' story sets are nested, so the cache never holds more than the largest
        fraction's fit needs. Never share it across layers, feature files or settings.
    significance : dict, optional
        The config's ``scoring.significance`` (method, n_permutations, block_trs, alpha) for
        the per-voxel p-values of the test r (:func:`lmbrain.significance.voxel_significance`,
        seeded by ``seed`` and the fit's subject, feature file, layer and fraction); default
        no test (``p``, ``q`` NaN).

    Returns
    -------
    voxels : dict of ndarray
        Per-voxel ``r``, ``r2``, ``alpha``, ``cv_score``, ``cc_max``, ``r_norm``, ``p``, ``q``
        (one-sided p-value of r and its Benjamini-Hochberg q over the subject's voxels),
        ``hemisphere``.
        With several outer folds (leave-one-run-out), ``r`` and ``r2`` are the means over
        folds of each held-out run's scores, ``alpha`` the median and ``cv_score`` the mean of
        the folds' values.
    row : dict
        The summary row of :mod:`lmbrain.aggregate`'s score table (without dataset/model keys
        the caller adds).
    """
    temporal, fitting = section("temporal", temporal), section("fitting", fitting)
    cv = fitting["cv"]
    folds = outer_folds(dataset, subject, fraction, cv, seed, subjects)
    designs = {} if designs is None else designs

    def design(story: str, n_trs: int) -> np.ndarray:
        key = f"{story}:{n_trs}"
        if key not in designs:
            designs[key] = story_design(dataset, feature_path, story, layer, n_trs, temporal)
        return designs[key]

    def load(pairs, target: bool):
        xs, ys, groups = [], [], []
        for i, (subj, story) in enumerate(pairs):
            y = dataset.test_target(subj, story) if target else dataset.responses(subj, story)
            xs.append(design(story, y.shape[0]))
            ys.append(prepare_responses(y, dataset.trim_start, dataset.trim_end))
            groups.append(np.full(xs[-1].shape[0], i))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)

    rs, r2s, alphas, cv_scores = [], [], [], []
    held_out = []  # (responses, predictions) of each fold, for the significance test
    n_test_trs = 0
    for train_pairs, test_pairs in folds:
        X, Y, groups = load(train_pairs, target=False)
        Xt, Yt, _ = load(test_pairs, target=True)
        fit = fit_ridge_cv(
            X,
            Y,
            groups,
            alpha_grid(fitting["alphas"], key="fitting.alphas"),
            n_folds=fitting["n_folds"],
            backend=fitting["backend"],
            solver=fitting["solver"],
            n_targets_batch=fitting.get("n_targets_batch"),
            cv_precision=fitting.get("cv_precision", "float64"),
            X_test=Xt,  # predictions batch by batch: the weights are never held whole
        )
        pred = fit.predictions
        rs.append(pearson_r(Yt, pred))
        held_out.append((Yt, pred))
        r2s.append(r2_score(Yt, pred))
        alphas.append(np.asarray(fit.best_alphas, dtype=float))
        cv_scores.append(np.asarray(fit.cv_scores, dtype=float))
        n_test_trs += int(Xt.shape[0])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels stay NaN
        r = np.nanmean(rs, axis=0) if len(rs) > 1 else rs[0]
        r2 = np.nanmean(r2s, axis=0) if len(r2s) > 1 else r2s[0]
        cv_score = np.nanmean(cv_scores, axis=0)
    alpha = np.median(alphas, axis=0)
    train = sorted({story for pairs, _ in folds for _, story in pairs})
    tested = sorted({story for _, pairs in folds for _, story in pairs})
    n_vox = Y.shape[1]
    cc = np.full(n_vox, np.nan) if cc_max is None else np.asarray(cc_max, dtype=float)
    r_norm = normalized_r(r, cc, min_cc_max)
    hemi = dataset.voxels(subject)["hemisphere"]
    key = f"{subject}/{Path(feature_path).name}/{int(layer)}/{float(fraction)}"
    sig_arrays, sig_row = voxel_significance(
        held_out, dict(significance or {"n_permutations": 0}), seed, key
    )
    del held_out

    info = read_feature_info(feature_path)
    n_layers = int(info["n_layers"])
    mean = summarize_scores(r)
    row = {
        "subject": subject,
        "n_params": int(info["n_params"]),
        "n_params_nonembedding": int(info.get("n_params_nonembedding", info["n_params"])),
        "n_layers": n_layers,
        "modality": str(info.get("modality", "text")),
        "layer": int(layer),
        "depth": layer / n_layers,
        "train_fraction": float(fraction),
        "n_train_stories": len(folds[0][0]),
        "n_train_trs": int(X.shape[0]),
        "n_test_trs": n_test_trs,
        "n_test_stories": len(tested),
        "n_features": int(X.shape[1]),
        "n_voxels": int(n_vox),
        "mean_r": mean["mean"],
        "mean_r_left": summarize_scores(r, hemi == "L")["mean"],
        "mean_r_right": summarize_scores(r, hemi == "R")["mean"],
        "mean_r2": summarize_scores(r2)["mean"],
        "mean_r_norm": summarize_scores(r_norm)["mean"],
        "n_voxels_excluded": mean["n_excluded"],
        "n_voxels_ceiling": int(np.isfinite(r_norm).sum()),
        **paper_summaries(r, r_norm, hemi, cc, reliable_fraction),
        "mean_cv_score": summarize_scores(cv_score)["mean"],
        **sig_row,
        "solver": fit.solver,
        "train_stories": ",".join(train),
        "test_stories": ",".join(tested),
    }
    if cv != "test_stories":
        row["cv"] = cv
        row["n_outer_folds"] = len(folds)
        row["n_train_subjects"] = len({subj for pairs, _ in folds for subj, _ in pairs})
    voxels = {
        "r": r.astype(np.float32),
        "r2": r2.astype(np.float32),
        "alpha": alpha.astype(np.float32),
        "cv_score": cv_score.astype(np.float32),
        "cc_max": cc.astype(np.float32),
        "r_norm": r_norm.astype(np.float32),
        **sig_arrays,
        "hemisphere": hemi,
    }
    return voxels, row
