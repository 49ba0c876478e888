"""Stacked regression: per-voxel convex combination of encoding models of several feature spaces.

Banded ridge (:mod:`lmbrain.banded`) fits one linear model on all feature spaces at once.
Stacking (Breiman 1996, "Stacked regressions"; for fMRI encoding models Lin, Naselaris, Kay &
Wehbe, "Stacked regressions and structured variance partitioning for interpretable brain
maps", NeuroImage 2024, Methods, the stacked-regression part) keeps one ridge model per
feature space and learns, for every voxel, how much to trust each of them:

1. for each feature space ``i``, a ridge model (:func:`lmbrain.fitting.fit_ridge_cv`, the
   same temporal model, alpha grid and story-grouped folds as every single-space fit)
   predicts each training fold from the other folds, giving **out-of-fold** predictions
   ``p_i`` of every training row (the penalty of each fold's model is chosen by an inner
   story-grouped CV on that fold's training stories, so the held-out fold never informs it);
2. per voxel, the stacking weights ``w`` minimise the cross-validated squared error of the
   combination, ``|y - sum_i w_i p_i|^2``, over the simplex ``w_i >= 0, sum_i w_i = 1``.
   Because the weights sum to one, the residual is ``sum_i w_i e_i`` with ``e_i = y - p_i``
   and the objective is the quadratic form ``w^T P w``, ``P_ij = mean(e_i e_j)`` -- the
   "error matrix" of Lin et al. (their ``stacking_fmri`` in github.com/brainML/Stacking,
   stacking.py, solves this QP per voxel with cvxopt);
3. each space's model is refitted on all training stories, and the test stories are
   predicted by ``sum_i w_i p_i^test``.

The weights are readable as the importance of each feature space for a voxel, and since a
single space is a corner of the simplex, the stacked model's cross-validated error is never
worse than the best single space's (on the test stories it usually holds too, not always).

Antonello, Vaidya & Huth (2023, "Scaling laws for language encoding models in fMRI",
NeurIPS; Results, the analysis that combines the best semantic model with the best Whisper
acoustic model "using stacked regression" after Lin et al.) use this to join a text (OPT /
LLaMA) and an audio (Whisper) encoding model; the gain of the joint model over the semantic
one was confined to auditory and mouth-motor cortex.

The QP is solved exactly (:func:`simplex_weights`): the minimiser lies in the relative
interior of one face of the simplex, where it is the equality-constrained minimiser
``w_S = P_SS^-1 1 / (1^T P_SS^-1 1)`` of that face's support ``S``. Every support (``2^k - 1``
of them for ``k`` spaces; 3 for two spaces, 7 for three) is solved for all voxels at once
with batched linear algebra, and each voxel keeps the feasible (``w_S >= 0``) candidate of
least error. This is exact, vectorised over voxels, and needs no QP solver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from lmbrain.fitting import fit_ridge_cv, predict, story_folds
from lmbrain.scoring import hemisphere_selections

#: Largest number of feature spaces: the exact solver enumerates 2^k - 1 supports.
MAX_SPACES = 8
#: Relative jitter added to the diagonal of each error matrix so a singular one (two spaces
#: with identical predictions) still has a unique minimiser.
_JITTER = 1e-10
#: Tolerance on a candidate weight's sign before it is declared infeasible.
_FEASIBLE_TOL = 1e-9


def _check_error_matrices(P) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 2:
        P = P[None]
    if P.ndim != 3 or P.shape[1] != P.shape[2]:
        raise ValueError(f"error matrices must have shape (n_voxels, k, k), got {P.shape}")
    if not 1 <= P.shape[1] <= MAX_SPACES:
        raise ValueError(f"stacking takes 1 to {MAX_SPACES} feature spaces, got {P.shape[1]}")
    return P


def simplex_weights(P: np.ndarray) -> np.ndarray:
    """Per voxel, the ``w`` on the simplex that minimises ``w^T P w`` (exact).

    Parameters
    ----------
    P : numpy.ndarray of shape (n_voxels, k, k)
        Symmetric positive semi-definite error matrices (:func:`error_matrices`); a single
        ``(k, k)`` matrix is one voxel.

    Returns
    -------
    numpy.ndarray of shape (k, n_voxels), float64
        Non-negative weights summing to 1 per voxel; NaN for a voxel whose matrix is not
        finite.

    Notes
    -----
    Every support ``S`` (non-empty subset of the spaces) gives the candidate
    ``x = P_SS^-1 1``, ``w_S = x / sum(x)`` (zero outside ``S``), the minimiser on the affine
    hull of that face; a voxel keeps the candidate with ``w_S >= 0`` and the least
    ``w^T P w``. The optimum is one of them (it is the minimiser on the face whose relative
    interior contains it), and singletons are always feasible, so every finite voxel gets a
    solution. A tiny multiple of the mean diagonal is added to ``P_SS`` before solving so
    that singular matrices have a unique minimiser; the objective is evaluated on ``P``.
    """
    P = _check_error_matrices(P)
    n_vox, k, _ = P.shape
    finite = np.isfinite(P).all(axis=(1, 2))
    P = np.where(finite[:, None, None], P, 0.0)
    P = 0.5 * (P + np.swapaxes(P, 1, 2))
    scale = np.trace(P, axis1=1, axis2=2) / k
    jitter = _JITTER * np.where(scale > 0, scale, 1.0)
    best_w = np.zeros((n_vox, k))
    best_obj = np.full(n_vox, np.inf)
    for size in range(1, k + 1):
        for support in combinations(range(k), size):
            idx = np.asarray(support)
            sub = P[:, idx[:, None], idx[None, :]] + jitter[:, None, None] * np.eye(size)
            x = np.linalg.solve(sub, np.ones((n_vox, size, 1)))[..., 0]
            total = x.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                w_s = x / total[:, None]
            ok = (total > 0) & (w_s >= -_FEASIBLE_TOL).all(axis=1) & np.isfinite(w_s).all(1)
            w = np.zeros((n_vox, k))
            w[:, idx] = np.clip(np.where(ok[:, None], w_s, 0.0), 0.0, None)
            w /= np.where(w.sum(axis=1, keepdims=True) > 0, w.sum(axis=1, keepdims=True), 1.0)
            obj = np.einsum("vi,vij,vj->v", w, P, w)
            better = ok & (obj < best_obj)  # ties keep the smaller support
            best_w[better] = w[better]
            best_obj[better] = obj[better]
    best_w[~finite] = np.nan
    return best_w.T


def error_matrices(y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Cross-products of the residuals of each space, ``P[v, i, j] = mean_t e_i e_j``.

    Parameters
    ----------
    y : numpy.ndarray of shape (n_samples, n_voxels)
    preds : numpy.ndarray of shape (k, n_samples, n_voxels)
        (Out-of-fold) predictions of each feature space's model.

    Returns
    -------
    numpy.ndarray of shape (n_voxels, k, k), float64
    """
    y = np.asarray(y, dtype=np.float64)
    preds = np.asarray(preds, dtype=np.float64)
    if y.ndim == 1:
        y, preds = y[:, None], preds[:, :, None]
    if preds.shape[1:] != y.shape:
        raise ValueError(f"predictions {preds.shape[1:]} do not match responses {y.shape}")
    err = y[None] - preds
    return np.einsum("itv,jtv->vij", err, err) / y.shape[0]


def stack_predictions(weights: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """The stacked prediction ``sum_i w_i p_i`` per voxel.

    Parameters
    ----------
    weights : numpy.ndarray of shape (k, n_voxels)
    preds : numpy.ndarray of shape (k, n_samples, n_voxels)

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_voxels)
    """
    return np.einsum("iv,itv->tv", np.asarray(weights), np.asarray(preds))


def _outer_folds(groups: np.ndarray, n_folds: int):
    """Story-grouped folds, each of whose training parts holds >= 2 stories (inner CV)."""
    folds = story_folds(groups, n_folds)
    if any(len(np.unique(groups[train])) < 2 for train, _ in folds):
        raise ValueError(
            "stacking needs every outer fold to leave >= 2 training stories for the inner "
            f"cross-validation; {len(np.unique(groups))} stories in {len(folds)} folds do not "
            "(use more training stories)"
        )
    return folds


def _fold_prediction(X, Y, groups, train, val, alphas, common) -> np.ndarray:
    """Prediction of the rows ``val`` by a ridge model fitted (with inner CV) on ``train``."""
    fit = fit_ridge_cv(X[train], Y[train], groups[train], alphas, **common)
    return predict(fit, X[val])


def out_of_fold_predictions(
    X: np.ndarray,
    Y: np.ndarray,
    groups: Sequence,
    alphas: Sequence[float],
    *,
    n_folds: int = 5,
    backend: str = "auto",
    solver: str = "auto",
) -> np.ndarray:
    """Predictions of every training row by a ridge model that never saw its story.

    The rows are split into story-grouped folds (:func:`lmbrain.fitting.story_folds`); each
    fold is predicted by :func:`lmbrain.fitting.fit_ridge_cv` fitted on the other folds,
    whose per-voxel alpha comes from an inner story-grouped CV on those folds only.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
    Y : numpy.ndarray of shape (n_samples, n_voxels)
    groups : sequence of length n_samples
        Story id of each row.
    alphas : sequence of float
    n_folds : int
        Outer folds, and inner folds of each fold's fit.
    backend, solver : str
        See :func:`lmbrain.fitting.fit_ridge_cv`.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_voxels), float32
    """
    groups = np.asarray(groups)
    Y = np.asarray(Y, dtype=np.float32)
    common = dict(n_folds=n_folds, backend=backend, solver=solver)
    out = np.empty(Y.shape, dtype=np.float32)
    for train, val in _outer_folds(groups, n_folds):
        out[val] = _fold_prediction(X, Y, groups, train, val, alphas, common)
    return out


def cv_error_matrices(
    Xs: Sequence[np.ndarray],
    Y: np.ndarray,
    groups: Sequence,
    alphas: Sequence[float],
    *,
    n_folds: int = 5,
    backend: str = "auto",
    solver: str = "auto",
) -> np.ndarray:
    """:func:`error_matrices` of the out-of-fold predictions, accumulated fold by fold.

    Equal to ``error_matrices(Y, [out_of_fold_predictions(X, ...) for X in Xs])``, but only
    one fold's predictions of every space are held at a time (``k * n_val * n_voxels``
    float32 values instead of ``k * n_samples * n_voxels``).

    Returns
    -------
    numpy.ndarray of shape (n_voxels, k, k), float64
    """
    groups = np.asarray(groups)
    Y = np.asarray(Y, dtype=np.float32)
    common = dict(n_folds=n_folds, backend=backend, solver=solver)
    k = len(Xs)
    P = np.zeros((Y.shape[1], k, k))
    for train, val in _outer_folds(groups, n_folds):
        err = [Y[val] - _fold_prediction(X, Y, groups, train, val, alphas, common) for X in Xs]
        for i in range(k):
            for j in range(i + 1):
                P[:, i, j] += np.einsum("tv,tv->v", err[i], err[j], dtype=np.float64)
                P[:, j, i] = P[:, i, j]
    return P / Y.shape[0]


@dataclass
class StackedFit:
    """Result of :func:`fit_stacked_ridge_cv`.

    Attributes
    ----------
    weights : numpy.ndarray of shape (k, n_voxels)
        Stacking weights (non-negative, summing to 1 per voxel).
    fits : list of lmbrain.fitting.RidgeFit
        Each space's ridge model refitted on all training rows.
    cv_mse : numpy.ndarray of shape (k + 1, n_voxels)
        Cross-validated mean squared error of each space alone (rows ``0..k-1``) and of the
        stacked combination (last row), from the out-of-fold predictions.
    space_names : list of str
    """

    weights: np.ndarray
    fits: list
    cv_mse: np.ndarray
    space_names: list

    def predict_split(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        """Each space's prediction ``(k, n_samples, n_voxels)`` (unweighted)."""
        if len(Xs) != len(self.fits):
            raise ValueError(f"expected {len(self.fits)} feature spaces, got {len(Xs)}")
        return np.stack([predict(fit, X) for fit, X in zip(self.fits, Xs, strict=True)])

    def predict(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        """The stacked prediction ``sum_i w_i X_i b_i`` ``(n_samples, n_voxels)``."""
        return stack_predictions(self.weights, self.predict_split(Xs))


def fit_stacked_ridge_cv(
    Xs: Sequence[np.ndarray],
    Y: np.ndarray,
    groups: Sequence,
    alphas: Sequence[float],
    *,
    space_names: Sequence[str] | None = None,
    n_folds: int = 5,
    backend: str = "auto",
    solver: str = "auto",
) -> StackedFit:
    """Fit a stacked regression of one ridge model per feature space.

    Parameters
    ----------
    Xs : sequence of numpy.ndarray, each (n_samples, n_features_i)
        One design matrix per feature space (already delayed and z-scored).
    Y : numpy.ndarray of shape (n_samples, n_voxels)
    groups : sequence of length n_samples
        Story id of each row.
    alphas : sequence of float
        Ridge penalty grid (each space and fold chooses its per-voxel alpha from it).
    space_names : sequence of str, optional
        Default ``space0``, ``space1``, ...
    n_folds : int
        Story-grouped folds of the out-of-fold predictions (and of every inner CV).
    backend, solver : str
        See :func:`lmbrain.fitting.fit_ridge_cv`.

    Returns
    -------
    StackedFit
    """
    if len(Xs) < 2:
        raise ValueError("stacking needs at least two feature spaces")
    if len(Xs) > MAX_SPACES:
        raise ValueError(f"stacking takes at most {MAX_SPACES} feature spaces, got {len(Xs)}")
    Xs = [np.asarray(X, dtype=np.float32) for X in Xs]
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim == 1:
        Y = Y[:, None]
    if any(X.shape[0] != Y.shape[0] for X in Xs):
        raise ValueError("every feature space needs one row per response row")
    names = list(space_names) if space_names is not None else [f"space{i}" for i in range(len(Xs))]
    if len(names) != len(Xs):
        raise ValueError("space_names must name every feature space")
    common = dict(n_folds=n_folds, backend=backend, solver=solver)
    P = cv_error_matrices(Xs, Y, groups, alphas, **common)
    weights = simplex_weights(P)
    single = np.diagonal(P, axis1=1, axis2=2).T
    stacked = np.einsum("iv,vij,jv->v", weights, P, weights)
    fits = [fit_ridge_cv(X, Y, groups, alphas, **common) for X in Xs]
    return StackedFit(
        weights=weights,
        fits=fits,
        cv_mse=np.vstack([single, stacked[None]]),
        space_names=names,
    )


# --------------------------------------------------------------------------- encoding
def fit_stacked_encoding_model(
    dataset,
    subject: str,
    spaces: Sequence[tuple[str, str, int]],
    *,
    temporal: dict,
    fitting: dict,
):
    """Fit a stacked encoding model on every training story and score it on the test stories.

    Parameters
    ----------
    dataset : dataset adapter
    subject : str
    spaces : sequence of (name, feature_path, layer)
        One feature space each: features of a model (HDF5 of the extraction rule) at one
        layer, built with the same temporal model as the single-space fits.
    temporal, fitting : dict
        Config sections (the same temporal model, alpha grid, folds and backend as every
        single-space fit).

    Returns
    -------
    voxels : dict of numpy.ndarray
        ``weights`` (k, n_voxels), ``r_stacked`` and ``r2`` (test Pearson r and R^2 of the
        stacked prediction), ``r_<space>`` and ``r2_<space>`` (each space alone, refitted on
        all training stories), ``spaces`` (the names, in the order of ``weights``) and
        ``hemisphere``, and the scalars ``n_train_stories``, ``n_test_stories``.
    row : dict
        ``subject``, ``spaces``, ``n_train_trs``, ``n_voxels``, ``n_train_stories``,
        ``n_test_stories``.
    """
    from lmbrain.banded import _band_designs
    from lmbrain.fitting import alpha_grid
    from lmbrain.scoring import pearson_r, r2_score

    names = [name for name, _, _ in spaces]
    if len(set(names)) != len(names):
        raise ValueError(f"feature space names must be distinct, got {names}")
    if "stacked" in names:
        raise ValueError("'stacked' is reserved for the joint model; rename that space")
    X, Y, groups = _band_designs(dataset, subject, dataset.train_stories, spaces, temporal, False)
    Xt, Yt, _ = _band_designs(dataset, subject, dataset.test_stories, spaces, temporal, True)
    fit = fit_stacked_ridge_cv(
        X,
        Y,
        groups,
        alpha_grid(fitting["alphas"], key="fitting.alphas"),
        space_names=names,
        n_folds=fitting["n_folds"],
        backend=fitting["backend"],
        solver=fitting["solver"],
    )
    split = fit.predict_split(Xt)
    joint = stack_predictions(fit.weights, split)
    voxels = {
        "weights": fit.weights.astype(np.float32),
        "r_stacked": np.asarray(pearson_r(Yt, joint), dtype=np.float32),
        "r2": np.asarray(r2_score(Yt, joint), dtype=np.float32),
        "spaces": np.asarray(names, dtype=str),
        "hemisphere": np.asarray(dataset.voxels(subject)["hemisphere"]),
        "n_train_stories": np.int64(len(dataset.train_stories)),
        "n_test_stories": np.int64(len(dataset.test_stories)),
    }
    for name, pred in zip(names, split, strict=True):
        voxels[f"r_{name}"] = np.asarray(pearson_r(Yt, pred), dtype=np.float32)
        voxels[f"r2_{name}"] = np.asarray(r2_score(Yt, pred), dtype=np.float32)
    row = {
        "subject": subject,
        "spaces": names,
        "n_train_trs": int(Y.shape[0]),
        "n_voxels": int(Y.shape[1]),
        "n_train_stories": len(dataset.train_stories),
        "n_test_stories": len(dataset.test_stories),
    }
    return voxels, row


# --------------------------------------------------------------------------- summary
SUMMARY_COLUMNS = (
    "subject",
    "name",
    "space",
    "hemisphere",
    "n_subjects",
    "n_voxels",
    "n_train_stories",
    "n_test_stories",
    "mean_r_stacked",
    "mean_r2_stacked",
    "mean_r_space",
    "mean_weight",
    "frac_voxels_stacked_better",
)


def _finite_mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def stacking_summary(voxel_tables):
    """One row per (subject, stacked model, space, hemisphere), and the mean over subjects.

    Parameters
    ----------
    voxel_tables : mapping
        ``(subject, name) -> voxels`` as returned by :func:`fit_stacked_encoding_model`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`. ``hemisphere`` is ``all`` (both), ``L`` or ``R``;
        ``mean_r_stacked`` / ``mean_r2_stacked`` are the joint model's mean test r and R^2
        (the same on every space's row), ``mean_r_space`` the space alone, ``mean_weight``
        its mean stacking weight and ``frac_voxels_stacked_better`` the fraction of voxels
        where the joint r exceeds the space's. Rows with ``subject`` = ``mean`` average the
        per-subject means over subjects (``n_subjects`` of them; ``n_voxels`` is the sum).
        NaN voxels are left out of the means.
    """
    import pandas as pd

    rows = []
    for (subject, name), vox in sorted(voxel_tables.items()):
        spaces = [str(s) for s in np.asarray(vox["spaces"])]
        weights = np.asarray(vox["weights"], dtype=np.float64)
        joint = np.asarray(vox["r_stacked"], dtype=np.float64)
        for label, sel in hemisphere_selections(vox["hemisphere"]):
            for k, space in enumerate(spaces):
                alone = np.asarray(vox[f"r_{space}"], dtype=np.float64)
                rows.append(
                    {
                        "subject": subject,
                        "name": name,
                        "space": space,
                        "hemisphere": label,
                        "n_subjects": 1,
                        "n_voxels": int(sel.sum()),
                        "n_train_stories": int(vox["n_train_stories"]),
                        "n_test_stories": int(vox["n_test_stories"]),
                        "mean_r_stacked": _finite_mean(joint[sel]),
                        "mean_r2_stacked": _finite_mean(np.asarray(vox["r2"])[sel]),
                        "mean_r_space": _finite_mean(alone[sel]),
                        "mean_weight": _finite_mean(weights[k, sel]),
                        "frac_voxels_stacked_better": float(np.mean(joint[sel] > alone[sel])),
                    }
                )
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if table.empty:
        return table
    means = []
    for (name, space, label), group in table.groupby(["name", "space", "hemisphere"], sort=False):
        row = group.mean(numeric_only=True).to_dict()
        row.update(
            subject="mean",
            name=name,
            space=space,
            hemisphere=label,
            n_subjects=int(group["subject"].nunique()),
            n_voxels=int(group["n_voxels"].sum()),
            n_train_stories=int(group["n_train_stories"].max()),
            n_test_stories=int(group["n_test_stories"].max()),
        )
        means.append(row)
    table = pd.concat([table, pd.DataFrame(means, columns=list(SUMMARY_COLUMNS))])
    ints = ("n_subjects", "n_voxels", "n_train_stories", "n_test_stories")
    return table.astype(dict.fromkeys(ints, "int64")).reset_index(drop=True)
