"""Stacked regression against brute force, planted mixing weights and a closed form."""

from itertools import product

import numpy as np
import pytest

from lmbrain.stacking import (
    error_matrices,
    fit_stacked_ridge_cv,
    out_of_fold_predictions,
    simplex_weights,
    stack_predictions,
)


def _simplex_grid(k: int, steps: int) -> np.ndarray:
    """Every point of the simplex whose coordinates are multiples of 1 / steps."""
    pts = [c for c in product(range(steps + 1), repeat=k - 1) if sum(c) <= steps]
    grid = np.array([[*c, steps - sum(c)] for c in pts], dtype=np.float64)
    return grid / steps


def _random_psd(rng, n_vox: int, k: int) -> np.ndarray:
    A = rng.normal(size=(n_vox, k + 2, k)) * rng.uniform(0.2, 2.0, size=(n_vox, 1, k))
    return np.einsum("vti,vtj->vij", A, A) / (k + 2)


@pytest.mark.parametrize("k, steps", [(2, 2000), (3, 200)])
def test_simplex_weights_match_brute_force_grid(k, steps):
    rng = np.random.default_rng(k)
    P = _random_psd(rng, 40, k)
    P[0] = np.diag(np.arange(1.0, k + 1))  # an interior optimum: w proportional to 1 / P_ii
    w = simplex_weights(P)
    assert w.shape == (k, 40)
    np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-12)
    assert (w >= 0).all()
    grid = _simplex_grid(k, steps)
    obj_grid = np.einsum("gi,vij,gj->vg", grid, P, grid)
    obj = np.einsum("iv,vij,jv->v", w, P, w)
    # exact optimum: never worse than any grid point, and within the grid's resolution
    assert np.all(obj <= obj_grid.min(1) + 1e-12)
    np.testing.assert_allclose(w.T, grid[obj_grid.argmin(1)], atol=2.5 / steps + 0.02)
    inv = 1.0 / np.arange(1.0, k + 1)
    np.testing.assert_allclose(w[:, 0], inv / inv.sum(), atol=1e-8)


def test_simplex_weights_corner_singular_and_invalid():
    # space 1 alone is best and mixing cannot help: all weight on it
    P = np.array([[[4.0, 1.0], [1.0, 1.0]]])
    np.testing.assert_allclose(simplex_weights(P)[:, 0], [0.0, 1.0])
    # identical predictions (singular P): still a valid point of the simplex
    w = simplex_weights(np.ones((1, 3, 3)))
    np.testing.assert_allclose(w.sum(0), 1.0)
    assert (w >= 0).all()
    # a voxel with a non-finite matrix gets NaN weights, the others are unaffected
    P2 = np.stack([np.eye(2), np.full((2, 2), np.nan)])
    w2 = simplex_weights(P2)
    np.testing.assert_allclose(w2[:, 0], [0.5, 0.5])
    assert np.isnan(w2[:, 1]).all()
    with pytest.raises(ValueError, match="shape"):
        simplex_weights(np.zeros((3, 2, 3)))


def test_planted_convex_mix_of_predictions_is_recovered():
    """y = w p_A + (1 - w) p_B + noise per voxel: the stacking weights are w."""
    rng = np.random.default_rng(0)
    n, planted = 4000, np.array([1.0, 0.8, 0.5, 0.3, 0.0])
    pa = rng.normal(size=(n, planted.size))
    pb = rng.normal(size=(n, planted.size))
    y = planted * pa + (1 - planted) * pb + 0.5 * rng.normal(size=(n, planted.size))
    w = simplex_weights(error_matrices(y, np.stack([pa, pb])))
    np.testing.assert_allclose(w[0], planted, atol=0.03)
    np.testing.assert_allclose(w[1], 1 - planted, atol=0.03)
    stacked = stack_predictions(w, np.stack([pa, pb]))
    np.testing.assert_allclose(stacked, w[0] * pa + w[1] * pb)


def _planted_spaces(seed=0, n_stories=8, per_story=100, noise=0.6):
    """Two independent feature spaces; voxel v is w_v (A's signal) + (1 - w_v) (B's)."""
    rng = np.random.default_rng(seed)
    n = n_stories * per_story
    mix = np.array([1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    Xa = rng.normal(size=(n, 10)).astype(np.float32)
    Xb = rng.normal(size=(n, 15)).astype(np.float32)
    sa = Xa @ (rng.normal(size=(10, mix.size)) / np.sqrt(10))
    sb = Xb @ (rng.normal(size=(15, mix.size)) / np.sqrt(15))
    sa, sb = sa / sa.std(0), sb / sb.std(0)  # unit-variance parts (the closed form below)
    Y = mix * sa + (1 - mix) * sb + noise * rng.normal(size=(n, mix.size))
    return Xa, Xb, Y.astype(np.float32), np.repeat(np.arange(n_stories), per_story), mix


def test_stacked_ridge_weights_follow_the_planted_mix():
    """Each space's model alone predicts its part, m p_A or (1 - m) p_B; the convex weight
    minimising |m p_A (1 - a) + (1 - m) p_B (1 - (1 - a))|^2 for independent unit-variance
    parts is a = m^2 / (m^2 + (1 - m)^2): 1 for a voxel driven by A only, 0 for B only."""
    from lmbrain.scoring import pearson_r

    Xa, Xb, Y, groups, mix = _planted_spaces()
    train, test = groups < 7, groups == 7
    fit = fit_stacked_ridge_cv(
        [Xa[train], Xb[train]],
        Y[train],
        groups[train],
        np.logspace(-1, 4, 6),
        space_names=["text", "audio"],
        n_folds=4,
        backend="numpy",
    )
    expected = mix**2 / (mix**2 + (1 - mix) ** 2)
    np.testing.assert_allclose(fit.weights[0], expected, atol=0.08)
    assert np.all(fit.weights[0, :2] > 0.95) and np.all(fit.weights[1, -2:] > 0.95)
    np.testing.assert_allclose(fit.weights.sum(0), 1.0, atol=1e-9)
    # the stacked CV error is never above the best single space's (a corner of the simplex)
    assert np.all(fit.cv_mse[-1] <= fit.cv_mse[:-1].min(0) + 1e-9)
    # on held-out data the joint model beats each space alone where both contribute
    split = fit.predict_split([Xa[test], Xb[test]])
    r_joint = pearson_r(Y[test], fit.predict([Xa[test], Xb[test]]))
    r_single = np.stack([pearson_r(Y[test], p) for p in split])
    assert np.all(r_joint >= r_single.max(0) - 0.01)
    assert r_joint[3] > r_single.max(0)[3] + 0.1  # the 50/50 voxel: each space has half


def test_out_of_fold_predictions_never_see_their_story():
    """Replacing one story's responses by large noise leaves its own out-of-fold
    predictions unchanged (they come from models fitted without it), and changes the
    others' (whose models it is part of)."""
    Xa, _, Y, groups, _ = _planted_spaces(n_stories=6)
    alphas = np.logspace(-1, 3, 3)
    base = out_of_fold_predictions(Xa, Y, groups, alphas, n_folds=6, backend="numpy")
    Y2 = Y.copy()
    Y2[groups == 2] = 100.0 * np.random.default_rng(5).normal(size=Y2[groups == 2].shape)
    moved = out_of_fold_predictions(Xa, Y2, groups, alphas, n_folds=6, backend="numpy")
    np.testing.assert_allclose(moved[groups == 2], base[groups == 2], rtol=1e-4, atol=1e-5)
    assert not np.allclose(moved[groups != 2], base[groups != 2])


def test_fold_by_fold_error_matrices_equal_those_of_the_out_of_fold_predictions():
    from lmbrain.stacking import cv_error_matrices

    Xa, Xb, Y, groups, _ = _planted_spaces(n_stories=5, per_story=40)
    alphas = np.logspace(-1, 3, 3)
    kw = dict(n_folds=5, backend="numpy")
    oof = np.stack([out_of_fold_predictions(X, Y, groups, alphas, **kw) for X in (Xa, Xb)])
    P = cv_error_matrices([Xa, Xb], Y, groups, alphas, **kw)
    np.testing.assert_allclose(P, error_matrices(Y, oof), rtol=1e-5)


def test_bad_inputs():
    Xa, Xb, Y, groups, _ = _planted_spaces(n_stories=3, per_story=20)
    with pytest.raises(ValueError, match="at least two"):
        fit_stacked_ridge_cv([Xa], Y, groups, [1.0], backend="numpy")
    with pytest.raises(ValueError, match="one row per response"):
        fit_stacked_ridge_cv([Xa, Xb[:-1]], Y, groups, [1.0], backend="numpy")
    two = groups < 2  # 2 stories: each outer fold leaves one story, no inner CV possible
    with pytest.raises(ValueError, match=">= 2 training stories"):
        fit_stacked_ridge_cv([Xa[two], Xb[two]], Y[two], groups[two], [1.0], backend="numpy")


def _stacking_config(spaces, name="text+audio"):
    return {
        "datasets": {"d": {"simulate": {}}},
        "models": [{"model": "gpt2", "name": "m"}, {"model": "gpt2", "name": "k"}],
        "stacking": [{"name": name, "spaces": spaces}],
    }


@pytest.mark.parametrize(
    ("cfg", "key", "problem"),
    [
        (
            _stacking_config([{"model": "m", "layer": 1}, {"model": "x", "layer": 1}]),
            "stacking.0.spaces.1.model",
            "not a model id",
        ),
        (
            _stacking_config([{"model": "m", "layer": 1}, {"model": "m", "layer": 2}]),
            "stacking.0.spaces",
            "repeat",
        ),
        (
            _stacking_config(
                [{"model": "m", "layer": 1, "name": "stacked"}, {"model": "k", "layer": 1}]
            ),
            "stacking.0.spaces.0",
            "reserved",
        ),
        (
            _stacking_config([{"model": "m", "layer": 1}, {"model": "k", "layer": 1}], name=".."),
            "stacking.0.name",
            "",
        ),
        (
            _stacking_config(
                [{"model": "m", "layer": 1}, {"model": "k", "layer": 1, "name": "a/b"}]
            ),
            "stacking.0.spaces.1.name",
            "",
        ),
        (_stacking_config([{"model": "m", "layer": 1}]), "stacking.0.spaces", ""),
    ],
)
def test_config_checks_name_the_key(cfg, key, problem):
    from lmbrain.config import validate_config
    from lmbrain.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == key
    assert problem in info.value.problem


def test_config_accepts_a_stacked_model_and_defaults_to_none():
    from lmbrain.config import validate_config

    ok = validate_config(
        _stacking_config([{"model": "m", "layer": 1}, {"model": "k", "layer": -1, "name": "b"}])
    )
    assert ok["stacking"][0]["spaces"][1]["name"] == "b"
    assert (
        validate_config({"datasets": {"d": {"simulate": {}}}, "models": [{"model": "gpt2"}]})[
            "stacking"
        ]
        == []
    )


def test_summary_rows_and_subject_means():
    from lmbrain.stacking import stacking_summary

    def vox(shift):
        return {
            "weights": np.array([[1.0, 0.5, 0.0, 0.2], [0.0, 0.5, 1.0, 0.8]]),
            "r_stacked": np.array([0.4, 0.5, 0.3, np.nan]) + shift,
            "r2": np.array([0.1, 0.2, 0.05, np.nan]),
            "r_text": np.array([0.4, 0.3, 0.1, np.nan]) + shift,
            "r_audio": np.array([0.1, 0.2, 0.3, np.nan]) + shift,
            "spaces": np.array(["text", "audio"]),
            "hemisphere": np.array(["L", "L", "R", "R"]),
            "n_train_stories": np.int64(9),
            "n_test_stories": np.int64(1),
        }

    table = stacking_summary({("s1", "t+a"): vox(0.0), ("s2", "t+a"): vox(0.1)})
    one = table.set_index(["subject", "space", "hemisphere"])
    np.testing.assert_allclose(one.loc[("s1", "text", "all"), "mean_r_stacked"], 0.4)
    np.testing.assert_allclose(one.loc[("s1", "text", "L"), "mean_r_space"], 0.35)
    np.testing.assert_allclose(one.loc[("s1", "audio", "R"), "mean_weight"], 0.9)
    np.testing.assert_allclose(one.loc[("s1", "audio", "all"), "mean_weight"], 0.575)
    np.testing.assert_allclose(one.loc[("s1", "text", "all"), "frac_voxels_stacked_better"], 0.5)
    mean = one.loc[("mean", "text", "all")]
    np.testing.assert_allclose(mean["mean_r_stacked"], 0.45)
    assert mean["n_subjects"] == 2 and mean["n_voxels"] == 8 and mean["n_train_stories"] == 9
    assert len(table) == 3 * 2 * 3  # (s1, s2, mean) x spaces x hemispheres


def test_plot_stacking_writes_a_png(tmp_path):
    import pandas as pd

    from lmbrain.plotting import plot_stacking
    from lmbrain.stacking import SUMMARY_COLUMNS

    plot_stacking(pd.DataFrame(columns=list(SUMMARY_COLUMNS)), tmp_path / "empty.png")
    rows = [
        {"subject": "mean", "name": "t+a", "space": s, "hemisphere": h, "n_subjects": 2}
        | {"mean_r_stacked": 0.3, "mean_r_space": 0.2, "mean_weight": 0.5}
        | {"frac_voxels_stacked_better": 0.7}
        for s in ("text", "audio")
        for h in ("all", "L", "R")
    ]
    plot_stacking(pd.DataFrame(rows), tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_workflow_dry_run_has_the_stacking_jobs(tmp_path):
    """`snakemake -n`: one fit job per (subject, stacked model) and one summary, when
    configured; none otherwise."""
    import yaml
    from test_workflow import run_snakemake

    from lmbrain.testing import job_counts

    config = {
        "datasets": {"sim": {"simulate": {"seed": 0, "n_subjects": 2, "voxels_per_hemisphere": 4}}},
        "models": [
            {"name": "rv", "baseline": "random_vectors", "width": 8},
            {"name": "re", "baseline": "random_word_embeddings", "width": 8},
        ],
        "train_fractions": [1.0],
    }
    counts = {}
    for stacking in ([], [{"name": "rv+re", "spaces": [{"model": "rv", "layer": 0}]}]):
        if stacking:
            ids = [m["name"] for m in config["models"]]
            stacking[0]["spaces"].append({"model": ids[1], "layer": -1})
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "stacking": stacking}))
        res = run_snakemake(tmp_path, "-n")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        got = job_counts(res.stdout + res.stderr)
        counts[bool(stacking)] = (got.get("fit_stacking", 0), got.get("summarize_stacking", 0))
    assert counts == {False: (0, 0), True: (2, 1)}
