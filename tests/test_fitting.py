"""Tests of the voxelwise ridge fitting against closed forms and planted truths."""

import numpy as np
import pytest

from lmbrain import fitting
from lmbrain.errors import ConfigError


def _groups(n_stories, rows_per_story):
    return np.repeat([f"story{i:02d}" for i in range(n_stories)], rows_per_story)


# --------------------------------------------------------------------------- closed form
@pytest.mark.parametrize(
    ("n_samples", "n_features", "solver"), [(80, 10, "primal"), (30, 60, "dual")]
)
def test_single_alpha_matches_closed_form(n_samples, n_features, solver):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, n_features))
    Y = X @ rng.normal(size=(n_features, 5)) + rng.normal(size=(n_samples, 5))
    alpha = 7.0
    fit = fitting.fit_ridge_cv(X, Y, _groups(5, n_samples // 5), [alpha], backend="numpy")
    assert fit.solver == solver  # chosen automatically from the shape
    assert fit.coef.shape == (n_features, 5) and fit.coef.dtype == np.float32
    want = np.linalg.solve(X.T @ X + alpha * np.eye(n_features), X.T @ Y)
    np.testing.assert_allclose(fit.coef, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_array_equal(fit.best_alphas, alpha)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_forced_solver_and_batches_give_same_coef(solver):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 12))
    Y = rng.normal(size=(40, 7))
    alphas = [0.1, 10.0, 1000.0]
    groups = _groups(4, 10)
    ref = fitting.fit_ridge_cv(X, Y, groups, alphas, backend="numpy", solver="primal")
    fit = fitting.fit_ridge_cv(
        X, Y, groups, alphas, backend="numpy", solver=solver, n_targets_batch=3
    )
    assert fit.solver == solver
    np.testing.assert_array_equal(fit.best_alphas, ref.best_alphas)
    assert set(fit.best_alphas) <= set(alphas)
    np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fit.cv_scores, ref.cv_scores, atol=1e-4)
    np.testing.assert_allclose(fitting.predict(fit, X), X.astype(np.float32) @ fit.coef, rtol=1e-6)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_test_set_predictions_equal_the_closed_form_weights_times_x(solver):
    """``X_test`` gives its predictions, batch by batch, without the weights."""
    rng = np.random.default_rng(2)
    n_features = 10 if solver == "primal" else 60
    X = rng.normal(size=(40, n_features))
    Y = X @ rng.normal(size=(n_features, 7)) + rng.normal(size=(40, 7))
    X_test = rng.normal(size=(9, n_features))
    alpha = 3.0
    fit = fitting.fit_ridge_cv(
        X,
        Y,
        _groups(4, 10),
        [alpha],
        backend="numpy",
        solver=solver,
        n_targets_batch=3,
        X_test=X_test,
    )
    assert fit.coef is None and fit.predictions.shape == (9, 7)
    assert fit.predictions.dtype == np.float32
    weights = np.linalg.solve(X.T @ X + alpha * np.eye(n_features), X.T @ Y)  # closed form
    want = X_test @ weights
    np.testing.assert_allclose(fit.predictions, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    with pytest.raises(ValueError, match="X_test"):
        fitting.fit_ridge_cv(X, Y, _groups(4, 10), [alpha], X_test=X_test[:, :3])


# --------------------------------------------------------------------------- planted truth
def test_planted_truth_alpha_direction_and_prediction():
    rng = np.random.default_rng(2)
    n_train, n_test, n_feat, n_vox = 400, 200, 20, 20
    W = rng.normal(size=(n_feat, n_vox))
    noise_sd = np.r_[np.full(10, 0.3), np.full(10, 30.0)]  # high vs very low SNR voxels
    X = rng.normal(size=(n_train + n_test, n_feat))
    Y = X @ W + rng.normal(size=(n_train + n_test, n_vox)) * noise_sd
    alphas = np.logspace(-2, 5, 15)
    fit = fitting.fit_ridge_cv(
        X[:n_train], Y[:n_train], _groups(8, 50), alphas, n_folds=4, backend="numpy"
    )
    high, low = slice(0, 10), slice(10, 20)
    assert np.median(fit.best_alphas[low]) > 10 * np.median(fit.best_alphas[high])
    assert np.all(fit.cv_scores[high] > 0.9)
    truth = X[n_train:] @ W
    pred = fitting.predict(fit, X[n_train:])
    r = [np.corrcoef(pred[:, v], truth[:, v])[0, 1] for v in range(n_vox)]
    assert min(r[:10]) > 0.99
    assert np.median(r[10:]) > 0.3  # noisy voxels: shrunk, but still pointing at the truth


# --------------------------------------------------------------------------- splits
def test_story_folds_never_split_a_story():
    rng = np.random.default_rng(3)
    sizes = rng.integers(3, 20, size=7)
    groups = np.concatenate([[f"s{i}"] * k for i, k in enumerate(sizes)])
    groups = groups[rng.permutation(groups.size)]  # rows of a story need not be contiguous
    folds = fitting.story_folds(groups, n_folds=3)
    assert len(folds) == 3
    seen = np.zeros(groups.size, dtype=int)
    for train, val in folds:
        assert len(val) > 0 and len(train) > 0
        assert set(groups[train]).isdisjoint(groups[val])
        assert np.array_equal(np.sort(np.r_[train, val]), np.arange(groups.size))
        seen[val] += 1
    np.testing.assert_array_equal(seen, 1)  # each row validated exactly once
    again = fitting.story_folds(groups, n_folds=3)
    for (a, b), (c, d) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_story_folds_caps_and_errors():
    groups = _groups(3, 4)
    assert len(fitting.story_folds(groups, n_folds=10)) == 3
    with pytest.raises(ValueError, match=">= 2"):
        fitting.story_folds(_groups(1, 5), n_folds=5)


def test_nested_train_subsets():
    stories = [f"story{i}" for i in range(10)]
    fractions = [0.1, 0.25, 0.5, 1.0]
    subsets = fitting.nested_train_subsets(stories[::-1], fractions, seed=0)
    assert [len(subsets[f]) for f in fractions] == [1, 3, 5, 10]
    for small, big in zip(fractions, fractions[1:], strict=False):
        assert set(subsets[small]) <= set(subsets[big])
    assert set(subsets[1.0]) == set(stories)
    assert subsets == fitting.nested_train_subsets(stories, fractions, seed=0)
    others = [fitting.nested_train_subsets(stories, [0.5], seed=s)[0.5] for s in range(1, 6)]
    assert any(o != subsets[0.5] for o in others)
    assert fitting.nested_train_subsets(stories, [0.01], seed=0)[0.01] != []
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            fitting.nested_train_subsets(stories, [bad], seed=0)


def test_alpha_grid():
    np.testing.assert_allclose(fitting.alpha_grid([1, 10.0]), [1.0, 10.0])
    np.testing.assert_allclose(fitting.alpha_grid({"logspace": [0, 2, 3]}), [1.0, 10.0, 100.0])
    for bad in ([], [0.0, 1.0], [-1.0], {"logspace": [0, 1]}, {"linspace": [0, 1, 2]}):
        with pytest.raises(ConfigError):
            fitting.alpha_grid(bad)


# --------------------------------------------------------------------------- backend/solver
def test_choose_solver():
    assert fitting.choose_solver(100, 10) == "primal"
    assert fitting.choose_solver(10, 10) == "primal"
    assert fitting.choose_solver(10, 100) == "dual"
    assert fitting.choose_solver(100, 10, "dual") == "dual"
    with pytest.raises(ValueError):
        fitting.choose_solver(10, 10, "lsqr")


def test_select_backend(monkeypatch):
    from himalaya.backend import get_backend

    monkeypatch.setattr(fitting, "_cuda_available", lambda: False)
    assert fitting.select_backend("auto") == "numpy"
    assert get_backend().name == "numpy"
    with pytest.raises(ValueError):
        fitting.select_backend("tensorflow")


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_torch_backend_matches_numpy(solver):
    """The torch code path (used on GPU as torch_cuda) returns the same numpy results."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 20))
    Y = X @ rng.normal(size=(20, 4)) + rng.normal(size=(30, 4))
    args = (X, Y, _groups(3, 10), [0.1, 10.0, 1000.0])
    try:
        fit = fitting.fit_ridge_cv(*args, backend="torch", solver=solver, n_targets_batch=3)
    finally:
        fitting.select_backend("numpy")
    ref = fitting.fit_ridge_cv(*args, backend="numpy", solver=solver)
    assert isinstance(fit.coef, np.ndarray) and fit.coef.dtype == np.float32
    assert fit.backend == "torch"
    np.testing.assert_array_equal(fit.best_alphas, ref.best_alphas)
    np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fit.cv_scores, ref.cv_scores, atol=1e-4)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_responses_kept_on_the_device_give_the_same_fit(solver, monkeypatch):
    """Y copied to the (GPU) backend once and cut there == Y cut on the host batch by batch.

    The torch CPU backend stands in for torch_cuda: the free-memory probe is made to answer.
    """
    pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    X = rng.normal(size=(40, 24) if solver == "primal" else (40, 60))
    Y = X @ rng.normal(size=(X.shape[1], 9)) + rng.normal(size=(40, 9)) * 3
    args = (X, Y, _groups(5, 8), [0.1, 10.0, 1000.0])
    ref = fitting.fit_ridge_cv(*args, backend="numpy", solver=solver)
    kept = []
    init = fitting._Responses.__init__

    def spy(self, *a):
        init(self, *a)
        kept.append(self.device is not None)

    monkeypatch.setattr(fitting._Responses, "__init__", spy)
    try:
        for free in (2**40, 0):  # room for Y, then none
            monkeypatch.setattr(fitting, "_device_free_bytes", lambda bk, free=free: free)
            fit = fitting.fit_ridge_cv(*args, backend="torch", solver=solver, n_targets_batch=4)
            np.testing.assert_array_equal(fit.best_alphas, ref.best_alphas)
            np.testing.assert_allclose(fit.coef, ref.coef, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(fit.cv_scores, ref.cv_scores, atol=1e-5)
    finally:
        fitting.select_backend("numpy")
    assert kept == [True, False]


def test_responses_stay_on_the_host_when_the_gpu_is_too_small():
    assert fitting._working_bytes(30000, 16384) == 40 * 16384**2 + 8 * 30000 * 16384
    # 30,000 x 95,000 float32 (11.4 GB) plus ~14.7 GB of working arrays: not on a 24 GB card
    y_bytes = 30000 * 95000 * 4
    need = y_bytes + fitting._working_bytes(30000, 16384)
    assert need > fitting.RESIDENT_FRACTION * 24e9
    assert need < fitting.RESIDENT_FRACTION * 139e9


@pytest.mark.parametrize("dual", [False, True])
def test_gram_solver_matches_himalaya_estimators(dual):
    """The one-decomposition-per-fold solver against himalaya's RidgeCV / KernelRidgeCV."""
    from lmbrain.fitting import himalaya_ridge_cv, select_backend, solve_ridge_cv_gram

    rng = np.random.default_rng(7)
    n, p, v = (60, 90, 12) if dual else (120, 20, 12)
    X = rng.standard_normal((n, p)).astype(np.float32)
    W = rng.standard_normal((p, v)) * np.linspace(0.02, 1.0, v)
    Y = (X @ W + rng.standard_normal((n, v)) * 2.0).astype(np.float32)
    folds = fitting.story_folds(np.repeat(np.arange(6), n // 6), 3)
    alphas = np.logspace(-1, 4, 9)
    select_backend("numpy")
    coef, best, cv = solve_ridge_cv_gram(X, Y, folds, alphas, dual=dual, n_targets_batch=5)
    ref_coef, ref_best, ref_cv = himalaya_ridge_cv(X, Y, folds, alphas, dual=dual)
    np.testing.assert_array_equal(best, ref_best)
    np.testing.assert_allclose(cv, ref_cv, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-3, atol=1e-4 * np.abs(ref_coef).max())


@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("decomposition", ["eigh", "cholesky"])
@pytest.mark.parametrize("with_test", [False, True])
def test_refit_by_either_decomposition_equals_per_voxel_closed_form(dual, decomposition, with_test):
    """Each voxel refit with its own selected alpha: weights (or test predictions) equal
    ``(X^T X + a I)^-1 X^T y`` solved voxel by voxel, whichever way the refit decomposes."""
    rng = np.random.default_rng(12)
    n, p, v = (48, 80, 11) if dual else (96, 14, 11)
    X = rng.standard_normal((n, p)).astype(np.float32)
    scale = np.geomspace(0.01, 3.0, v)  # from noise-only to strong voxels: several alphas
    Y = (X @ rng.standard_normal((p, v)) * scale + rng.standard_normal((n, v))).astype(np.float32)
    X_test = rng.standard_normal((7, p)).astype(np.float32) if with_test else None
    folds = fitting.story_folds(np.repeat(np.arange(6), n // 6), 3)
    alphas = np.logspace(-1, 5, 10)
    fitting.select_backend("numpy")
    out, best, _ = fitting.solve_ridge_cv_gram(
        X,
        Y,
        folds,
        alphas,
        dual,
        n_targets_batch=4,
        X_test=X_test,
        refit_decomposition=decomposition,
    )
    assert len(np.unique(best)) >= 3  # the per-alpha grouping is exercised
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    weights = np.column_stack(
        [
            np.linalg.solve(X64.T @ X64 + a * np.eye(p), X64.T @ Y64[:, j])
            for j, a in enumerate(best)
        ]
    )
    want = weights if X_test is None else X_test.astype(np.float64) @ weights
    assert out.dtype == np.float32 and out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_refit_decomposition_choice_and_fallback(monkeypatch):
    """Cholesky for few voxels on a large Gram (the demo), the eigensolver for many voxels (the
    paper's 80,000) or off numpy; a factorisation that fails falls back to the eigensolver."""
    choose = fitting.choose_refit_decomposition
    assert choose(2300, 300, 6) == "cholesky"  # a demo fit: 6 distinct alphas
    assert choose(2300, 300, 13, backend="torch_cuda") == "eigh"
    assert choose(9000, 80000, 10) == "eigh"  # paper scale
    assert choose(9000, 80000, 10, decomposition="cholesky") == "cholesky"
    with pytest.raises(ValueError, match="numpy backend"):
        choose(100, 10, 2, backend="torch_cuda", decomposition="cholesky")
    with pytest.raises(ValueError, match="decomposition"):
        choose(100, 10, 2, decomposition="qr")

    import scipy.linalg

    def fail(*args, **kwargs):
        raise scipy.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(scipy.linalg, "cho_factor", fail)
    rng = np.random.default_rng(13)
    X = rng.normal(size=(40, 25))
    Y = X @ rng.normal(size=(25, 3)) + rng.normal(size=(40, 3))
    want = np.linalg.solve(X.T @ X + 3.0 * np.eye(25), X.T @ Y)
    fitting.select_backend("numpy")
    coef, _, _ = fitting.solve_ridge_cv_gram(
        X, Y, fitting.story_folds(_groups(4, 10), 4), [3.0], False, refit_decomposition="cholesky"
    )
    np.testing.assert_allclose(coef, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("dual", [False, True])
def test_float32_cv_folds_choose_the_same_alphas_and_keep_a_float64_refit(dual, monkeypatch):
    """``cv_precision="float32"`` decomposes only the folds in float32: on a planted problem
    it picks the alphas float64 picks, and the refit (weights) is the same float64 one."""
    import scipy.linalg

    rng = np.random.default_rng(14)
    n, p, v = (60, 90, 16) if dual else (120, 24, 16)
    X = rng.standard_normal((n, p)).astype(np.float32)
    scale = np.geomspace(0.02, 2.0, v)
    Y = (X @ rng.standard_normal((p, v)) * scale + rng.standard_normal((n, v))).astype(np.float32)
    folds = fitting.story_folds(np.repeat(np.arange(6), n // 6), 3)
    alphas = np.logspace(0, 5, 11)
    fitting.select_backend("numpy")
    seen = []
    real_eigh = scipy.linalg.eigh

    def recording_eigh(a, *args, **kwargs):
        seen.append(a.dtype)
        return real_eigh(a, *args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", recording_eigh)
    results = {}
    for precision in ("float64", "float32"):
        seen.clear()
        results[precision] = fitting.solve_ridge_cv_gram(
            X, Y, folds, alphas, dual, cv_precision=precision, refit_decomposition="eigh"
        )
        # three folds, then the refit on all rows: always float64
        want = [np.dtype(precision)] * 3 + [np.dtype(np.float64)]
        assert seen == want
    (c64, a64, s64), (c32, a32, s32) = results["float64"], results["float32"]
    assert len(np.unique(a64)) >= 3
    np.testing.assert_array_equal(a32, a64)
    np.testing.assert_allclose(s32, s64, atol=1e-5)
    np.testing.assert_allclose(c32, c64, rtol=1e-6, atol=1e-7 * np.abs(c64).max())
    with pytest.raises(ValueError, match="cv_precision"):
        fitting.solve_ridge_cv_gram(X, Y, folds, alphas, dual, cv_precision="float16")


# --------------------------------------------------------------------------- selection rule
@pytest.mark.filterwarnings("ignore:Solving ridge is slower")
@pytest.mark.parametrize("n_features", [8, 60])  # primal and dual
def test_alpha_selection_and_cv_r2_match_brute_force(n_features):
    """Alphas follow himalaya's default rule (mean negative MSE over folds); cv_scores is the
    mean validation R^2 at that alpha. Y is deliberately not z-scored, so the rules differ."""
    from himalaya.ridge import RidgeCV

    rng = np.random.default_rng(5)
    n, n_vox = 40, 12
    X = rng.normal(size=(n, n_features))
    Y = X @ rng.normal(size=(n_features, n_vox)) * rng.uniform(0, 1, n_vox)
    Y = Y + rng.normal(size=(n, n_vox)) * rng.uniform(0.5, 3, n_vox) + rng.normal(size=n_vox)
    groups = _groups(4, 10)
    alphas = np.logspace(-1, 4, 8)
    folds = fitting.story_folds(groups, 4)
    neg_mse = np.zeros((len(alphas), n_vox))
    r2 = np.zeros_like(neg_mse)
    for tr, va in folds:
        for i, a in enumerate(alphas):
            w = np.linalg.solve(X[tr].T @ X[tr] + a * np.eye(n_features), X[tr].T @ Y[tr])
            sse = ((Y[va] - X[va] @ w) ** 2).sum(0)
            neg_mse[i] -= sse / len(va) / len(folds)
            r2[i] += (1 - sse / ((Y[va] - Y[va].mean(0)) ** 2).sum(0)) / len(folds)
    best = np.argmax(neg_mse, axis=0)
    fit = fitting.fit_ridge_cv(X, Y, groups, alphas, n_folds=4, backend="numpy")
    np.testing.assert_array_equal(fit.best_alphas, alphas[best])
    np.testing.assert_allclose(fit.cv_scores, r2[best, np.arange(n_vox)], rtol=1e-4, atol=1e-5)
    ref = RidgeCV(alphas=alphas, cv=folds).fit(X.astype(np.float32), Y.astype(np.float32))
    np.testing.assert_allclose(np.asarray(ref.best_alphas_), fit.best_alphas, rtol=1e-5)


def test_targets_batch_and_alpha_checks():
    assert fitting.targets_batch(100, 50, 1000, 4 * 500 * 10) == 10  # 500 floats per voxel
    assert fitting.targets_batch(100, 50, 7, 10**9) == 7
    assert fitting.targets_batch(100, 50, 1000, 1) == 1
    X, Y = np.ones((20, 3)), np.ones((20, 2))
    for bad in ([0.0, 1.0], [-1.0], [np.inf], []):
        with pytest.raises(ValueError, match="alphas"):
            fitting.fit_ridge_cv(X, Y, _groups(4, 5), bad, backend="numpy")


# --------------------------------------------------------------------------- eigensolver, CUDA
@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_both_eigensolver_drivers_match_closed_form(monkeypatch, solver):
    """syevd (within its workspace budget) and syevr (above it) give the same closed-form fit."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(40, 25))
    Y = X @ rng.normal(size=(25, 3)) + rng.normal(size=(40, 3))
    want = np.linalg.solve(X.T @ X + 3.0 * np.eye(25), X.T @ Y)
    for budget in (fitting.EVD_WORKSPACE_MAX, 0):
        monkeypatch.setattr(fitting, "EVD_WORKSPACE_MAX", budget)
        assert fitting._evd_fits(25) == (budget > 0)
        fit = fitting.fit_ridge_cv(X, Y, _groups(4, 10), [3.0], backend="numpy", solver=solver)
        np.testing.assert_allclose(fit.coef, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_cuda_probe_skips_torch_without_a_driver(monkeypatch):
    """Without nvidia-smi or CUDA_VISIBLE_DEVICES, the probe answers no without importing torch."""
    import builtins
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name == "torch":
            raise AssertionError("torch imported")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    assert fitting._cuda_available() is False


# --------------------------------------------------------------- start-up cost (issue 17)
@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_cpu_fit_without_himalaya_matches_the_himalaya_backend(monkeypatch, solver):
    """Before himalaya is imported, a numpy fit runs on fitting's own numpy shim: same numbers
    as on himalaya's numpy backend, and himalaya stays unimported."""
    import sys

    from himalaya.backend import set_backend

    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 12)) if solver == "primal" else rng.normal(size=(20, 50))
    Y = X @ rng.normal(size=(X.shape[1], 6)) + rng.normal(size=(X.shape[0], 6))
    args = (X, Y, _groups(4, X.shape[0] // 4), [0.1, 10.0, 1000.0])
    set_backend("torch" if _has_torch() else "numpy")  # select_backend must switch it back
    ref = fitting.fit_ridge_cv(*args, backend="numpy", solver=solver)
    for name in [m for m in sys.modules if m == "himalaya" or m.startswith("himalaya.")]:
        monkeypatch.delitem(sys.modules, name)
    assert fitting._get_backend() is fitting._NumpyBackend
    fit = fitting.fit_ridge_cv(*args, backend="numpy", solver=solver)
    assert "himalaya" not in sys.modules
    np.testing.assert_array_equal(fit.coef, ref.coef)
    np.testing.assert_array_equal(fit.best_alphas, ref.best_alphas)
    np.testing.assert_array_equal(fit.cv_scores, ref.cv_scores)


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_a_fit_job_imports_no_sklearn_pandas_or_scipy_stats():
    """What a CPU fit job imports (scripts/fit_encoding_model.py's modules, the config check,
    one fit): scikit-learn (via himalaya), pandas and scipy.stats cost ~1.8 s of CPU at the
    start of every fit job of a run, and none is needed there."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import lmbrain.config, lmbrain.datasets, lmbrain.encoding, lmbrain.features\n"
        "import lmbrain.io, lmbrain.models, lmbrain.provenance, lmbrain.scripting\n"
        "from lmbrain.fitting import fit_ridge_cv\n"
        "rng = np.random.default_rng(0)\n"
        "fit_ridge_cv(rng.normal(size=(40, 5)), rng.normal(size=(40, 3)),\n"
        "             np.repeat(list('abcd'), 10), [1.0, 10.0], backend='numpy')\n"
        "print(sorted({'himalaya', 'sklearn', 'pandas', 'scipy.stats'} & set(sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "[]", res.stdout
