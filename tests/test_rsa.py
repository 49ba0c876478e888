"""RSA: RDMs, Spearman comparison and permutation test against scipy, planted structure."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from lmbrain import rsa


def test_rdm_is_correlation_distance():
    x = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_allclose(rsa.rdm(x), pdist(x, "correlation"), atol=1e-12)
    assert rsa.n_stimuli_of(rsa.rdm(x)) == 7


def test_permutation_test_matches_scipy_loop():
    rng = np.random.default_rng(1)
    n = 9
    brain = rsa.rdm(rng.normal(size=(n, 4)))
    model = rsa.rdm(rng.normal(size=(n, 6)))
    model[3] = model[5]  # a tie: average ranks, as scipy
    rho, p = rsa.permutation_test(brain, model, n_permutations=200, seed=5)
    assert rho == pytest.approx(spearmanr(brain, model).statistic, abs=1e-12)
    i, j = np.triu_indices(n, k=1)
    square = np.zeros((n, n))
    square[i, j] = model
    square[j, i] = model
    hits = 0
    for perm in rsa.permutations(n, 200, 5):
        hits += spearmanr(brain, square[perm][:, perm][i, j]).statistic >= rho - 1e-12
    assert p == pytest.approx((1 + hits) / 201)


def clustered(n_per=6, n_clusters=4, dim=30, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    labels = np.repeat(np.arange(n_clusters), n_per)
    return centres[labels] + noise * rng.normal(size=(len(labels), dim)), labels


def test_planted_structure_is_significant_and_unrelated_is_not():
    brain, labels = clustered(seed=0)
    onehot = np.eye(labels.max() + 1)[labels]
    rho, p = rsa.permutation_test(rsa.rdm(brain), rsa.rdm(onehot), 500, seed=1)
    assert rho > 0.3 and p < 0.01
    unrelated = np.random.default_rng(9).normal(size=brain.shape)
    rho_u, p_u = rsa.permutation_test(rsa.rdm(brain), rsa.rdm(unrelated), 500, seed=1)
    assert abs(rho_u) < 0.2 and p_u > 0.05


def test_noise_ceiling_brackets_the_truth():
    """Subjects = shared structure + own noise: lower <= upper; the truth is near them."""
    truth, _ = clustered(noise=0.5, seed=3)
    rng = np.random.default_rng(4)
    subjects = [rsa.rdm(truth + 2.0 * rng.normal(size=truth.shape)) for _ in range(6)]
    lower, upper = rsa.noise_ceiling(subjects)
    assert 0 < lower < upper < 1
    rho_truth = np.mean([rsa.spearman(s, rsa.rdm(truth)) for s in subjects])
    assert lower - 0.1 < rho_truth < upper + 0.05
    # brute force of the definitions
    from scipy.stats import rankdata

    r = np.stack([rankdata(s) for s in subjects])
    want_upper = np.mean([spearmanr(s, r.mean(0)).statistic for s in subjects])
    want_lower = np.mean(
        [spearmanr(s, np.delete(r, k, 0).mean(0)).statistic for k, s in enumerate(subjects)]
    )
    assert upper == pytest.approx(want_upper) and lower == pytest.approx(want_lower)
    assert np.isnan(rsa.noise_ceiling(subjects[:1])[0])


def test_rsa_rows_seeds_do_not_depend_on_other_models():
    brain, labels = clustered(seed=0)
    b = {("s1", "V1"): rsa.rdm(brain)}
    m1 = {("a", 0): rsa.rdm(np.eye(4)[labels])}
    m2 = {**m1, ("b", 1): rsa.rdm(brain + 1)}
    rows1 = rsa.rsa_rows(b, m1, 100, seed=0)
    rows2 = rsa.rsa_rows(b, m2, 100, seed=0)
    assert (rows1[0]["rho"], rows1[0]["p_value"]) == (rows2[0]["rho"], rows2[0]["p_value"])
    assert len(rows2) == 2 and rows2[0]["n_stimuli"] == 24
