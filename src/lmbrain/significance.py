"""Voxel significance of held-out prediction scores: surrogate nulls that keep autocorrelation.

Is a voxel's test correlation ``r`` between its predicted and measured held-out time course
larger than chance? fMRI time courses are autocorrelated (the haemodynamic response lasts
~15-20 s; the predictions, built from delayed and smoothed features, are smoother still), so
shuffling single TRs -- which assumes exchangeable samples -- gives a null distribution of r
that is far too narrow and p-values that are far too small (``tests/test_significance.py``
shows it on AR(1) noise). Two nulls that keep the autocorrelation are offered
(``scoring.significance.method``):

``phase_randomization`` (default)
    The prediction of each voxel is replaced by a surrogate with the same power spectrum
    and random Fourier phases (Theiler et al. 1992, Physica D 58:77; Prichard & Theiler
    1994, Phys. Rev. Lett. 73:951), one phase draw per permutation shared by all voxels.
    Under the null (response independent of prediction, both stationary) the relative
    phase of the two series at each frequency is uniform, so the surrogates give the
    right null distribution of r whatever the autocorrelation of either series. The
    statistic is r on every held-out sample. By Parseval, a surrogate's r is
    ``sum_f c_f Re(conj(Y_f) P_f exp(i phi_f)) / n`` with Y, P the DFTs of the z-scored
    series, so the r of every voxel under every draw is one matrix product
    ``[cos phi, -sin phi] @ [Re S; Im S]`` of (n_permutations, 2F) by (2F, n_voxels).

``block_permutation``
    The held-out samples are cut into consecutive blocks of ``block_trs`` TRs and the
    *responses'* blocks are permuted (the predictions stay in place), which keeps the
    autocorrelation of both series within blocks and breaks their alignment (the
    moving-block idea of Künsch 1989, Ann. Statist. 17:1217, applied to a permutation
    test). The last ``n % block_trs`` samples are left out of the test, observed r
    included. Blocks must be much longer than the correlation length: the covariance
    across block edges is lost, so short blocks are anti-conservative (AR(1) with
    coefficients 0.8/0.9: 9.5% of null voxels below 0.05 with 10-TR blocks, 6.8% with 20).
    With ``B`` blocks, every permutation's r is a sum of block-by-block cross products, so
    all come from one (n_voxels, B, B) array and a matrix product with the permutations'
    one-hot (n_permutations, B*B) selection matrix.

Either way the one-sided p-value is ``(1 + #{r_null >= r_obs}) / (1 + n_permutations)``
(Phipson & Smyth 2010, Stat. Appl. Genet. Mol. Biol. 9:39: never 0, valid for random
draws).

Several outer folds (leave-one-run-out): the reported r is the mean over folds of each
held-out run's r, so the statistic tested is that mean; every fold gets its own draws and
the folds' null r are averaged.

Multiple comparisons: Benjamini & Hochberg (1995, J. R. Stat. Soc. B 57:289) false discovery
rate over the voxels of one fit (one subject), :func:`fdr_bh`.
"""

from __future__ import annotations

import zlib

import numpy as np

from lmbrain.scoring import CONSTANT_RTOL

_CHUNK_ELEMENTS = 8_000_000  # bounds the (permutations x voxels) products held at once
_VOXEL_CHUNK_ELEMENTS = 4_000_000  # held-out samples x voxels transformed at once


def block_cross_products(y: np.ndarray, pred: np.ndarray, block_trs: int) -> np.ndarray:
    """Cross products of z-scored response and prediction blocks, per voxel.

    Parameters
    ----------
    y, pred : ndarray, shape (n_samples, n_voxels)
        Held-out responses and predictions.
    block_trs : int
        Block length in samples; ``n_samples // block_trs`` blocks are used (the trailing
        remainder is left out).

    Returns
    -------
    ndarray, shape (n_voxels, n_blocks, n_blocks)
        ``C[v, i, j] = sum_t yz[block i, t, v] * pz[block j, t, v]`` where yz, pz are the
        columns centred and scaled to unit norm over the used samples, so that the r of the
        permutation sending response block ``perm[j]`` to prediction block ``j`` is
        ``sum_j C[v, perm[j], j]``; the observed r is the trace. NaN for a voxel whose
        response or prediction is constant or not finite.
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.shape != pred.shape or y.ndim != 2:
        raise ValueError(f"y {y.shape} and pred {pred.shape} must be the same 2-D shape")
    n_blocks = y.shape[0] // int(block_trs)
    if n_blocks < 2:
        raise ValueError(
            f"{y.shape[0]} held-out samples make {n_blocks} block(s) of {block_trs}; "
            "a block permutation needs at least 2 (lower scoring.significance.block_trs)"
        )
    n = n_blocks * int(block_trs)
    yz, bad_y = _unit_columns(y[:n])
    pz, bad_p = _unit_columns(pred[:n])
    shape = (n_blocks, int(block_trs), y.shape[1])
    cross = np.einsum("itv,jtv->vij", yz.reshape(shape), pz.reshape(shape), optimize=True)
    cross[bad_y | bad_p] = np.nan
    return cross


def _unit_columns(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit norm (0 where constant), and the bad-column mask."""
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = a - a.mean(axis=0)
        norm = np.sqrt(np.sum(centred**2, axis=0))
        maxabs = np.max(np.abs(a), axis=0)
        bad = ~np.isfinite(norm) | (norm <= CONSTANT_RTOL * maxabs * np.sqrt(a.shape[0]))
        out = np.where(bad, 0.0, centred / np.where(bad, 1.0, norm))
    return out, bad


def block_permutations(n_blocks: int, n_permutations: int, rng: np.random.Generator):
    """``n_permutations`` random permutations of ``range(n_blocks)``, one per row (int64)."""
    return np.argsort(rng.random((int(n_permutations), int(n_blocks))), axis=1)


def null_correlations(cross: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """r of every voxel under every block permutation.

    Parameters
    ----------
    cross : ndarray, shape (n_voxels, B, B)
        From :func:`block_cross_products`.
    perms : ndarray of int, shape (n_permutations, B)
        Row ``k`` sends response block ``perms[k, j]`` to prediction block ``j``.

    Returns
    -------
    ndarray, shape (n_permutations, n_voxels)
        ``sum_j cross[v, perms[k, j], j]``: the one-hot selection matrix (n_permutations,
        B*B) times the flattened cross products (B*B, n_voxels). With many blocks
        (B > 64, where the selection matrix would be mostly zeros) the same sums are
        gathered directly.
    """
    n_vox, n_blocks, _ = cross.shape
    if n_blocks > 64:
        cols = np.arange(n_blocks)
        return np.stack([cross[:, row, cols].sum(axis=1) for row in perms])
    flat = cross.reshape(n_vox, n_blocks * n_blocks).T  # (B*B, V), index i*B + j
    select = np.zeros((perms.shape[0], n_blocks * n_blocks))
    np.put_along_axis(select, perms * n_blocks + np.arange(n_blocks), 1.0, axis=1)
    return select @ flat


def cross_spectra(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Weighted cross spectra of z-scored responses and predictions, stacked real over imag.

    Parameters
    ----------
    y, pred : ndarray, shape (n_samples, n_voxels)

    Returns
    -------
    ndarray, shape (2F, n_voxels), F = n_samples // 2 + 1
        ``[c Re S / n; c Im S / n]`` with ``S_f = conj(Y_f) P_f`` (real DFTs of the columns
        centred and scaled to unit norm) and ``c_f = 2`` except at 0 and the Nyquist
        frequency (1), so that the r of the prediction with its phases turned by ``phi``
        is ``[cos phi, -sin phi] @ result`` (the observed r: ``phi = 0``). NaN columns
        where a series is constant or not finite.
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.shape != pred.shape or y.ndim != 2:
        raise ValueError(f"y {y.shape} and pred {pred.shape} must be the same 2-D shape")
    n = y.shape[0]
    if n < 3:
        raise ValueError(f"{n} held-out samples are too few for a surrogate test")
    yz, bad_y = _unit_columns(y)
    pz, bad_p = _unit_columns(pred)
    spectrum = np.conj(np.fft.rfft(yz, axis=0)) * np.fft.rfft(pz, axis=0)
    weights = np.full(spectrum.shape[0], 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    stacked = np.vstack([spectrum.real, spectrum.imag]) * np.tile(weights, 2)[:, None] / n
    stacked[:, bad_y | bad_p] = np.nan
    return stacked


def random_phases(n_samples: int, n_permutations: int, rng: np.random.Generator):
    """Phase draws (n_permutations, F) for real series of ``n_samples``.

    Uniform on [0, 2 pi) except at frequency 0 (0: the mean is removed anyway) and, for an
    even length, at the Nyquist frequency (0 or pi: its coefficient is real).
    """
    n_freq = int(n_samples) // 2 + 1
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(int(n_permutations), n_freq))
    phases[:, 0] = 0.0
    if int(n_samples) % 2 == 0:
        phases[:, -1] = np.pi * rng.integers(0, 2, size=int(n_permutations))
    return phases


def surrogate_correlations(spectra: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """r of every voxel with every phase-randomised prediction: (n_permutations, n_voxels)."""
    return np.hstack([np.cos(phases), -np.sin(phases)]) @ spectra


METHODS = ("phase_randomization", "block_permutation")


def permutation_pvalues(
    folds: list[tuple[np.ndarray, np.ndarray]],
    method: str = "phase_randomization",
    n_permutations: int = 1000,
    block_trs: int = 10,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided surrogate p-values of the held-out r of every voxel.

    Parameters
    ----------
    folds : list of (y, pred)
        Per outer fold, the held-out responses and predictions, each (n_samples, n_voxels)
        with the same voxels. The statistic is the mean over folds of the folds' r.
    method : {"phase_randomization", "block_permutation"}
        The null (module docstring).
    n_permutations : int
        Random draws (per fold, independent across folds).
    block_trs : int
        Block length in samples (TRs), ``block_permutation`` only.
    rng : numpy.random.Generator, optional
        Default ``default_rng(0)``.

    Returns
    -------
    p : ndarray, shape (n_voxels,)
        ``(1 + #{null >= observed}) / (1 + n_permutations)``; NaN where r is undefined.
    observed : ndarray, shape (n_voxels,)
        The statistic tested (the mean over folds of r; with block permutation, r over the
        samples covered by whole blocks).
    """
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if method not in METHODS:
        raise ValueError(f"unknown significance method {method!r}; use one of {METHODS}")
    rng = np.random.default_rng(0) if rng is None else rng
    n_perm = int(n_permutations)
    lengths = [np.shape(y)[0] for y, _ in folds]
    if method == "phase_randomization":
        draws = [random_phases(n, n_perm, rng) for n in lengths]
    else:
        draws = [block_permutations(n // int(block_trs), n_perm, rng) for n in lengths]
    n_vox = np.shape(folds[0][0])[1]
    p = np.full(n_vox, np.nan)
    observed = np.full(n_vox, np.nan)
    per_voxel = sum(lengths)  # elements held per voxel: the series, or the block products
    if method == "block_permutation":
        per_voxel = max(per_voxel, sum((n // int(block_trs)) ** 2 for n in lengths))
    step = max(1, _VOXEL_CHUNK_ELEMENTS // max(per_voxel, 1))
    for a in range(0, n_vox, step):
        cols = slice(a, min(a + step, n_vox))
        sub = [(np.asarray(y)[:, cols], np.asarray(pred)[:, cols]) for y, pred in folds]
        p[cols], observed[cols] = _pvalues(sub, method, draws, int(block_trs))
    return p, observed


def _pvalues(folds, method, draws, block_trs):
    """p-values and observed statistic of one chunk of voxels, given every fold's draws."""
    if method == "phase_randomization":
        parts = [cross_spectra(y, pred) for y, pred in folds]
        observed = np.mean([a[: a.shape[0] // 2].sum(axis=0) for a in parts], axis=0)
        null_of = surrogate_correlations
    else:
        parts = [block_cross_products(y, pred, block_trs) for y, pred in folds]
        observed = np.mean([np.trace(c, axis1=1, axis2=2) for c in parts], axis=0)
        null_of = null_correlations
    n_perm = draws[0].shape[0]
    exceed = np.zeros(observed.size)
    chunk = max(1, _CHUNK_ELEMENTS // max(observed.size, 1))
    for start in range(0, n_perm, chunk):
        stop = min(start + chunk, n_perm)
        null = sum(null_of(a, d[start:stop]) for a, d in zip(parts, draws, strict=True))
        # the tolerance counts a draw that reproduces the observed r (identity) as >=
        exceed += np.sum(null / len(parts) >= observed - 1e-12, axis=0)
    p = (1.0 + exceed) / (1.0 + n_perm)
    p[~np.isfinite(observed)] = np.nan
    return p, observed


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), ignoring NaN.

    ``q_(i) = min_{k >= i} min(1, m p_(k) / k)`` over the m finite p-values sorted
    ascending; a voxel is significant at FDR level alpha when ``q <= alpha`` (the BH
    step-up rule). NaN p stay NaN and do not count in m.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    m = int(finite.sum())
    if m == 0:
        return q
    values = p[finite]
    order = np.argsort(values, kind="mergesort")
    scaled = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    q[finite] = out
    return q


def voxel_significance(
    folds: list[tuple[np.ndarray, np.ndarray]],
    settings: dict,
    seed: int,
    key: str,
) -> tuple[dict[str, np.ndarray], dict]:
    """p, q per voxel and the significance summary of one fit.

    Parameters
    ----------
    folds : list of (y, pred)
        Held-out responses and predictions of each outer fold.
    settings : dict
        The config's ``scoring.significance``: ``method``, ``n_permutations`` (0 turns the
        test off: p and q are NaN), ``block_trs`` (block permutation), ``alpha``.
    seed : int
        The config's seed; the stream is ``default_rng([seed, crc32(key)])``.
    key : str
        Names the fit (subject, model, layer, fraction) so every fit has its own stream.

    Returns
    -------
    arrays : dict
        ``p`` and ``q`` (float32, per voxel).
    row : dict
        ``n_voxels_significant`` (q < alpha; None when the test is off),
        ``significance_alpha``, ``n_permutations``, ``perm_block_trs`` (None unless block
        permutation), ``significance_method``.
    """
    n_perm = int(settings.get("n_permutations", 1000))
    method = str(settings.get("method", "phase_randomization"))
    block = int(settings.get("block_trs", 10))
    alpha = float(settings.get("alpha", 0.05))
    n_vox = folds[0][0].shape[1]
    if n_perm > 0:
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
        p, _ = permutation_pvalues(folds, method, n_perm, block, rng)
        q = fdr_bh(p)
        n_sig = int(np.sum(q < alpha))
    else:
        p = q = np.full(n_vox, np.nan)
        n_sig = None
    row = {
        "n_voxels_significant": n_sig,
        "significance_alpha": alpha,
        "n_permutations": n_perm,
        "perm_block_trs": block if method == "block_permutation" else None,
        "significance_method": method if n_perm > 0 else "none",
    }
    return {"p": p.astype(np.float32), "q": q.astype(np.float32)}, row
