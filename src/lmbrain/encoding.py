"""One encoding model, end to end: design matrices, ridge fit, held-out scores.

This composes the steps of :mod:`lmbrain.temporal`, :mod:`lmbrain.fitting`,
:mod:`lmbrain.scoring` and :mod:`lmbrain.ceilings` for one (subject, model, layer, train
fraction). The workflow's fit rule calls :func:`fit_encoding_model`; so can a notebook.
"""

from __future__ import annotations

import numpy as np

from lmbrain.features import read_feature_info, read_feature_times, read_features
from lmbrain.fitting import alpha_grid, fit_ridge_cv, nested_train_subsets, predict
from lmbrain.scoring import normalized_r, pearson_r, r2_score, summarize_scores
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
        times = words.times
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
    )


def fit_encoding_model(
    dataset,
    subject: str,
    feature_path,
    layer: int,
    fraction: float,
    *,
    temporal: dict,
    fitting: dict,
    cc_max: np.ndarray | None = None,
    min_cc_max: float = 0.1,
    seed: int = 0,
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
    temporal, fitting : dict
        Config sections.
    cc_max : ndarray, optional
        Per-voxel noise ceiling; without it ``r_norm`` is all NaN.
    min_cc_max : float
        Voxels with a lower ceiling are left out of ``r_norm``.
    seed : int
        Seed of the train-story subsets.

    Returns
    -------
    voxels : dict of ndarray
        Per-voxel ``r``, ``r2``, ``alpha``, ``cv_score``, ``cc_max``, ``r_norm``, ``hemisphere``.
    row : dict
        The summary row of :mod:`lmbrain.aggregate`'s score table (without dataset/model keys
        the caller adds).
    """
    train = nested_train_subsets(dataset.train_stories, [fraction], seed)[fraction]
    xs, ys, groups = [], [], []
    for i, story in enumerate(train):
        y = dataset.responses(subject, story)
        xs.append(story_design(dataset, feature_path, story, layer, y.shape[0], temporal))
        ys.append(prepare_responses(y, dataset.trim_start, dataset.trim_end))
        groups.append(np.full(xs[-1].shape[0], i))
    x_test, y_test = [], []
    for story in dataset.test_stories:
        y = dataset.test_target(subject, story)
        x_test.append(story_design(dataset, feature_path, story, layer, y.shape[0], temporal))
        y_test.append(prepare_responses(y, dataset.trim_start, dataset.trim_end))
    X, Y = np.concatenate(xs), np.concatenate(ys)
    Xt, Yt = np.concatenate(x_test), np.concatenate(y_test)

    fit = fit_ridge_cv(
        X,
        Y,
        np.concatenate(groups),
        alpha_grid(fitting["alphas"], key="fitting.alphas"),
        n_folds=fitting["n_folds"],
        backend=fitting["backend"],
        solver=fitting["solver"],
        n_targets_batch=fitting.get("n_targets_batch"),
    )
    pred = predict(fit, Xt)
    r = pearson_r(Yt, pred)
    r2 = r2_score(Yt, pred)
    n_vox = Y.shape[1]
    cc = np.full(n_vox, np.nan) if cc_max is None else np.asarray(cc_max, dtype=float)
    r_norm = normalized_r(r, cc, min_cc_max)
    hemi = dataset.voxels(subject)["hemisphere"]

    info = read_feature_info(feature_path)
    n_layers = int(info["n_layers"])
    mean = summarize_scores(r)
    row = {
        "subject": subject,
        "n_params": int(info["n_params"]),
        "n_params_nonembedding": int(info.get("n_params_nonembedding", info["n_params"])),
        "n_layers": n_layers,
        "layer": int(layer),
        "depth": layer / n_layers,
        "train_fraction": float(fraction),
        "n_train_stories": len(train),
        "n_train_trs": int(X.shape[0]),
        "n_test_trs": int(Xt.shape[0]),
        "n_features": int(X.shape[1]),
        "n_voxels": int(n_vox),
        "mean_r": mean["mean"],
        "mean_r_left": summarize_scores(r, hemi == "L")["mean"],
        "mean_r_right": summarize_scores(r, hemi == "R")["mean"],
        "mean_r2": summarize_scores(r2)["mean"],
        "mean_r_norm": summarize_scores(r_norm)["mean"],
        "n_voxels_excluded": mean["n_excluded"],
        "n_voxels_ceiling": int(np.isfinite(r_norm).sum()),
        "mean_cv_score": summarize_scores(fit.cv_scores)["mean"],
        "solver": fit.solver,
        "train_stories": ",".join(train),
    }
    voxels = {
        "r": r.astype(np.float32),
        "r2": r2.astype(np.float32),
        "alpha": np.asarray(fit.best_alphas, dtype=np.float32),
        "cv_score": np.asarray(fit.cv_scores, dtype=np.float32),
        "cc_max": cc.astype(np.float32),
        "r_norm": r_norm.astype(np.float32),
        "hemisphere": hemi,
    }
    return voxels, row
