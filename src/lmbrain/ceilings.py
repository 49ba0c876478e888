"""Noise ceilings from repeated presentations (Schoppe et al. 2016).

Reference: Schoppe O., Harper N. S., Willmore B. D. B., King A. J., Schnupp
J. W. H. (2016). Measuring the performance of neural models. *Frontiers in
Computational Neuroscience* 10:10. doi:10.3389/fncom.2016.00010
(building on Sahani & Linden 2003, "How linear are auditory cortical
responses?").

Model: repeat ``n`` of a voxel's response is ``r_n(t) = s(t) + e_n(t)``, a
signal shared by all ``N`` repeats plus independent noise. With ``var`` the
variance over time:

- total power ``TP = mean_n var(r_n)`` (estimates ``var(s) + var(e)``);
- signal power ``SP = (var(sum_n r_n) - sum_n var(r_n)) / (N (N - 1))``
  (an unbiased estimate of ``var(s)``: the cross terms between repeats
  contain only the shared signal);
- ``CC_max = sqrt(N SP / (TP + (N - 1) SP))``, the highest correlation any
  model can reach with the **mean of the N repeats**. Indeed, with
  ``SP = var(s)`` and ``TP = var(s) + var(e)``, it equals
  ``sqrt(var(s) / (var(s) + var(e) / N)) = corr(s, mean_n r_n)``;
- ``cc_max_single = sqrt(SP / TP)``, the ceiling for a single repeat.

The ``ddof`` of the variances cancels in every ratio; population variances
are used. Voxels with ``SP <= 0`` (no measurable signal), constant voxels and
voxels with non-finite values get NaN.
"""

from __future__ import annotations

import numpy as np

#: Voxels processed at once (bounds the float64 working memory).
VOXEL_CHUNK = 4096


def _check_repeats(repeats: np.ndarray) -> np.ndarray:
    """Validate a (n_repeats, n_trs, n_voxels) array with at least 2 repeats."""
    repeats = np.asarray(repeats)
    if repeats.ndim == 2:
        repeats = repeats[:, :, None]
    if repeats.ndim != 3:
        raise ValueError(f"repeats must be (n_repeats, n_trs, n_voxels), got {repeats.shape}")
    if repeats.shape[0] < 2:
        raise ValueError(f"a noise ceiling needs >= 2 repeats, got {repeats.shape[0]}")
    return repeats


def _powers_chunk(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total and signal power of one voxel chunk (float64)."""
    x = chunk.astype(np.float64)
    n = x.shape[0]
    var_each = x.var(axis=1)  # (n_repeats, n_vox)
    tp = var_each.mean(axis=0)
    # Constant voxels: round-off in the mean can leave a tiny positive variance.
    tp[tp <= (1e-10 * np.abs(x).max(axis=(0, 1))) ** 2] = 0.0
    sp = (x.sum(axis=0).var(axis=0) - var_each.sum(axis=0)) / (n * (n - 1))
    return tp, sp


def power_components(repeats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total power ``TP`` and signal power ``SP`` of each voxel.

    Parameters
    ----------
    repeats : array_like of shape (n_repeats, n_trs, n_voxels)
        Responses to the same stimulus, aligned in time.

    Returns
    -------
    tp, sp : numpy.ndarray of shape (n_voxels,), float64
        Raw estimates (``sp`` may be negative; NaN where the data are not finite).
    """
    repeats = _check_repeats(repeats)
    n_vox = repeats.shape[2]
    tp = np.empty(n_vox)
    sp = np.empty(n_vox)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n_vox, VOXEL_CHUNK):
            sl = slice(start, start + VOXEL_CHUNK)
            tp[sl], sp[sl] = _powers_chunk(repeats[:, :, sl])
    return tp, sp


def _valid(tp: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Voxels with positive, finite signal power and non-zero total power."""
    return np.isfinite(tp) & np.isfinite(sp) & (sp > 0) & (tp > 0)


def signal_power(repeats: np.ndarray) -> np.ndarray:
    """Signal power ``SP`` (Schoppe et al. 2016) of each voxel.

    Parameters
    ----------
    repeats : array_like of shape (n_repeats, n_trs, n_voxels)

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), float64
        ``(var(sum_n r_n) - sum_n var(r_n)) / (N (N - 1))``; NaN where it is
        not positive or the voxel is constant / non-finite.
    """
    tp, sp = power_components(repeats)
    return np.where(_valid(tp, sp), sp, np.nan)


def cc_max(repeats: np.ndarray) -> np.ndarray:
    """Noise ceiling for correlating a model with the mean of the repeats.

    Parameters
    ----------
    repeats : array_like of shape (n_repeats, n_trs, n_voxels)

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), float64
        ``sqrt(N SP / (TP + (N - 1) SP))`` in (0, 1]; NaN where ``SP <= 0``
        or the voxel is constant / non-finite.
    """
    repeats = _check_repeats(repeats)
    n = repeats.shape[0]
    tp, sp = power_components(repeats)
    ok = _valid(tp, sp)
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = np.sqrt(n * sp / (tp + (n - 1) * sp))
    return np.where(ok, np.minimum(cc, 1.0), np.nan)


def cc_max_single(repeats: np.ndarray) -> np.ndarray:
    """Noise ceiling for correlating a model with a single repeat.

    Parameters
    ----------
    repeats : array_like of shape (n_repeats, n_trs, n_voxels)

    Returns
    -------
    numpy.ndarray of shape (n_voxels,), float64
        ``sqrt(SP / TP)`` (capped at 1); NaN where ``SP <= 0`` or the voxel
        is constant / non-finite.
    """
    tp, sp = power_components(repeats)
    ok = _valid(tp, sp)
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = np.sqrt(sp / tp)
    return np.where(ok, np.minimum(cc, 1.0), np.nan)
