"""Encoding models of trial-based data: image features -> one beta per voxel and trial.

For one (subject, model, layer, train fraction):

1. Betas are z-scored per voxel within each session (NSD practice; ``zscore_sessions`` in
   ``dataset.yaml``), which removes session-wise offsets and scale changes.
2. Training data: the training stimuli the subject saw (a nested subset of them, drawn with
   the seed, for train fractions < 1). By default (``train_on="stimulus"``) each training
   stimulus contributes one row, its betas averaged over repeats; ``train_on="trial"`` uses
   every trial as a row (repeats share their features). Either way the ridge penalty is
   chosen per voxel by cross-validation whose folds are groups of *stimuli*
   (:func:`lmbrain.fitting.fit_ridge_cv` with ``groups`` = stimulus ids), so an image is never
   in both the training and the validation part of a fold.
3. Features are standardised with the training rows' mean and standard deviation, and the
   responses centred and scaled with the training rows' statistics (no intercept is fit).
4. The model predicts the test stimuli (never used in training), and is scored per voxel by
   the Pearson correlation with their betas averaged over repeats.

The noise ceiling follows the Natural Scenes Dataset (Allen et al. 2022): with betas z-scored
per session, the noise variance is the mean over images (with >= 2 repeats) of the variance
across repeats, ``ncsnr = sqrt(max(0, 1 - s2_noise)) / sqrt(s2_noise)``, and the ceiling of a
target averaged over ``n`` repeats is ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1/n)`` (percent of
variance explainable); with a varying number of repeats, ``1/n`` is its mean over the test
images (NSD's ``(A/3 + B/2 + C/1) / (A + B + C)``). ``cc_max = sqrt(NC / 100)`` puts it on the
correlation scale, so ``r_norm = r / cc_max`` as for story datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmbrain.fitting import alpha_grid, fit_ridge_cv, nested_train_subsets, predict
from lmbrain.scoring import normalized_r, paper_summaries, pearson_r, r2_score, summarize_scores

TRAIN_ON = ("stimulus", "trial")


# --------------------------------------------------------------------------- responses


def zscore_by_session(betas: np.ndarray, sessions: Sequence) -> np.ndarray:
    """Z-score each voxel within each session (population std; constant voxels give 0).

    Parameters
    ----------
    betas : ndarray, shape (n_trials, n_voxels)
    sessions : sequence, length n_trials
        Session label of each trial.

    Returns
    -------
    ndarray, shape (n_trials, n_voxels), float32
    """
    betas = np.asarray(betas, dtype=np.float64)
    sessions = np.asarray(sessions)
    out = np.empty_like(betas)
    for sess in np.unique(sessions):
        rows = sessions == sess
        block = betas[rows]
        sd = block.std(axis=0)
        out[rows] = np.where(sd > 0, (block - block.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
    return out.astype(np.float32)


def stimulus_means(
    responses: np.ndarray, stimulus_of_trial: Sequence, stimuli: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Responses averaged over the repeats of each stimulus.

    Parameters
    ----------
    responses : ndarray, shape (n_trials, n_voxels)
    stimulus_of_trial : sequence of str, length n_trials
    stimuli : sequence of str, optional
        Stimuli to return, in this order (default: every stimulus shown, sorted). Each must
        have at least one trial.

    Returns
    -------
    stimuli : list of str
    means : ndarray, shape (n_stimuli, n_voxels), float64
    counts : ndarray, shape (n_stimuli,), int
        Number of trials (repeats) averaged.
    """
    stim = np.asarray(stimulus_of_trial).astype(str)
    names, inverse = np.unique(stim, return_inverse=True)
    sums = np.zeros((len(names), responses.shape[1]))
    np.add.at(sums, inverse, np.asarray(responses, dtype=np.float64))
    counts = np.bincount(inverse, minlength=len(names))
    if stimuli is None:
        return list(names), sums / counts[:, None], counts
    pos = {s: i for i, s in enumerate(names)}
    missing = [s for s in stimuli if s not in pos]
    if missing:
        raise ValueError(f"stimuli {missing[:5]} have no trial")
    idx = np.array([pos[s] for s in stimuli], dtype=np.int64)
    return list(stimuli), sums[idx] / counts[idx, None], counts[idx]


def subject_responses(dataset, subject: str) -> dict[str, np.ndarray]:
    """One subject's preprocessed betas with their trial labels.

    Returns
    -------
    dict
        ``responses`` (n_trials, n_voxels) float32, z-scored per session when
        ``dataset.zscore_sessions``; ``stimulus`` and ``session`` (str arrays, per trial).
        The workflow stores it once per subject (``responses/<subject>.npz``) so that fits
        do not re-read the raw betas.
    """
    trials = dataset.trials(subject)
    y = dataset.betas(subject)
    if dataset.zscore_sessions:
        y = zscore_by_session(y, trials["session"])
    return {
        "responses": np.asarray(y, dtype=np.float32),
        "stimulus": np.asarray(trials["stimulus"]).astype(str),
        "session": np.asarray(trials["session"]).astype(str),
    }


def load_subject_responses(path) -> dict[str, np.ndarray]:
    """Read what :func:`subject_responses` returned, as saved with ``lmbrain.io.save_npz``."""
    with np.load(path) as data:
        return {key: data[key] for key in ("responses", "stimulus", "session")}


def ncsnr(responses: np.ndarray, stimulus_of_trial: Sequence) -> np.ndarray:
    """Noise-ceiling signal-to-noise ratio per voxel (NSD, Allen et al. 2022).

    Parameters
    ----------
    responses : ndarray, shape (n_trials, n_voxels)
        Betas z-scored per session (:func:`zscore_by_session`), so a voxel's total variance
        is about 1.
    stimulus_of_trial : sequence of str

    Returns
    -------
    ndarray, shape (n_voxels,), float64
        ``sqrt(max(0, 1 - s2)) / sqrt(s2)`` where ``s2`` is the mean over stimuli with at
        least two repeats of the unbiased variance across repeats; NaN without such stimuli.
    """
    responses = np.asarray(responses, dtype=np.float64)
    stim = np.asarray(stimulus_of_trial).astype(str)
    names, inverse = np.unique(stim, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names))
    repeated = counts >= 2
    if not repeated.any():
        return np.full(responses.shape[1], np.nan)
    sums = np.zeros((len(names), responses.shape[1]))
    np.add.at(sums, inverse, responses)
    means = sums / counts[:, None]
    sq = np.zeros_like(sums)
    np.add.at(sq, inverse, (responses - means[inverse]) ** 2)
    var = sq[repeated] / (counts[repeated, None] - 1)
    s2 = var.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.maximum(0.0, 1.0 - s2)) / np.sqrt(s2)


def noise_ceiling(snr: np.ndarray, n_repeats: Sequence[int] | int) -> np.ndarray:
    """NSD noise ceiling (percent of variance) of a target averaged over repeats.

    Parameters
    ----------
    snr : ndarray, shape (n_voxels,)
        :func:`ncsnr`.
    n_repeats : int or sequence of int
        Repeats averaged per test image; a sequence uses the mean of ``1/n`` over images.

    Returns
    -------
    ndarray, shape (n_voxels,)
        ``100 * snr^2 / (snr^2 + mean(1/n))``.
    """
    inv_n = float(np.mean(1.0 / np.asarray(n_repeats, dtype=np.float64)))
    snr2 = np.asarray(snr, dtype=np.float64) ** 2
    return 100.0 * snr2 / (snr2 + inv_n)


def subject_ceiling(dataset, subject: str, responses: dict | None = None) -> dict[str, np.ndarray]:
    """``ncsnr``, ``nc`` (percent) and ``cc_max`` of one subject's voxels for its test images.

    The ncsnr uses every stimulus the subject saw at least twice; the ceiling assumes the
    test target of :func:`fit_trial_encoding_model` (each test image averaged over its
    repeats). ``responses``: :func:`subject_responses` of the subject, read when absent.
    """
    data = subject_responses(dataset, subject) if responses is None else responses
    y, stim = data["responses"], data["stimulus"]
    snr = ncsnr(y, stim)
    counts = stimulus_means(y[:, :1], stim, dataset.test_stimuli)[2]
    nc = noise_ceiling(snr, counts)
    return {"ncsnr": snr, "nc": nc, "cc_max": np.sqrt(nc / 100.0)}


# --------------------------------------------------------------------------- fit


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return [((a - mu) / sd).astype(np.float32) for a in (train, *others)]


def fit_trial_model(
    features: np.ndarray,
    feature_stimuli: Sequence[str],
    responses: np.ndarray,
    stimulus_of_trial: Sequence,
    train_stimuli: Sequence[str],
    test_stimuli: Sequence[str],
    *,
    fitting: dict,
    train_on: str = "stimulus",
) -> dict:
    """Fit a ridge encoding model on training stimuli and score it on test stimuli.

    Parameters
    ----------
    features : ndarray, shape (n_feature_stimuli, n_features)
    feature_stimuli : sequence of str
        Stimulus id of each feature row.
    responses : ndarray, shape (n_trials, n_voxels)
        Preprocessed (e.g. session-z-scored) betas.
    stimulus_of_trial : sequence of str, length n_trials
    train_stimuli, test_stimuli : sequence of str
        Disjoint; each must have at least one trial and a feature row.
    fitting : dict
        The config's ``fitting`` section (alphas, n_folds, backend, solver, n_targets_batch).
    train_on : {"stimulus", "trial"}
        Rows of the training set (see the module docstring).

    Returns
    -------
    dict
        ``r``, ``r2`` (per voxel, on the test stimuli averaged over repeats), ``fit``
        (:class:`lmbrain.fitting.RidgeFit`), ``n_train_rows``, ``n_train_trials``,
        ``n_test_trials``, ``n_features``.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
    overlap = set(train_stimuli) & set(test_stimuli)
    if overlap:
        raise ValueError(f"stimuli {sorted(overlap)[:5]} are in both train and test sets")
    row_of = {s: i for i, s in enumerate(feature_stimuli)}
    stim = np.asarray(stimulus_of_trial).astype(str)
    responses = np.asarray(responses, dtype=np.float64)
    _, y_test, test_counts = stimulus_means(responses, stim, test_stimuli)
    if train_on == "stimulus":
        groups, y_train, train_counts = stimulus_means(responses, stim, train_stimuli)
        n_train_trials = int(train_counts.sum())
    else:
        keep = np.isin(stim, list(train_stimuli))
        groups, y_train = list(stim[keep]), responses[keep]
        n_train_trials = int(keep.sum())
    x_train = features[[row_of[s] for s in groups]]
    x_test = features[[row_of[s] for s in test_stimuli]]
    x_train, x_test = _standardize(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    y_train, y_test = _standardize(y_train, y_test)
    fit = fit_ridge_cv(
        x_train,
        y_train,
        groups,
        alpha_grid(fitting["alphas"], key="fitting.alphas"),
        n_folds=fitting["n_folds"],
        backend=fitting["backend"],
        solver=fitting["solver"],
        n_targets_batch=fitting.get("n_targets_batch"),
        cv_precision=fitting.get("cv_precision", "float64"),
    )
    pred = predict(fit, x_test)
    return {
        "r": pearson_r(y_test, pred),
        "r2": r2_score(y_test, pred),
        "fit": fit,
        "n_train_rows": int(x_train.shape[0]),
        "n_train_trials": n_train_trials,
        "n_test_trials": int(test_counts.sum()),
        "n_features": int(x_train.shape[1]),
    }


def fit_trial_encoding_model(
    dataset,
    subject: str,
    features: np.ndarray,
    feature_stimuli: Sequence[str],
    fraction: float,
    *,
    fitting: dict,
    train_on: str = "stimulus",
    cc_max: np.ndarray | None = None,
    min_cc_max: float = 0.1,
    reliable_fraction: float = 0.25,
    seed: int = 0,
    responses: dict | None = None,
) -> tuple[dict, dict]:
    """One (subject, features, train fraction) fit of a trial dataset, with its score row.

    Parameters
    ----------
    dataset : :class:`lmbrain.datasets.trials.TrialDataset`
    subject : str
    features : ndarray, shape (n_stimuli, n_features)
    feature_stimuli : sequence of str
    fraction : float
        Fraction of the subject's training stimuli (nested subsets drawn with ``seed``).
    fitting : dict
        Config section.
    train_on : {"stimulus", "trial"}
    cc_max : ndarray, optional
        Per-voxel ceiling on the correlation scale (:func:`subject_ceiling`).
    min_cc_max : float
    reliable_fraction : float
        Share of voxels (top by ``cc_max``) behind ``mean_r_reliable*``
        (:func:`lmbrain.scoring.paper_summaries`).
    seed : int
    responses : dict, optional
        :func:`subject_responses` of the subject (read from the dataset when absent).

    Returns
    -------
    voxels : dict of ndarray
        ``r``, ``r2``, ``alpha``, ``cv_score``, ``cc_max``, ``r_norm``, ``hemisphere``, ``roi``.
    row : dict
        The columns of the story fits' score row (see README, "Trial-based datasets"):
        ``n_train_stories`` = training stimuli, ``n_train_trs`` = training trials (betas,
        repeats included), ``n_test_trs`` = test trials; plus ``n_train_stimuli``,
        ``n_test_stimuli`` and ``train_on``. Layer keys are added by the caller.
    """
    data = subject_responses(dataset, subject) if responses is None else responses
    y, stim = data["responses"], data["stimulus"]
    shown = set(stim)
    train_all = [s for s in dataset.train_stimuli if s in shown]
    train = nested_train_subsets(train_all, [fraction], seed)[fraction]
    res = fit_trial_model(
        features,
        feature_stimuli,
        y,
        stim,
        train,
        dataset.test_stimuli,
        fitting=fitting,
        train_on=train_on,
    )
    r, r2, fit = res["r"], res["r2"], res["fit"]
    n_vox = y.shape[1]
    cc = np.full(n_vox, np.nan) if cc_max is None else np.asarray(cc_max, dtype=float)
    r_norm = normalized_r(r, cc, min_cc_max)
    vox = dataset.voxels(subject)
    hemi = vox["hemisphere"]
    mean = summarize_scores(r)
    row = {
        "subject": subject,
        "train_fraction": float(fraction),
        "n_train_stories": len(train),
        "n_train_trs": res["n_train_trials"],
        "n_test_trs": res["n_test_trials"],
        "n_train_stimuli": len(train),
        "n_test_stimuli": len(dataset.test_stimuli),
        "train_on": train_on,
        "n_features": res["n_features"],
        "n_voxels": int(n_vox),
        "mean_r": mean["mean"],
        "mean_r_left": summarize_scores(r, hemi == "L")["mean"],
        "mean_r_right": summarize_scores(r, hemi == "R")["mean"],
        "mean_r2": summarize_scores(r2)["mean"],
        "mean_r_norm": summarize_scores(r_norm)["mean"],
        "n_voxels_excluded": mean["n_excluded"],
        "n_voxels_ceiling": int(np.isfinite(r_norm).sum()),
        **paper_summaries(r, r_norm, hemi, cc, reliable_fraction),
        "mean_cv_score": summarize_scores(fit.cv_scores)["mean"],
        "solver": fit.solver,
    }
    voxels = {
        "r": r.astype(np.float32),
        "r2": r2.astype(np.float32),
        "alpha": np.asarray(fit.best_alphas, dtype=np.float32),
        "cv_score": np.asarray(fit.cv_scores, dtype=np.float32),
        "cc_max": cc.astype(np.float32),
        "r_norm": r_norm.astype(np.float32),
        "hemisphere": hemi,
        "roi": vox["roi"],
    }
    return voxels, row


def fit_from_feature_file(
    dataset, subject: str, feature_path, layer: int, fraction: float, **kwargs
) -> tuple[dict, dict]:
    """:func:`fit_trial_encoding_model` on one layer of a stimulus feature file.

    Adds the model facts of the file (``n_params``, ``n_params_nonembedding``, ``n_layers``)
    and ``layer`` / ``depth = layer / n_layers`` to the row. Keyword arguments are passed on.
    """
    from lmbrain.features import read_feature_info
    from lmbrain.sentence_features import read_stimulus_features

    ids, feats = read_stimulus_features(feature_path, layer)
    voxels, row = fit_trial_encoding_model(dataset, subject, feats, ids, fraction, **kwargs)
    info = read_feature_info(feature_path)
    n_layers = int(info["n_layers"])
    row.update(
        {
            "n_params": int(info["n_params"]),
            "n_params_nonembedding": int(info.get("n_params_nonembedding", info["n_params"])),
            "n_layers": n_layers,
            "layer": int(layer),
            "depth": layer / n_layers,
        }
    )
    return voxels, row
