"""Voxelwise ridge regression with story-grouped cross-validation (himalaya).

Each voxel gets its own ridge penalty ``alpha``, chosen from a grid by
cross-validation in which the folds are whole stories (timepoints of one story
are autocorrelated, so splitting a story between train and validation would
leak). The model is then refit on all training rows with each voxel's alpha.

The solver (:func:`solve_ridge_cv_gram`) decomposes the smaller Gram matrix once per
fold -- ``X^T X`` (primal) when ``n_samples >= n_features``, ``X X^T`` (dual, a linear
kernel) otherwise -- and derives the predictions of every penalty for every voxel from
it; the dual solution is returned as primal weights ``X^T @ dual_coef`` so both paths
give the same kind of result. It runs on himalaya's backends (numpy on CPU, torch on GPU),
chosen in one place, :func:`select_backend`; torch is only imported there, lazily.
:func:`himalaya_ridge_cv` fits the same model with himalaya's ``RidgeCV`` /
``KernelRidgeCV`` and serves as the reference in tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lmbrain.errors import ConfigError

BACKENDS = ("numpy", "torch", "torch_cuda")
SOLVERS = ("auto", "primal", "dual")


# --------------------------------------------------------------------------- #
# Data splits
# --------------------------------------------------------------------------- #
def nested_train_subsets(
    train_stories: Sequence[str], fractions: Sequence[float], seed: int
) -> dict[float, list[str]]:
    """Nested subsets of the training stories, for data-scaling curves.

    The sorted stories are shuffled once with ``numpy.random.default_rng(seed)``
    and fraction ``f`` takes the first ``max(1, round_half_up(f * n))`` of that
    order, so a smaller fraction's subset is always contained in a larger one's.

    Parameters
    ----------
    train_stories : sequence of str
        Distinct story names (order does not matter).
    fractions : sequence of float
        Each in ``(0, 1]``.
    seed : int
        Seed of the single permutation.

    Returns
    -------
    dict
        ``fraction -> list of story names`` (each list sorted alphabetically).
    """
    stories = sorted(train_stories)
    if not stories:
        raise ValueError("nested_train_subsets needs at least one training story")
    if len(set(stories)) != len(stories):
        raise ValueError("training stories must be distinct")
    order = [stories[i] for i in np.random.default_rng(seed).permutation(len(stories))]
    subsets = {}
    for f in fractions:
        if not (0.0 < float(f) <= 1.0):
            raise ValueError(f"data fraction {f} is outside (0, 1]")
        k = max(1, int(np.floor(float(f) * len(stories) + 0.5)))
        subsets[f] = sorted(order[:k])
    return subsets


def story_folds(story_ids_per_row: Sequence, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds grouped by story.

    Stories are assigned to folds greedily (largest story first, ties by
    name) to the fold with the fewest rows so far, which balances fold sizes
    and is deterministic. A story's rows are never split between train and
    validation. ``n_folds`` is capped at the number of distinct stories.

    Parameters
    ----------
    story_ids_per_row : sequence
        Story id of each row of the design matrix.
    n_folds : int
        Requested number of folds (>= 2).

    Returns
    -------
    list of (train_idx, val_idx)
        Sorted int64 index arrays; every row is in exactly one ``val_idx``.
    """
    groups = np.asarray(story_ids_per_row)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < 2:
        raise ValueError(
            f"story-grouped cross-validation needs >= 2 training stories, got {len(names)}"
        )
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    n_folds = min(int(n_folds), len(names))
    fold_of_story = np.empty(len(names), dtype=np.int64)
    fold_rows = np.zeros(n_folds, dtype=np.int64)
    for s in sorted(range(len(names)), key=lambda i: (-counts[i], str(names[i]))):
        k = int(np.argmin(fold_rows))
        fold_of_story[s] = k
        fold_rows[k] += counts[s]
    fold_of_row = fold_of_story[inverse.ravel()]
    rows = np.arange(groups.shape[0], dtype=np.int64)
    return [(rows[fold_of_row != k], rows[fold_of_row == k]) for k in range(n_folds)]


def alpha_grid(spec: Sequence[float] | Mapping, key: str = "alphas") -> np.ndarray:
    """Ridge penalty grid from a configuration value.

    Parameters
    ----------
    spec : list of float or dict
        Either explicit values, or ``{"logspace": [start_exp, stop_exp, n]}``
        meaning ``numpy.logspace(start_exp, stop_exp, n)``.
    key : str, default "alphas"
        Configuration key named in error messages.

    Returns
    -------
    numpy.ndarray of float64
        Positive, finite values.

    Raises
    ------
    ConfigError
        If the spec is malformed or a value is not positive and finite.
    """
    if isinstance(spec, Mapping):
        if set(spec) != {"logspace"} or len(spec["logspace"]) != 3:
            raise ConfigError(key, "expected a list of numbers or {logspace: [start, stop, n]}")
        start, stop, n = spec["logspace"]
        if int(n) != n or n < 1:
            raise ConfigError(key, f"logspace count must be a positive integer, got {n}")
        grid = np.logspace(float(start), float(stop), int(n))
    else:
        try:
            grid = np.asarray(list(spec), dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ConfigError(key, f"expected a list of numbers: {err}") from err
    if grid.ndim != 1 or grid.size == 0:
        raise ConfigError(key, "the alpha grid is empty")
    if not np.all(np.isfinite(grid) & (grid > 0)):
        raise ConfigError(key, f"alphas must be positive and finite, got {grid.tolist()}")
    return grid


# --------------------------------------------------------------------------- #
# Backend and solver choice
# --------------------------------------------------------------------------- #
def select_backend(name: str = "auto") -> str:
    """Choose and activate the himalaya backend.

    Parameters
    ----------
    name : {"auto", "numpy", "torch", "torch_cuda"}
        ``"auto"`` gives ``"torch_cuda"`` when torch is installed and sees a
        CUDA device, else ``"numpy"``.

    Returns
    -------
    str
        The backend name now active (``himalaya.backend.set_backend``).
    """
    from himalaya.backend import set_backend

    if name == "auto":
        name = "torch_cuda" if _cuda_available() else "numpy"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; use 'auto' or one of {BACKENDS}")
    module = set_backend(name, on_error="raise")
    if name == "numpy":
        _use_divide_and_conquer_eigh(module)
    return name


def _use_divide_and_conquer_eigh(module) -> None:
    """Make the numpy backend's full eigendecomposition use LAPACK's ``syevd``.

    Kernel ridge diagonalises one (n_train x n_train) kernel per fold; for the full spectrum
    the divide-and-conquer driver is about 1.6x faster than scipy's default ``syevr`` on the
    same matrix, with eigenpairs equal to round-off (the closed-form tests cover both).
    """
    import functools

    import scipy.linalg

    if getattr(module.eigh, "__name__", "") != "eigh_evd":
        eigh_evd = functools.partial(scipy.linalg.eigh, driver="evd")
        eigh_evd.__name__ = "eigh_evd"
        module.eigh = eigh_evd


def _cuda_available() -> bool:
    """Whether torch is importable and sees a CUDA device.

    Machines without an NVIDIA driver (no ``nvidia-smi`` on the PATH and no
    ``CUDA_VISIBLE_DEVICES``) answer no without importing torch, which saves every CPU
    fit job a second or two of start-up.
    """
    import os
    import shutil

    if shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_solver(n_samples: int, n_features: int, solver: str = "auto") -> str:
    """Pick ``"primal"`` or ``"dual"`` ridge.

    Parameters
    ----------
    n_samples, n_features : int
        Shape of the design matrix.
    solver : {"auto", "primal", "dual"}
        ``"auto"`` gives primal when ``n_samples >= n_features``, else dual.

    Returns
    -------
    str
        ``"primal"`` or ``"dual"``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {SOLVERS}")
    if solver == "auto":
        return "primal" if n_samples >= n_features else "dual"
    return solver


# --------------------------------------------------------------------------- #
# Fitting
# --------------------------------------------------------------------------- #
@dataclass
class RidgeFit:
    """Result of :func:`fit_ridge_cv`.

    Attributes
    ----------
    coef : numpy.ndarray of shape (n_features, n_voxels), float32
        Primal ridge weights refit on all training rows.
    best_alphas : numpy.ndarray of shape (n_voxels,), float64
        Alpha selected for each voxel (exactly a value of the grid).
    cv_scores : numpy.ndarray of shape (n_voxels,)
        Mean over folds of the validation R^2 (himalaya ``r2_score``,
        ``1 - SSE / SST`` on each validation fold) at the selected alpha.
    solver : str
        ``"primal"`` or ``"dual"``.
    backend : str
        himalaya backend used.
    """

    coef: np.ndarray
    best_alphas: np.ndarray
    cv_scores: np.ndarray
    solver: str
    backend: str


def fit_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    groups: Sequence,
    alphas: Sequence[float],
    n_folds: int = 5,
    backend: str = "auto",
    solver: str = "auto",
    n_targets_batch: int | None = None,
) -> RidgeFit:
    """Ridge regression with a per-voxel alpha chosen by story-grouped CV.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Design matrix, already z-scored per story (no intercept is fit).
    Y : array_like of shape (n_samples, n_voxels)
        Responses, already z-scored per story.
    groups : sequence of length n_samples
        Story id of each row; folds come from :func:`story_folds`.
    alphas : sequence of float
        Ridge penalty grid (see :func:`alpha_grid`).
    n_folds : int, default 5
        Number of CV folds (capped at the number of stories).
    backend : str, default "auto"
        See :func:`select_backend`.
    solver : {"auto", "primal", "dual"}
        See :func:`choose_solver`.
    n_targets_batch : int or None
        Voxels per batch inside the solver, to bound
        memory (None: all at once).

    Returns
    -------
    RidgeFit
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or X.shape[0] != Y.shape[0] or len(groups) != X.shape[0]:
        raise ValueError(
            f"inconsistent shapes: X {X.shape}, Y {Y.shape}, groups {len(groups)} rows"
        )
    backend_name = select_backend(backend)
    chosen = choose_solver(X.shape[0], X.shape[1], solver)
    folds = story_folds(groups, n_folds)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    coef, best, cv_scores = solve_ridge_cv_gram(
        X, Y, folds, alphas, dual=chosen == "dual", n_targets_batch=n_targets_batch
    )
    return RidgeFit(
        coef=coef,
        best_alphas=best,
        cv_scores=cv_scores,
        solver=chosen,
        backend=backend_name,
    )


def _gram_decomposition(X, dual: bool):
    from himalaya.backend import get_backend

    """Eigen-decomposition of the smaller Gram matrix of ``X`` (on the active backend).

    ``dual``: ``X X^T = V diag(lam) V^T``; primal: ``X^T X = V diag(lam) V^T``. Ridge
    predictions for every penalty follow from it (see :func:`solve_ridge_cv_gram`).
    Eigenvalues below zero (float32 round-off) are set to zero.
    """
    bk = get_backend()
    gram = X @ X.T if dual else X.T @ X
    lam, V = bk.eigh(gram)
    return lam * (lam > 0), V


def _r2_columns(y, pred):
    """Per-column R^2 on the active backend."""
    resid = ((y - pred) ** 2).sum(0)
    centred = ((y - y.mean(0)) ** 2).sum(0)
    return 1 - resid / centred


def solve_ridge_cv_gram(
    X: np.ndarray,
    Y: np.ndarray,
    folds: list,
    alphas: np.ndarray,
    dual: bool,
    n_targets_batch: int | None = None,
):
    """Ridge for every penalty and voxel from one eigen-decomposition per fold.

    For a fold with training rows ``X_t`` and validation rows ``X_v``, the ridge prediction
    with penalty ``a`` is ``A diag(1 / (lam + a)) B`` where, in the primal form
    (``X_t^T X_t = V diag(lam) V^T``), ``A = X_v V`` and ``B = V^T X_t^T Y_t``, and in the
    dual form (``X_t X_t^T = V diag(lam) V^T``), ``A = X_v X_t^T V`` and ``B = V^T Y_t``.
    One decomposition therefore serves every penalty and every voxel: per penalty only an
    ``(n_val x r) @ (r x n_voxels)`` product remains, with ``r = min(n_train, n_features)``.
    The validation R^2 is averaged over folds, each voxel takes the penalty with the best
    mean, and the final weights come from one more decomposition on all rows, each voxel's
    column scaled by its own penalty.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features), float32
    Y : ndarray, shape (n_samples, n_voxels), float32
    folds : list of (train_idx, val_idx)
    alphas : ndarray, shape (n_alphas,)
    dual : bool
        Decompose ``X X^T`` (n_samples < n_features) rather than ``X^T X``.
    n_targets_batch : int, optional
        Voxels per batch of the per-penalty products (bounds memory).

    Returns
    -------
    coef : ndarray, shape (n_features, n_voxels), float32
    best_alphas : ndarray, shape (n_voxels,), float64 (values of ``alphas``)
    cv_scores : ndarray, shape (n_voxels,), mean validation R^2 at the chosen penalty
    """
    from himalaya.backend import get_backend

    bk = get_backend()
    n_vox = Y.shape[1]
    batch = n_vox if n_targets_batch is None else max(1, int(n_targets_batch))
    Xb, Yb = bk.asarray(X), bk.asarray(Y)
    scores = np.zeros((len(alphas), n_vox), dtype=np.float64)
    for train, val in folds:
        xt, xv = Xb[bk.asarray(train)], Xb[bk.asarray(val)]
        lam, V = _gram_decomposition(xt, dual)
        A = (xv @ xt.T) @ V if dual else xv @ V
        for lo in range(0, n_vox, batch):
            cols = slice(lo, lo + batch)
            yt, yv = Yb[bk.asarray(train)][:, cols], Yb[bk.asarray(val)][:, cols]
            B = V.T @ yt if dual else V.T @ (xt.T @ yt)
            for i, alpha in enumerate(alphas):
                pred = (A * (1.0 / (lam + float(alpha)))) @ B
                scores[i, cols] += bk.to_numpy(_r2_columns(yv, pred))
    scores /= len(folds)
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    best_idx = np.argmax(scores, axis=0)
    best = alphas[best_idx]
    cv_scores = scores[best_idx, np.arange(n_vox)]
    cv_scores[~np.isfinite(cv_scores)] = np.nan

    lam, V = _gram_decomposition(Xb, dual)
    coef = np.empty((X.shape[1], n_vox), dtype=np.float32)
    for lo in range(0, n_vox, batch):
        cols = slice(lo, lo + batch)
        y = Yb[:, cols]
        B = V.T @ y if dual else V.T @ (Xb.T @ y)
        shrink = 1.0 / (lam[:, None] + bk.asarray(best[cols].astype(np.float32))[None, :])
        W = V @ (B * shrink)
        coef[:, cols] = bk.to_numpy(Xb.T @ W if dual else W)
    return coef, best, cv_scores


def himalaya_ridge_cv(X, Y, folds, alphas, dual: bool, n_targets_batch=None, n_alphas_batch=None):
    """Reference: the same fit with himalaya's ``RidgeCV`` / ``KernelRidgeCV`` estimators.

    Used by the tests and benchmarks to check :func:`solve_ridge_cv_gram` against an
    independent implementation (same folds, penalties and R^2 selection score).

    Returns
    -------
    coef, best_alphas, cv_scores
        As :func:`solve_ridge_cv_gram`.
    """
    from himalaya.backend import get_backend
    from himalaya.scoring import r2_score

    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    params = dict(
        n_targets_batch=n_targets_batch, n_alphas_batch=n_alphas_batch, score_func=r2_score
    )
    bk = get_backend()
    if dual:
        model = _fit_dual(X, Y, alphas.astype(np.float32), folds, params)
        coef = _dual_to_primal(X, model.dual_coef_, n_targets_batch)
    else:
        model = _fit_primal(X, Y, alphas.astype(np.float32), folds, params)
        coef = bk.to_numpy(model.coef_)
    return (
        np.asarray(coef, dtype=np.float32).reshape(X.shape[1], -1),
        _snap_to_grid(bk.to_numpy(model.best_alphas_), alphas),
        np.asarray(bk.to_numpy(model.cv_scores_)).ravel(),
    )


def _snap_to_grid(values, grid: np.ndarray) -> np.ndarray:
    """Replace each alpha by the nearest (in log space) grid value, as float64.

    himalaya returns ``exp(-log(alpha))``, which carries round-off.
    """
    values = np.log(np.asarray(values, dtype=np.float64).ravel())
    log_grid = np.log(np.asarray(grid, dtype=np.float64))
    idx = np.argmin(np.abs(values[:, None] - log_grid[None, :]), axis=1)
    return np.asarray(grid, dtype=np.float64)[idx]


def _fit_primal(X, Y, alphas, folds, solver_params):
    """Fit himalaya RidgeCV (SVD solver) with the given folds."""
    from himalaya.ridge import RidgeCV

    model = RidgeCV(
        alphas=alphas,
        fit_intercept=False,
        solver="svd",
        solver_params=dict(solver_params, warn=False),
        cv=folds,
    )
    return model.fit(X, Y)


def _fit_dual(X, Y, alphas, folds, solver_params):
    """Fit himalaya KernelRidgeCV (linear kernel, eigenvalue solver) with the given folds."""
    from himalaya.kernel_ridge import KernelRidgeCV

    model = KernelRidgeCV(
        alphas=alphas,
        kernel="linear",
        fit_intercept=False,
        solver="eigenvalues",
        solver_params=solver_params,
        cv=folds,
        warn=False,
    )
    return model.fit(X, Y)


def _dual_to_primal(X: np.ndarray, dual_coef, batch: int | None) -> np.ndarray:
    """Primal weights ``X.T @ dual_coef``, computed on the backend in voxel batches."""
    from himalaya.backend import get_backend

    bk = get_backend()
    dual = bk.to_numpy(dual_coef)
    if dual.ndim == 1:
        dual = dual[:, None]
    n_vox = dual.shape[1]
    batch = n_vox if batch is None else max(1, int(batch))
    Xt = bk.asarray(X).T
    coef = np.empty((X.shape[1], n_vox), dtype=np.float32)
    for start in range(0, n_vox, batch):
        sl = slice(start, start + batch)
        part = bk.matmul(Xt, bk.asarray(np.ascontiguousarray(dual[:, sl], dtype=np.float32)))
        coef[:, sl] = bk.to_numpy(part)
    return coef


def predict(fit: RidgeFit, X: np.ndarray) -> np.ndarray:
    """Predicted responses ``X @ fit.coef``.

    Parameters
    ----------
    fit : RidgeFit
    X : array_like of shape (n_samples, n_features)
        Design matrix built like the training one.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_voxels), float32
    """
    X = np.asarray(X, dtype=np.float32)
    if X.shape[1] != fit.coef.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features, the fit has {fit.coef.shape[0]}")
    return X @ fit.coef
