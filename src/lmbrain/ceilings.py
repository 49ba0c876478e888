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


# -- Inter-subject noise ceiling -------------------------------------------------------------
# Without repeats, the signal shared by subjects stands in for the stimulus-driven signal.
# Model: subject i's response is ``x_i(t) = s(t) + e_i(t)``, with ``var(s) = 1`` and noise of
# variance ``v`` independent across subjects. The mean of a group of ``m`` subjects has
# reliability ``rho_m = 1 / (1 + v / m)`` (its squared correlation with ``s``), and two
# disjoint groups of ``k`` subjects correlate at ``rho_k``. The Spearman-Brown formula
# ``rho_m = m rho_1 / (1 + (m - 1) rho_1)`` links the group sizes. From the split-half
# correlation of two halves of ``k`` subjects we get ``rho_1`` (inverse Spearman-Brown), and the
# ceiling of a model predicting the mean of ``m`` subjects is ``sqrt(rho_m)`` (m = 1 for one
# subject, m = N for the average subject): the same quantity as ``cc_max`` from repeats, the
# correlation of the target with the shared signal. It assumes every subject has the same
# noise level and shares the whole stimulus-driven signal (so idiosyncratic stimulus-driven
# responses count as noise: a conservative ceiling for single subjects).


def spearman_brown(rho: np.ndarray, factor: float) -> np.ndarray:
    """Reliability of a mean over ``factor`` times as many subjects: ``f r / (1 + (f - 1) r)``."""
    rho = np.asarray(rho, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return factor * rho / (1.0 + (factor - 1.0) * rho)


def _columnwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


def split_half_r(data: np.ndarray, n_splits: int, seed: int) -> tuple[np.ndarray, int]:
    """Mean correlation of two random halves' average time courses, per voxel.

    Parameters
    ----------
    data : array_like of shape (n_subjects, n_trs, n_voxels)
        At least 2 subjects; with an odd count one subject is left out of each split.
    n_splits : int
        Random splits averaged.
    seed : int

    Returns
    -------
    r : numpy.ndarray of shape (n_voxels,)
        Mean over splits of ``corr(mean(half A), mean(half B))``.
    half : int
        Subjects per half.
    """
    data = np.asarray(data, dtype=np.float64)
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"an inter-subject ceiling needs >= 2 subjects, got {n}")
    half = n // 2
    rng = np.random.default_rng(seed)
    total = np.zeros(data.shape[2])
    for _ in range(n_splits):
        order = rng.permutation(n)
        a = data[order[:half]].mean(axis=0)
        b = data[order[half : 2 * half]].mean(axis=0)
        total += _columnwise_r(a, b)
    return total / n_splits, half


def isc_ceiling(
    data: np.ndarray, group_size: int = 1, n_splits: int = 20, seed: int = 0
) -> np.ndarray:
    """Noise ceiling from the inter-subject correlation (split halves, Spearman-Brown).

    Parameters
    ----------
    data : array_like of shape (n_subjects, n_trs, n_voxels)
        Responses of several subjects to the same stimulus (trimmed, aligned in time).
    group_size : int
        Subjects averaged in the target the model predicts: 1 for a single subject,
        ``n_subjects`` for the average subject.
    n_splits : int
        Random half splits averaged.
    seed : int

    Returns
    -------
    numpy.ndarray of shape (n_voxels,)
        ``sqrt(rho_m)``, the correlation of the target with the shared signal (see the
        comment above); NaN where the split-half correlation is not positive.
    """
    r_half, half = split_half_r(data, n_splits, seed)
    rho1 = spearman_brown(r_half, 1.0 / half)
    rho = spearman_brown(rho1, float(group_size))
    ok = np.isfinite(rho) & (r_half > 0)
    return np.where(ok, np.sqrt(np.clip(rho, 0.0, 1.0)), np.nan)


def subject_ceiling(
    dataset,
    subject: str,
    stories: list[str],
    *,
    method: str = "auto",
    n_splits: int = 20,
    seed: int = 0,
    log=None,
) -> tuple[np.ndarray, str]:
    """The noise ceiling of one subject on ``stories``: from repeats, or between subjects.

    Parameters
    ----------
    dataset : dataset adapter
    subject : str
    stories : list of str
        Stories the subject is scored on (trimmed TRs concatenated).
    method : {"auto", "repeats", "isc", "none"}
        ``auto``: repeats where every story has them, else the inter-subject ceiling where the
        adapter pools subjects (``group_responses``) and at least 4 subjects heard each story,
        else none.
    n_splits, seed : int
        Of the inter-subject ceiling.
    log : logging.Logger, optional

    Returns
    -------
    cc_max : numpy.ndarray of shape (n_voxels,)
        NaN everywhere when no ceiling can be computed.
    source : str
        ``repeats``, ``isc`` or ``none``.
    """
    from lmbrain.datasets.base import AVERAGE_SUBJECT
    from lmbrain.temporal import trim

    n_vox = len(dataset.voxels(subject)["hemisphere"])
    none = np.full(n_vox, np.nan)
    t0, t1 = dataset.trim_start, dataset.trim_end
    if method in ("auto", "repeats"):
        reps = [dataset.repeats(subject, s) for s in stories]
        if reps and all(r is not None for r in reps) and len({r.shape[0] for r in reps}) == 1:
            stacked = [np.stack([trim(x, t0, t1) for x in r]) for r in reps]
            return cc_max(np.concatenate(stacked, axis=1)), "repeats"
        if method == "repeats":
            if log:
                log.warning("%s lacks repeats of %s: no noise ceiling", subject, stories)
            return none, "none"
    if method in ("auto", "isc") and hasattr(dataset, "group_responses"):
        members = [s for s in dataset.subjects if s != AVERAGE_SUBJECT]
        averaged = getattr(dataset, "average_of", None)
        rho1, rho_target, weights = [], [], []
        for story in stories:
            group = np.stack([trim(x, t0, t1) for x in dataset.group_responses(story, members)])
            if group.shape[0] < 4:
                rho1 = []
                if log:
                    log.warning("%s: %d subjects, too few for an ISC ceiling", story, len(group))
                break
            r_half, half = split_half_r(group, n_splits, seed)
            story_rho1 = spearman_brown(r_half, 1.0 / half)
            # the average subject of a story is the mean of the subjects who heard it
            m = (len(averaged) if averaged else group.shape[0]) if subject == AVERAGE_SUBJECT else 1
            rho1.append(story_rho1 * group.shape[1])
            rho_target.append(spearman_brown(story_rho1, float(m)) * group.shape[1])
            weights.append(group.shape[1])
        if rho1:
            # TR-weighted means over stories of the single-subject and the target reliability
            rho = np.sum(rho1, axis=0) / np.sum(weights)
            rho_m = np.sum(rho_target, axis=0) / np.sum(weights)
            ok = np.isfinite(rho_m) & (rho > 0)
            return np.where(ok, np.sqrt(np.clip(rho_m, 0.0, 1.0)), np.nan), "isc"
    if log:
        log.warning("%s: no repeats and no inter-subject ceiling: cc_max is NaN", subject)
    return none, "none"


def ceiling_stories(dataset, subject: str, cv: str = "test_stories") -> list[str]:
    """Stories a subject is scored on under ``fitting.cv`` (those its ceiling covers)."""
    own = getattr(dataset, "subject_stories", None)
    own = list(own(subject)) if own is not None else list(dataset.stories)
    if cv == "test_stories":
        return [s for s in dataset.test_stories if s in own]
    return own
