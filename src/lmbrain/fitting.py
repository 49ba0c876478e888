"""Voxelwise ridge regression with story-grouped cross-validation.

Each voxel gets its own ridge penalty ``alpha``, chosen from a grid by
cross-validation in which the folds are whole stories (timepoints of one story
are autocorrelated, so splitting a story between train and validation would
leak). The model is then refit on all training rows with each voxel's alpha.

How the work is shared
----------------------
Ridge for every alpha and every voxel is diagonal in one basis, so each training
set is decomposed **once** and serves the whole grid and all voxels
(:func:`solve_ridge_cv_gram`): the smaller Gram matrix is eigendecomposed,

- primal (``n_samples >= n_features``): ``X_tr^T X_tr = W diag(lam) W^T``; the
  weights for ``alpha`` are ``W diag(1 / (lam + alpha)) W^T X_tr^T y``;
- dual (``n_samples < n_features``): ``X_tr X_tr^T = V diag(lam) V^T``; the
  weights are ``X_tr^T V diag(1 / (lam + alpha)) V^T y``.

The Gram matrix of all training rows is formed once; a fold's is a block of it
(dual) or it minus the validation rows' (primal). Gram matrices and their
eigendecompositions are computed in float64 (they do not grow with the number of
voxels; ``cv_precision="float32"`` decomposes the folds in float32, which only rank the
alphas); every product with the responses is float32. Per fold and voxel batch,
the projection of the responses onto the eigenvectors is computed once, and each
alpha then costs one product with the small validation block. Voxels are
processed in batches (``n_targets_batch``; by default from a memory budget, see
:func:`targets_batch`), so memory beyond ``Y`` and the returned weights stays
bounded. What is shared across folds is the full Gram matrix; across train
fractions or subjects with the same stimuli, the same design rows (hence Gram
blocks) recur, but each fit here recomputes them.

The refit on all training rows needs only the alphas that voxels selected, often a handful
of the grid. When the voxels are few next to the Gram's size (a small ROI or the demo), one
Cholesky factorisation of ``Gram + alpha I`` per selected alpha is cheaper than the full
eigendecomposition (an ``m x m`` eigendecomposition costs about as much as 20 Cholesky
factorisations); :func:`choose_refit_decomposition` picks the cheaper by a flop count. Both
give the same weights to round-off (``tests/test_fitting.py``).

The selection rule is himalaya's default for ``RidgeCV``: per voxel, the alpha
with the best mean over folds of the negative mean squared error on the
validation fold (ties go to the larger alpha). The reported ``cv_scores`` are
the mean over folds of the validation R^2 at that alpha. When ``Y`` is z-scored
per story, a fold's total sum of squares equals its number of rows, so the two
criteria rank alphas identically.

The computation backend (numpy on CPU, torch on GPU) is chosen in one place,
:func:`select_backend`; torch is only imported there, lazily.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmbrain.alphas import alpha_grid as alpha_grid  # re-exported: the grid is read there

BACKENDS = ("numpy", "torch", "torch_cuda")
SOLVERS = ("auto", "primal", "dual")
#: Precision of the cross-validation folds' eigendecompositions (``fitting.cv_precision``).
CV_PRECISIONS = ("float64", "float32")


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
    if name == "auto":
        name = "torch_cuda" if _cuda_available() else "numpy"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; use 'auto' or one of {BACKENDS}")
    if name == "numpy" and "himalaya" not in sys.modules:
        return name  # himalaya's default backend, once imported (see _get_backend)
    from himalaya.backend import set_backend

    set_backend(name, on_error="raise")
    return name


class _NumpyBackend:
    """The array operations of himalaya's numpy backend that the ridge solver uses.

    Same calls as ``himalaya.backend.numpy`` (``asarray``, ``matmul``, ``to_numpy``), so a
    CPU fit does not import himalaya: its package imports scikit-learn, scipy.stats and
    pandas, about 1.3 s of CPU at the start of every fit job (issue 17).
    """

    name = "numpy"
    matmul = staticmethod(np.matmul)

    @staticmethod
    def asarray(a, dtype=None):
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def to_numpy(a):
        return np.asarray(a)


def _get_backend():
    """The active himalaya backend; :class:`_NumpyBackend` while himalaya is not imported.

    Until himalaya is imported its backend is numpy, and :func:`select_backend` imports it
    for any other backend (or when it is already imported), so both answers agree.
    """
    if "himalaya" not in sys.modules:
        return _NumpyBackend
    from himalaya.backend import get_backend

    return get_backend()


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
#: Working memory for one voxel batch when ``n_targets_batch`` is None: a
#: quarter of the size of ``Y``, clipped to [64 MiB, 512 MiB].
BATCH_BYTES_FRACTION = 0.25
BATCH_BYTES_MIN = 64 * 2**20
BATCH_BYTES_MAX = 512 * 2**20
_FLOAT64_CHUNK = 2048  # feature columns per float64 block when forming the kernel


@dataclass
class RidgeFit:
    """Result of :func:`fit_ridge_cv`.

    Attributes
    ----------
    coef : numpy.ndarray of shape (n_features, n_voxels), float32, or None
        Primal ridge weights refit on all training rows; None when the fit was asked for
        test-set predictions instead (``X_test`` of :func:`fit_ridge_cv`).
    best_alphas : numpy.ndarray of shape (n_voxels,), float64
        Alpha selected for each voxel (exactly a value of the grid).
    cv_scores : numpy.ndarray of shape (n_voxels,)
        Mean over folds of the validation R^2 (``1 - SSE / SST`` on each
        validation fold, 0 where the fold's SST is 0) at the selected alpha.
    solver : str
        ``"primal"`` or ``"dual"``.
    backend : str
        himalaya backend used.
    predictions : numpy.ndarray of shape (n_test, n_voxels), float32, or None
        ``X_test`` times the weights, when ``X_test`` was given.
    """

    coef: np.ndarray | None
    best_alphas: np.ndarray
    cv_scores: np.ndarray
    solver: str
    backend: str
    predictions: np.ndarray | None = None


def targets_batch(n_samples: int, n_features: int, n_voxels: int, n_bytes: int) -> int:
    """Voxels per batch so that one batch's float32 work arrays fit in ``n_bytes``.

    A batch of ``b`` voxels holds about ``3 * n_samples + max(2 * n_samples,
    n_features)`` float32 values per voxel (responses, their projection, one
    prediction or one block of weights).

    Parameters
    ----------
    n_samples, n_features, n_voxels : int
        Shape of the problem.
    n_bytes : int
        Memory budget for one batch.

    Returns
    -------
    int
        Between 1 and ``n_voxels``.
    """
    per_voxel = 4 * (3 * n_samples + max(2 * n_samples, n_features))
    return int(min(max(n_voxels, 1), max(1, n_bytes // per_voxel)))


def _default_batch_bytes(Y: np.ndarray) -> int:
    return int(min(BATCH_BYTES_MAX, max(BATCH_BYTES_MIN, BATCH_BYTES_FRACTION * Y.nbytes)))


def fit_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    groups: Sequence,
    alphas: Sequence[float],
    n_folds: int = 5,
    backend: str = "auto",
    solver: str = "auto",
    n_targets_batch: int | None = None,
    n_alphas_batch: int | None = None,
    X_test: np.ndarray | None = None,
    cv_precision: str = "float64",
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
        Ridge penalty grid (positive; see :func:`alpha_grid`).
    n_folds : int, default 5
        Number of CV folds (capped at the number of stories).
    backend : str, default "auto"
        See :func:`select_backend`.
    solver : {"auto", "primal", "dual"}
        See :func:`choose_solver`.
    n_targets_batch : int or None
        Voxels per batch (bounds memory); None chooses it with
        :func:`targets_batch` from a budget of a quarter of ``Y``'s size,
        clipped to [64 MiB, 512 MiB].
    n_alphas_batch : int or None
        Accepted for compatibility and ignored: alphas are applied one at a
        time to a shared decomposition, so memory does not grow with the grid.
    X_test : array_like of shape (n_test, n_features), optional
        Test rows: the fit then returns their predictions (``predictions``) and no weights
        (``coef`` None). The ``n_features x n_voxels`` weights are never held whole, only one
        voxel batch's projection: at the paper's scale (32,768 features x 80,000 voxels)
        they would be 10.5 GB of a ~20 GB fit (BENCHMARKS.md, *Fit memory*).
    cv_precision : {"float64", "float32"}, default "float64"
        Precision of the cross-validation folds' eigendecompositions, which only rank the
        alphas: float32 is 2-3x faster (himalaya works in float32 throughout) but its error on
        a fold's ridge map is up to about ``1.2e-7 * lam_max / alpha`` (``lam_max`` the largest
        eigenvalue), so a voxel whose best alphas are near the bottom of the grid may rank
        them differently. The refit on all rows (the weights, the test predictions) is
        float64 either way. On the demo's fits float32 gave the same alpha on every voxel and
        the same test r (BENCHMARKS.md, *Demo in under five minutes*).

    Returns
    -------
    RidgeFit
    """
    del n_alphas_batch
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
    out, best_alphas, cv_scores = solve_ridge_cv_gram(
        X,
        Y,
        story_folds(groups, n_folds),
        alphas,
        chosen == "dual",
        n_targets_batch,
        X_test,
        cv_precision=cv_precision,
    )
    test = X_test is not None
    return RidgeFit(
        coef=None if test else out,
        best_alphas=best_alphas,
        cv_scores=cv_scores,
        solver=chosen,
        backend=backend_name,
        predictions=out if test else None,
    )


def solve_ridge_cv_gram(
    X: np.ndarray,
    Y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
    dual: bool,
    n_targets_batch: int | None = None,
    X_test: np.ndarray | None = None,
    refit_decomposition: str = "auto",
    cv_precision: str = "float64",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel ridge CV and refit, with one Gram eigendecomposition per training set.

    Runs on the active himalaya backend (see :func:`select_backend`); ``Y`` stays in host
    memory and goes to the backend one voxel batch at a time.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
        Design matrix (converted to float32).
    Y : numpy.ndarray of shape (n_samples, n_voxels)
        Responses (converted to float32).
    folds : sequence of (train_idx, val_idx)
        Cross-validation splits (e.g. :func:`story_folds`).
    alphas : sequence of float
        Positive penalties.
    dual : bool
        Decompose the kernel ``X X^T`` (True) or ``X^T X`` (False); the smaller is cheaper.
    n_targets_batch : int, optional
        Voxels per batch; default from :func:`targets_batch` (see :func:`fit_ridge_cv`).
    X_test : numpy.ndarray of shape (n_test, n_features), optional
        Return its predictions instead of the weights.
    refit_decomposition : {"auto", "eigh", "cholesky"}
        How the refit on all rows solves: see :func:`choose_refit_decomposition`.
    cv_precision : {"float64", "float32"}
        Precision of the folds' eigendecompositions, which only choose the alphas (see
        :func:`fit_ridge_cv`); the refit is float64 either way.

    Returns
    -------
    coef : numpy.ndarray of shape (n_features, n_voxels), float32
        Weights refit on all rows with each voxel's alpha; with ``X_test``, its predictions
        ``(n_test, n_voxels)`` instead.
    best_alphas : numpy.ndarray of shape (n_voxels,), float64
        Best grid value per voxel by mean validation negative MSE (ties: larger alpha).
    cv_scores : numpy.ndarray of shape (n_voxels,), float64
        Mean over folds of the validation R^2 at that alpha.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas > 0)):
        raise ValueError(f"alphas must be positive and finite, got {alphas.tolist()}")
    batch = int(n_targets_batch or targets_batch(*X.shape, Y.shape[1], _default_batch_bytes(Y)))
    batches = [slice(i, i + batch) for i in range(0, Y.shape[1], batch)]
    responses = _Responses(Y, X.shape)
    gram = _Gram(X, dual, cv_precision)
    sse, sst = _cv_errors(gram, responses, folds, alphas, batches)
    best, cv_scores = _select_alphas(sse, sst, np.array([len(va) for _, va in folds]), alphas)
    coef = _refit(gram, responses, alphas, best, batches, X_test, refit_decomposition)
    return coef, alphas[best], cv_scores


#: Share of the GPU's free memory that ``Y`` plus the solver's own working arrays may take
#: for ``Y`` to be copied to the GPU once (see :class:`_Responses`).
RESIDENT_FRACTION = 0.8


def _device_free_bytes(bk) -> int | None:
    """Free memory of the backend's GPU in bytes; None on CPU backends."""
    if bk.name != "torch_cuda":
        return None
    import torch

    return int(torch.cuda.mem_get_info()[0])


def _working_bytes(n_samples: int, n_features: int) -> int:
    """The GPU solver's own peak without ``Y``: about ``40 m^2 + 8 n p`` bytes.

    ``m = min(n, p)``: the float64 Gram, a fold's copy, its eigenvectors and the
    eigensolver's workspace, the float32 eigenvectors; ``8 n p``: the training rows of X and
    their projection in float32 (14.0 GiB measured at 30,000 x 16,384, BENCHMARKS.md, *GPU*).
    """
    m = min(n_samples, n_features)
    return 40 * m * m + 8 * n_samples * n_features


class _Responses:
    """Rows and voxel batches of ``Y`` on the backend.

    On a GPU with room for ``Y`` next to the solver's working arrays (a share
    :data:`RESIDENT_FRACTION` of its free memory), ``Y`` is copied there once and every
    ``(rows, voxel batch)`` block is cut on the GPU; otherwise each block is cut on the host
    and sent (the CPU path, or a GPU too small for ``Y``). At 30,000 x 95,000 the host cuts
    and transfers took most of a GPU fit (BENCHMARKS.md, *GPU*).
    """

    def __init__(self, Y: np.ndarray, x_shape: tuple[int, int]):
        self.bk = _get_backend()
        self.Y = Y
        self.shape = Y.shape
        self.device = None
        free = _device_free_bytes(self.bk)
        if free is not None and Y.nbytes + _working_bytes(*x_shape) <= RESIDENT_FRACTION * free:
            self.device = self.bk.asarray(Y)

    def take(self, rows: np.ndarray | None, sl: slice):
        """``Y[rows, sl]`` (all rows when None) as a backend array."""
        if self.device is None:
            return self.bk.asarray(self.Y[:, sl] if rows is None else self.Y[rows, sl])
        if rows is None:
            return self.device[:, sl]
        return self.device[self.bk.asarray(np.asarray(rows, dtype=np.int64)), sl]


class _Gram:
    """Ridge on a subset of the rows of X, diagonalized by one eigendecomposition.

    :meth:`spectrum` returns ``(left, right, lam)`` such that the ridge map from training
    responses ``y`` to an output is ``right @ ((left.T @ y) / (lam + alpha))``; ``right``
    gives predictions on validation rows, or the weights when no validation rows are given.

    - primal, ``X_tr^T X_tr = W diag(lam) W^T``: ``left = X_tr W``, ``right = X_val W``
      (or ``W``);
    - dual, ``X_tr X_tr^T = V diag(lam) V^T``: ``left = V``, ``right = K[val, tr] V``
      (or ``X_tr^T V``).

    The Gram matrix of all rows is formed once in float64; a training set's is a block of it
    (dual) or it minus the validation rows' (primal).
    """

    def __init__(self, X: np.ndarray, dual: bool, cv_precision: str = "float64"):
        if cv_precision not in CV_PRECISIONS:
            raise ValueError(f"cv_precision must be one of {CV_PRECISIONS}, got {cv_precision!r}")
        self.bk = _get_backend()
        self.X = X
        self.dual = dual
        self.cv_precision = cv_precision
        self.gram = self._gram64(X if dual else X.T)

    def _gram64(self, A: np.ndarray):
        """``A @ A.T`` in float64, from column blocks of A (bounded extra memory)."""
        bk = self.bk
        G = bk.asarray(np.zeros((A.shape[0], A.shape[0])), dtype="float64")
        for j in range(0, A.shape[1], _FLOAT64_CHUNK):
            block = bk.asarray(np.ascontiguousarray(A[:, j : j + _FLOAT64_CHUNK]), dtype="float64")
            G += bk.matmul(block, block.T)
            del block
        return G

    def _index(self, idx: np.ndarray):
        return self.bk.asarray(np.asarray(idx, dtype=np.int64))

    def spectrum(self, train: np.ndarray | None = None, val: np.ndarray | None = None):
        """``(left, right, lam)`` for rows ``train`` (None: all rows, consuming the Gram)."""
        bk = self.bk
        if train is None:
            G, self.gram = self.gram, None
        elif self.dual:
            G = self.gram[self._index(train)[:, None], self._index(train)]
        else:
            G = self.gram - self._gram64(self.X[val].T)
        # a fold's decomposition only ranks the alphas; the refit (train None) is float64
        lam, vecs = _eigh_inplace(bk, G, "float64" if train is None else self.cv_precision)
        del G
        lam = np.maximum(bk.to_numpy(lam), 0.0)  # float64 round-off below zero
        vecs32 = bk.asarray(vecs, dtype="float32")
        if self.dual:
            if val is None:
                right = bk.matmul(bk.asarray(self.X).T, vecs32)
            else:  # validation predictions need only the kernel, not a copy of X's rows
                tr = self._index(train)
                right = bk.asarray(
                    bk.matmul(self.gram[self._index(val)[:, None], tr], vecs), dtype="float32"
                )
            left = vecs32
        else:
            X_train = bk.asarray(self.X if train is None else self.X[train])
            left = bk.matmul(X_train, vecs32)
            right = vecs32 if val is None else bk.matmul(bk.asarray(self.X[val]), vecs32)
            del X_train
        del vecs
        return left, right, lam


#: Largest extra workspace (bytes) allowed for LAPACK's divide-and-conquer eigensolver.
EVD_WORKSPACE_MAX = 2 * 2**30


def _eigh_inplace(bk, G, precision: str = "float64"):
    """Eigendecomposition of a symmetric matrix that may be overwritten.

    ``precision="float32"`` decomposes a float32 copy (``fitting.cv_precision``: 2-3x faster,
    as himalaya computes); the eigenvalues come back as float64 either way.

    On numpy, LAPACK's divide-and-conquer driver (``syevd``) is about 1.6x faster than
    scipy's default ``syevr`` for the full spectrum, but needs ``2 n^2`` extra float64 of
    workspace; it is used while that stays under :data:`EVD_WORKSPACE_MAX`, ``syevr`` above.
    Both give the same eigenpairs to round-off (the closed-form tests cover both). The
    matrix is handed to LAPACK without a copy (see below), so the decomposition adds only the
    workspace to the peak.
    """
    if precision == "float32":
        if bk.name == "numpy":
            from scipy.linalg import eigh

            G32 = np.asarray(G, dtype=np.float32, order="F")
            del G
            lam, vecs = eigh(G32, overwrite_a=True, check_finite=False, driver="evd")
            return lam.astype(np.float64), vecs
        lam, vecs = bk.eigh(bk.asarray(G, dtype="float32"))
        return bk.asarray(lam, dtype="float64"), vecs
    if bk.name == "numpy":
        from scipy.linalg import eigh

        driver = "evd" if _evd_fits(G.shape[0]) else "evr"
        # LAPACK works in Fortran order: a C-ordered array would be copied first (n^2 more
        # float64 at the peak); G is symmetric, so its transpose is the same matrix in place.
        if G.flags.c_contiguous and not G.flags.f_contiguous:
            G = G.T
        return eigh(G, overwrite_a=True, check_finite=False, driver=driver)
    return bk.eigh(G)


def _evd_fits(n: int) -> bool:
    """Whether ``syevd``'s workspace for an ``n x n`` float64 matrix fits the budget."""
    return 2 * n * n * 8 <= EVD_WORKSPACE_MAX


def _cv_errors(gram: _Gram, Y: _Responses, folds, alphas, batches):
    """Validation SSE ``(n_folds, n_alphas, n_voxels)`` and SST ``(n_folds, n_voxels)``."""
    bk = gram.bk
    sse = np.zeros((len(folds), len(alphas), Y.shape[1]))
    sst = np.zeros((len(folds), Y.shape[1]))
    for k, (train, val) in enumerate(folds):
        left, right, lam = gram.spectrum(train, val)
        weights = [bk.asarray((1.0 / (lam + a)).astype(np.float32))[None, :] for a in alphas]
        for sl in batches:
            Z = bk.matmul(left.T, Y.take(train, sl))
            Yva = Y.take(val, sl)
            for i, w in enumerate(weights):
                err = bk.matmul(right * w, Z)
                err -= Yva
                err *= err
                sse[k, i, sl] = bk.to_numpy(err.sum(0))
                del err
            centred = Yva - Yva.mean(0)
            sst[k, sl] = bk.to_numpy((centred * centred).sum(0))
            del Z, Yva, centred
        del left, right
    return sse, sst


def _select_alphas(sse, sst, n_val, alphas):
    """Best alpha index per voxel (himalaya's default rule) and the mean CV R^2 there."""
    neg_mse = -(sse / n_val[:, None, None]).mean(0)
    neg_mse += np.log(alphas)[:, None] * 1e-10  # ties go to the larger alpha, as in himalaya
    best = np.argmax(neg_mse, axis=0)
    picked = np.take_along_axis(sse, best[None, None, :], axis=1)[:, 0, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - picked / sst, 0.0)
    return best, r2.mean(0)


#: Cost of a symmetric ``m x m`` eigendecomposition (LAPACK ``syevd``, vectors included) in
#: Cholesky factorisations of the same matrix: measured 21.7 at m = 1,536, 19.5 at 1,830 and
#: 22 at 2,300 (float64, one thread, this project's CI-class CPU); 16 leaves a margin.
EIGH_IN_CHOLESKY = 16.0

REFIT_DECOMPOSITIONS = ("auto", "eigh", "cholesky")


def choose_refit_decomposition(
    m: int, n_voxels: int, n_alphas: int, backend: str = "numpy", decomposition: str = "auto"
) -> str:
    """``"eigh"`` or ``"cholesky"`` for the refit on all training rows, by a flop count.

    The refit solves ``(Gram + alpha I) S = B`` for each of the ``n_alphas`` distinct selected
    alphas, ``Gram`` being ``m x m`` and ``B`` having ``n_voxels`` columns in all:

    - eigendecomposition: ``E m^3 / 3 + m^2 n_voxels`` (one decomposition, one projection;
      ``E`` = :data:`EIGH_IN_CHOLESKY`);
    - Cholesky: ``n_alphas m^3 / 3 + 2 m^2 n_voxels`` (one factorisation per alpha, two
      triangular solves per voxel).

    Parameters
    ----------
    m : int
        Size of the Gram matrix (``min(n_samples, n_features)``).
    n_voxels : int
        Number of voxels (columns of the responses).
    n_alphas : int
        Number of distinct alphas the voxels selected.
    backend : str
        Cholesky is used on the numpy backend only (the GPU path keeps the eigensolver).
    decomposition : {"auto", "eigh", "cholesky"}
        Anything but ``"auto"`` is returned as is (tests, benchmarks).

    Returns
    -------
    str
    """
    if decomposition not in REFIT_DECOMPOSITIONS:
        raise ValueError(
            f"decomposition must be one of {REFIT_DECOMPOSITIONS}, got {decomposition!r}"
        )
    if decomposition == "cholesky" and backend != "numpy":
        raise ValueError(f"the Cholesky refit runs on the numpy backend only, not {backend!r}")
    if decomposition != "auto":
        return decomposition
    if backend != "numpy":
        return "eigh"
    cholesky = n_alphas * m / 3 + 2 * n_voxels
    eigh = EIGH_IN_CHOLESKY * m / 3 + n_voxels
    return "cholesky" if cholesky < eigh else "eigh"


def _refit(
    gram: _Gram, Y: _Responses, alphas, best, batches, X_test=None, decomposition="auto"
) -> np.ndarray:
    """Weights on all rows, each voxel with its own alpha, in voxel batches.

    With ``X_test``: its predictions instead, ``(X_test right) Z`` per voxel batch, so the
    weights ``right Z`` are never formed (and the product is smaller: ``m`` instead of
    ``n_features`` columns).
    """
    bk = gram.bk
    if X_test is not None:
        X_test = np.ascontiguousarray(X_test, dtype=np.float32)
        if X_test.ndim != 2 or X_test.shape[1] != gram.X.shape[1]:
            raise ValueError(f"X_test has shape {X_test.shape}, the fit {gram.X.shape[1]} features")
    chosen = choose_refit_decomposition(
        gram.gram.shape[0], Y.shape[1], len(np.unique(best)), bk.name, decomposition
    )
    if chosen == "cholesky":
        coef = _refit_cholesky(gram, Y, alphas, best, batches, X_test)
        if coef is not None:
            return coef
    left, right, lam = gram.spectrum()
    weights = (1.0 / (lam[None, :] + alphas[:, None])).astype(np.float32)
    if X_test is not None:
        right = bk.matmul(bk.asarray(X_test), right)  # (n_test, m)
    coef = np.empty((right.shape[0], Y.shape[1]), dtype=np.float32)
    for sl in batches:
        Z = bk.matmul(left.T, Y.take(None, sl))
        Z *= bk.asarray(np.ascontiguousarray(weights[best[sl]].T))
        coef[:, sl] = bk.to_numpy(bk.matmul(right, Z))
        del Z
    return coef


def _refit_cholesky(gram: _Gram, Y: _Responses, alphas, best, batches, X_test=None):
    """:func:`_refit` by one Cholesky factorisation per selected alpha (numpy backend).

    Dual: ``coef = X^T (K + a I)^-1 Y`` (predictions ``(X_test X^T) (K + a I)^-1 Y``);
    primal: ``coef = (X^T X + a I)^-1 X^T Y`` (predictions ``X_test coef``). Factorisation and
    solves in float64, products with ``X`` in float32 as on the eigendecomposition path.
    Returns None, leaving the Gram untouched, if a factorisation fails (a matrix that is not
    numerically positive definite); the caller then eigendecomposes.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    G, X = gram.gram, gram.X
    m = G.shape[0]
    if gram.dual:
        outer = X.T if X_test is None else X_test @ X.T  # (p or n_test, n)
    else:
        outer = X_test  # None: the solution is the weights
    rows = X.shape[1] if X_test is None else X_test.shape[0]
    coef = np.empty((rows, Y.shape[1]), dtype=np.float32)
    size = max(sl.stop - sl.start for sl in batches)
    for index in np.unique(best):
        cols = np.flatnonzero(best == index)
        A = G.copy()
        A.flat[:: m + 1] += float(alphas[index])
        try:
            factor = cho_factor(A, overwrite_a=True, check_finite=False)
        except LinAlgError:
            return None
        del A
        for start in range(0, cols.size, size):
            part = cols[start : start + size]
            rhs = Y.Y[:, part] if gram.dual else X.T @ Y.Y[:, part]
            rhs = rhs.astype(np.float64)  # a fresh copy: LAPACK may solve in place
            solution = cho_solve(factor, rhs, overwrite_b=True, check_finite=False)
            if outer is None:
                coef[:, part] = solution
            else:
                coef[:, part] = outer @ solution.astype(np.float32)
        del factor
    gram.gram = None  # as the eigendecomposition path does: the refit is the last use
    return coef


def himalaya_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
    dual: bool,
    cv_scores: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reference for :func:`solve_ridge_cv_gram` built on himalaya's estimators.

    ``himalaya.ridge.RidgeCV`` (primal) or ``himalaya.kernel_ridge.KernelRidgeCV`` (linear
    kernel, dual) with their default selection rule, then the validation R^2 at the selected
    alphas recomputed fold by fold with ``himalaya.ridge.solve_ridge_svd``. Memory grows with
    alphas x voxels: for tests and benchmarks, not for large fits.

    cv_scores : bool, default True
        Recompute the validation R^2 (one solve per fold and distinct alpha); False returns
        None in its place (benchmarks that compare alphas and test scores only).

    Returns
    -------
    coef, best_alphas, cv_scores
        As :func:`solve_ridge_cv_gram`.
    """
    from himalaya.backend import get_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV, solve_ridge_svd
    from himalaya.scoring import r2_score

    bk = get_backend()
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    grid = np.asarray(alphas, dtype=np.float64).ravel()
    if dual:
        model = KernelRidgeCV(alphas=grid.astype(np.float32), kernel="linear", cv=folds)
        model.fit(X, Y)
        coef = X.T @ np.asarray(bk.to_numpy(model.dual_coef_), dtype=np.float32)
    else:
        model = RidgeCV(alphas=grid.astype(np.float32), cv=folds).fit(X, Y)
        coef = np.asarray(bk.to_numpy(model.coef_), dtype=np.float32)
    best = _snap_to_grid(bk.to_numpy(model.best_alphas_), grid)
    if not cv_scores:
        return coef, best, None
    scores = np.zeros((len(folds), Y.shape[1]))
    for k, (train, val) in enumerate(folds):
        # one solve per distinct alpha: a per-voxel alpha vector makes solve_ridge_svd build a
        # (rank, n_train, n_voxels) array (293 GiB at 4,000 voxels, 6,000 TRs)
        for a in np.unique(best):
            cols = np.flatnonzero(best == a)
            weights = solve_ridge_svd(
                bk.asarray(X[train]), bk.asarray(Y[train][:, cols]), alpha=float(a), warn=False
            )
            pred = bk.matmul(bk.asarray(X[val]), weights)
            scores[k, cols] = bk.to_numpy(r2_score(bk.asarray(Y[val][:, cols]), pred))
    return coef, best, scores.mean(axis=0)


def _snap_to_grid(values, grid: np.ndarray) -> np.ndarray:
    """Nearest grid value (in log space) of each alpha, as float64.

    himalaya returns ``exp(-log(alpha))`` in float32, which carries round-off.
    """
    values = np.log(np.asarray(values, dtype=np.float64).ravel())
    log_grid = np.log(np.asarray(grid, dtype=np.float64))
    idx = np.argmin(np.abs(values[:, None] - log_grid[None, :]), axis=1)
    return np.asarray(grid, dtype=np.float64)[idx]


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
