"""Representational similarity analysis (Kriegeskorte et al. 2008; Nili et al. 2014).

- An RDM (representational dissimilarity matrix) over ``n`` stimuli holds the correlation
  distance ``1 - pearson(pattern_i, pattern_j)`` of every pair; it is kept as its upper
  triangle (``i < j``, row-major order, the order of ``numpy.triu_indices``).
- A brain RDM comes from one ROI's response patterns to the test images (betas averaged over
  repeats); a model RDM from one layer's features of the same images.
- Two RDMs are compared by the Spearman correlation of their upper triangles.
- Significance: a permutation test that relabels the stimuli of the model RDM (rows and
  columns together), ``p = (1 + #{rho_perm >= rho}) / (1 + n_permutations)``.
- Noise ceiling across subjects (Nili et al. 2014): with rank-transformed subject RDMs, the
  upper bound is the mean Spearman correlation of each subject's RDM with the mean of all
  subjects' RDMs (itself included), the lower bound with the mean of the other subjects'.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

PERMUTATION_CHUNK = 64


def rdm(patterns: np.ndarray) -> np.ndarray:
    """Correlation-distance RDM of the rows of ``patterns``, as its upper triangle.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_features)

    Returns
    -------
    ndarray, shape (n_stimuli * (n_stimuli - 1) / 2,), float64
        NaN for pairs involving a constant row.
    """
    x = np.asarray(patterns, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((x**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x / norm[:, None]
    corr = np.clip(x @ x.T, -1.0, 1.0)
    i, j = np.triu_indices(len(x), k=1)
    return 1.0 - corr[i, j]


def n_stimuli_of(rdm_vector: np.ndarray) -> int:
    """Number of stimuli of an upper-triangle RDM vector."""
    m = len(rdm_vector)
    n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
    if n * (n - 1) // 2 != m:
        raise ValueError(f"{m} is not the length of an RDM's upper triangle")
    return n


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two RDM vectors (average ranks for ties); NaN if undefined."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float(ra @ rb / den) if den > 0 else float("nan")


def permutations(n_stimuli: int, n_permutations: int, seed: int) -> np.ndarray:
    """``(n_permutations, n_stimuli)`` stimulus relabellings from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_stimuli) for _ in range(n_permutations)]).reshape(
        n_permutations, n_stimuli
    )


def _square(vector: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, n))
    i, j = np.triu_indices(n, k=1)
    out[i, j] = vector
    out[j, i] = vector
    return out


def permutation_test(
    brain: np.ndarray, model: np.ndarray, n_permutations: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Spearman correlation of two RDMs and its one-sided permutation p-value.

    Parameters
    ----------
    brain, model : ndarray, shape (n_pairs,)
        Upper triangles of RDMs over the same stimuli.
    n_permutations : int
        Relabellings of the model RDM's stimuli (:func:`permutations` with ``seed``).
    seed : int

    Returns
    -------
    rho : float
    p_value : float
        ``(1 + #{rho_perm >= rho}) / (1 + n_permutations)``; NaN with no permutations or an
        undefined rho.

    Notes
    -----
    Relabelling stimuli permutes the entries of the triangle, so the model's ranks are
    permuted with them: each permuted rho is a Pearson correlation of fixed rank vectors.
    """
    brain, model = np.asarray(brain, float), np.asarray(model, float)
    if brain.shape != model.shape:
        raise ValueError(f"RDMs differ in size: {brain.shape} vs {model.shape}")
    rho = spearman(brain, model)
    if n_permutations < 1 or not np.isfinite(rho):
        return rho, float("nan")
    n = n_stimuli_of(brain)
    rb = rankdata(brain)
    rb = (rb - rb.mean()) / np.sqrt(((rb - rb.mean()) ** 2).sum())
    rm = rankdata(model)
    rm = (rm - rm.mean()) / np.sqrt(((rm - rm.mean()) ** 2).sum())
    square = _square(rm, n)
    i, j = np.triu_indices(n, k=1)
    perms = permutations(n, n_permutations, seed)
    hits = 0
    for lo in range(0, n_permutations, PERMUTATION_CHUNK):
        p = perms[lo : lo + PERMUTATION_CHUNK]
        rhos = square[p[:, i], p[:, j]] @ rb
        hits += int(np.sum(rhos >= rho - 1e-12))
    return rho, (1 + hits) / (1 + n_permutations)


def noise_ceiling(subject_rdms: Sequence[np.ndarray]) -> tuple[float, float]:
    """Lower and upper bound of the RDM noise ceiling across subjects (Nili et al. 2014).

    Parameters
    ----------
    subject_rdms : sequence of ndarray, each shape (n_pairs,)
        One RDM per subject, same stimuli and order.

    Returns
    -------
    lower, upper : float
        Mean over subjects of the Spearman correlation of the subject's RDM with the mean
        rank-transformed RDM of the other subjects (lower; NaN with one subject) and of all
        subjects (upper).
    """
    ranks = np.stack([rankdata(r) for r in subject_rdms])
    n = len(ranks)
    total = ranks.sum(axis=0)
    upper = np.mean([spearman(r, total / n) for r in ranks])
    if n < 2:
        return float("nan"), float(upper)
    lower = np.mean([spearman(r, (total - r) / (n - 1)) for r in ranks])
    return float(lower), float(upper)


def comparison_seed(seed: int, *key) -> int:
    """A seed per comparison (subject, ROI, model, layer), stable when others are added."""
    return int(
        np.random.SeedSequence(
            [int(seed), zlib.crc32("|".join(map(str, key)).encode())]
        ).generate_state(1)[0]
    )


def rsa_rows(
    brain_rdms: Mapping[tuple[str, str], np.ndarray],
    model_rdms: Mapping[tuple[str, int], np.ndarray],
    n_permutations: int,
    seed: int,
) -> list[dict]:
    """Compare every brain RDM with every model RDM, with ROI noise ceilings.

    Parameters
    ----------
    brain_rdms : mapping (subject, roi) -> RDM vector
    model_rdms : mapping (model, layer) -> RDM vector (same stimuli and order)
    n_permutations, seed : int
        Permutation test settings; each comparison gets its own stream
        (:func:`comparison_seed`).

    Returns
    -------
    list of dict
        ``subject roi model layer rho p_value noise_ceiling_lower noise_ceiling_upper
        n_stimuli``.
    """
    rois = sorted({roi for _, roi in brain_rdms})
    ceilings = {}
    for roi in rois:
        subject_rdms = [v for (_, r), v in sorted(brain_rdms.items()) if r == roi]
        ceilings[roi] = noise_ceiling(subject_rdms)
    rows = []
    for (subject, roi), brain in sorted(brain_rdms.items()):
        for (model, layer), feats in sorted(model_rdms.items()):
            s = comparison_seed(seed, subject, roi, model, layer)
            rho, p = permutation_test(brain, feats, n_permutations, s)
            rows.append(
                {
                    "subject": subject,
                    "roi": roi,
                    "model": model,
                    "layer": int(layer),
                    "rho": rho,
                    "p_value": p,
                    "noise_ceiling_lower": ceilings[roi][0],
                    "noise_ceiling_upper": ceilings[roi][1],
                    "n_stimuli": n_stimuli_of(brain),
                }
            )
    return rows
