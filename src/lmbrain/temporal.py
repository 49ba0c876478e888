"""The temporal model: from word-rate features to TR-rate regressors.

Language-model features live at the rate of words (one vector per word, at the
word's onset time); fMRI responses live at the rate of volumes (one sample per
TR). An encoding model needs both on the same clock, and it needs to account
for the slow, delayed haemodynamic response. This module does both, in the
small, explicit steps of the Huth-lab pipeline (see also the
``voxelwise_tutorials`` package):

1. **Resample** the word features to the TR times with a Lanczos (windowed
   sinc) low-pass filter, :func:`lanczos_downsample`. Each TR receives the
   kernel-weighted *sum* of the words around it, low-passed at the Nyquist
   rate of the fMRI sampling.
2. **Trim** the first and last TRs of each story, :func:`trim` (the scanner
   warm-up and the silence after the story).
3. **Z-score** each feature within the story, :func:`zscore`. This is done
   per story and *before* delaying (Huth-lab convention), so that stories with
   different word rates contribute on the same scale.
4. **Delay** the features by a few TRs with a finite impulse response (FIR)
   model, :func:`make_delayed`: the ridge regression then learns one weight
   per feature and delay, i.e. a voxel-specific haemodynamic response.

:func:`build_design` chains the four steps for one story.

An alternative to steps 1 and 4 is a fixed canonical haemodynamic response
(Glover 1999): :func:`hrf_regressors` convolves the words -- unit impulses at their
midpoints, or boxcars from onset to offset (``temporal.hrf_events``) -- with
:func:`glover_hrf` (nilearn's) and samples the result at the TR times (no delays needed).
The boxcars are what Bonnasse-Gahot & Pallier (2024) used for the lateralization study:
nilearn's ``compute_regressor(exp_condition=(onsets, offsets - onsets, activations),
"glover", frame_times)`` per hidden unit, frame times ``i * tr + tr / 2``
(github.com/l-bg/llms_brain_lateralization, fit_average_subject.py, lines 75-97).

Time conventions: word times and TR times are in seconds from the start of
the first volume's acquisition; the time of TR ``i`` is the middle of its
acquisition, ``i * tr + tr / 2`` (see :func:`tr_times`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Glover (1999) canonical HRF parameters, those of nilearn's ``glover_hrf`` since nilearn
#: 0.11 (nilearn/glm/first_level/hemodynamic_models.py; before 0.11 the undershoot ratio was
#: 0.35, an undershoot about 45% shallower than Glover's): peak gamma shape
#: ``PEAK_DELAY / DISPERSION``, undershoot gamma shape ``UNDERSHOOT_DELAY / DISPERSION``, both
#: with scale ``DISPERSION`` (seconds), undershoot weight ``UNDERSHOOT_RATIO``. Only
#: :func:`glover_hrf_at` (the continuous form) uses them; :func:`glover_hrf` calls nilearn.
GLOVER_PEAK_DELAY = 6.0
GLOVER_UNDERSHOOT_DELAY = 12.0
GLOVER_DISPERSION = 0.9
GLOVER_UNDERSHOOT_RATIO = 0.48
#: how words enter the HRF convolution (``temporal.hrf_events``)
HRF_EVENTS = ("impulse", "boxcar")


# --------------------------------------------------------------------------- #
# Step 1: Lanczos resampling from word times to TR times
# --------------------------------------------------------------------------- #
def lanczos_kernel(t: np.ndarray, cutoff: float, window: int = 3) -> np.ndarray:
    """Lanczos (windowed sinc) kernel, as in the Huth lab's ``lanczosfun``.

    With ``u = t * cutoff`` the kernel is::

        L(u) = window * sin(pi u) * sin(pi u / window) / (pi^2 u^2)

    with ``L(0) = 1`` and ``L(u) = 0`` where ``|u| > window``. It is a sinc
    with zeros at every integer ``u``, tapered by a wider sinc (the window).

    Parameters
    ----------
    t : array_like
        Time offsets in seconds (any shape).
    cutoff : float
        Cutoff frequency in Hz; the kernel's zeros are at multiples of
        ``1 / cutoff`` seconds.
    window : int, default 3
        Number of lobes on each side of the centre.

    Returns
    -------
    numpy.ndarray of float64
        Kernel values, same shape as ``t``.
    """
    u = np.asarray(t, dtype=np.float64) * float(cutoff)
    with np.errstate(divide="ignore", invalid="ignore"):
        val = window * np.sin(np.pi * u) * np.sin(np.pi * u / window) / (np.pi**2 * u**2)
    val = np.where(u == 0, 1.0, val)
    return np.where(np.abs(u) > window, 0.0, val)


def lanczos_matrix(
    old_times: np.ndarray,
    new_times: np.ndarray,
    window: int = 3,
    cutoff_mult: float = 1.0,
) -> np.ndarray:
    """Matrix that resamples a signal from ``old_times`` to ``new_times``.

    Entry ``[i, j]`` is ``lanczos_kernel(new_times[i] - old_times[j], cutoff)``
    with ``cutoff = cutoff_mult / mean(diff(new_times))``. By default the
    kernel's zeros fall on multiples of the new sampling interval (one TR),
    which makes it a (windowed) ideal low-pass at the new Nyquist frequency
    ``1 / (2 TR)``.

    The rows are **not normalised**: multiplying by this matrix *sums* the
    kernel-weighted samples (as Huth's ``lanczosinterp2D`` does), so the output
    scale grows with the number of words per TR. The per-story z-scoring that
    follows removes that scale.

    Parameters
    ----------
    old_times : array_like of shape (n_old,)
        Sample times of the input signal (e.g. word onsets), seconds.
    new_times : array_like of shape (n_new,)
        Target sample times (e.g. :func:`tr_times`), seconds; at least 2,
        roughly evenly spaced.
    window : int, default 3
        Lanczos window (lobes on each side).
    cutoff_mult : float, default 1.0
        Multiplier of the cutoff frequency (< 1 smooths more).

    Returns
    -------
    numpy.ndarray of shape (n_new, n_old), float64
    """
    old_times = np.asarray(old_times, dtype=np.float64).ravel()
    new_times = np.asarray(new_times, dtype=np.float64).ravel()
    if new_times.size < 2:
        raise ValueError("lanczos_matrix needs at least 2 new times to define the sampling rate")
    cutoff = cutoff_mult / np.mean(np.diff(new_times))
    return lanczos_kernel(new_times[:, None] - old_times[None, :], cutoff, window)


def lanczos_downsample(
    data: np.ndarray,
    old_times: np.ndarray,
    new_times: np.ndarray,
    window: int = 3,
    cutoff_mult: float = 1.0,
) -> np.ndarray:
    """Resample ``data`` from ``old_times`` to ``new_times`` (Lanczos, summing).

    Parameters
    ----------
    data : array_like of shape (n_old, n_features)
        One row per input sample (e.g. one feature vector per word).
    old_times, new_times, window, cutoff_mult
        See :func:`lanczos_matrix`.

    Returns
    -------
    numpy.ndarray of shape (n_new, n_features), float32
        ``lanczos_matrix(...) @ data``.
    """
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    if data.shape[0] != np.asarray(old_times).size:
        raise ValueError(
            f"data has {data.shape[0]} rows but there are {np.asarray(old_times).size} times"
        )
    mat = lanczos_matrix(old_times, new_times, window, cutoff_mult).astype(np.float32)
    return (mat @ data.astype(np.float32, copy=False)).astype(np.float32, copy=False)


def tr_times(n_trs: int, tr: float) -> np.ndarray:
    """Times of the TR acquisitions, in seconds.

    Convention: volume ``i`` is acquired during ``[i * tr, (i + 1) * tr)`` and
    is assigned to the middle of that interval, ``i * tr + tr / 2``. Word
    times must use the same origin (start of the first volume).

    Parameters
    ----------
    n_trs : int
        Number of volumes.
    tr : float
        Repetition time in seconds.

    Returns
    -------
    numpy.ndarray of shape (n_trs,), float64
    """
    return np.arange(n_trs) * float(tr) + float(tr) / 2.0


# --------------------------------------------------------------------------- #
# Steps 2-4: trim, z-score, delay
# --------------------------------------------------------------------------- #
def trim(x: np.ndarray, start: int, end: int) -> np.ndarray:
    """Drop ``start`` rows at the beginning and ``end`` rows at the end.

    Parameters
    ----------
    x : array_like of shape (n, ...)
    start, end : int
        Non-negative row counts (``end`` may be 0).

    Returns
    -------
    numpy.ndarray
        ``x[start : n - end]``.
    """
    x = np.asarray(x)
    n = x.shape[0]
    if start < 0 or end < 0:
        raise ValueError(f"trim counts must be >= 0, got start={start}, end={end}")
    if start + end >= n:
        raise ValueError(f"cannot trim {start} + {end} rows from an array of {n} rows")
    return x[start : n - end]


def zscore(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Z-score along ``axis`` (population std); constant slices become 0.

    Means and standard deviations are computed in float64. A slice is
    treated as constant when its std is at most ``1e-10`` times its largest
    absolute value (this catches round-off in the mean of identical values).

    Parameters
    ----------
    x : array_like
    axis : int, default 0
        Axis along which to standardise (0: each column over rows).

    Returns
    -------
    numpy.ndarray
        Same shape; same dtype as ``x`` if floating, else float64.
    """
    x = np.asarray(x)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    mean = x.mean(axis=axis, dtype=np.float64, keepdims=True)
    std = x.std(axis=axis, dtype=np.float64, keepdims=True)
    scale = np.max(np.abs(x), axis=axis, keepdims=True) if x.size else std
    constant = std <= 1e-10 * scale
    safe_std = np.where(constant, 1.0, std)
    z = (x - mean) / safe_std
    z = np.where(constant, 0.0, z)
    return z.astype(out_dtype, copy=False)


def make_delayed(x: np.ndarray, delays: Sequence[int]) -> np.ndarray:
    """Stack time-shifted copies of ``x`` (FIR model of the haemodynamics).

    For delay ``d`` (in samples/TRs) the copy has ``copy[t] = x[t - d]``,
    with zeros where ``t - d`` falls outside the array; negative delays shift
    up (towards the past). Copies are concatenated delay-major::

        [x delayed by delays[0] | x delayed by delays[1] | ...]

    Parameters
    ----------
    x : array_like of shape (n, d)
    delays : sequence of int

    Returns
    -------
    numpy.ndarray of shape (n, d * len(delays))
        Same dtype as ``x`` if floating, else float64.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    n, d = x.shape
    delays = [int(k) for k in delays]
    out = np.zeros((n, d * len(delays)), dtype=dtype)
    for i, k in enumerate(delays):
        cols = slice(i * d, (i + 1) * d)
        if abs(k) >= n:
            continue
        if k >= 0:
            out[k:, cols] = x[: n - k]
        else:
            out[: n + k, cols] = x[-k:]
    return out


# --------------------------------------------------------------------------- #
# Alternative: canonical HRF convolution
# --------------------------------------------------------------------------- #
def glover_hrf_at(t: np.ndarray) -> np.ndarray:
    """Glover (1999) canonical HRF evaluated at times ``t`` (seconds): the continuous form.

    Difference of two gamma densities (the parametrisation of nilearn's
    ``glover_hrf``, nilearn >= 0.11)::

        h(t) = [g(t; 6/0.9, 0.9) - 0.48 g(t; 12/0.9, 0.9)] / 0.52

    where ``g(t; a, s)`` is the gamma pdf with shape ``a`` and scale ``s``.
    The division by ``1 - 0.48`` gives unit integral (units 1/s). Peak at ~5.0 s,
    undershoot minimum at ~12 s; ``h(t) = 0`` for ``t <= 0``. nilearn's sampled kernel
    (:func:`glover_hrf`) is this curve one grid step later, on its own grid.

    Parameters
    ----------
    t : array_like
        Time after the impulse, seconds.

    Returns
    -------
    numpy.ndarray of float64
    """
    # imported here: scipy.stats costs ~0.5 s CPU at start-up, in every fit job (issue 17)
    from scipy.stats import gamma

    t = np.asarray(t, dtype=np.float64)
    s = GLOVER_DISPERSION
    peak = gamma.pdf(t, GLOVER_PEAK_DELAY / s, scale=s)
    under = gamma.pdf(t, GLOVER_UNDERSHOOT_DELAY / s, scale=s)
    return (peak - GLOVER_UNDERSHOOT_RATIO * under) / (1.0 - GLOVER_UNDERSHOOT_RATIO)


def glover_hrf(
    tr: float, oversampling: int = 50, time_length: float = 32.0, onset: float = 0.0
) -> np.ndarray:
    """Glover canonical HRF sampled every ``tr / oversampling`` seconds: nilearn's.

    nilearn's ``glover_hrf`` (``nilearn.glm.first_level``; its samples sum to 1) divided by
    the step ``dt``, so that ``sum(h) * dt = 1`` and sampled values do not depend on the step.

    Parameters
    ----------
    tr : float
        Repetition time, seconds.
    oversampling : int, default 50
        Samples per TR.
    time_length : float, default 32.0
        Duration of the sampled response, seconds.
    onset : float, default 0.0
        Delay of the response onset, seconds.

    Returns
    -------
    numpy.ndarray of shape (round(time_length / dt),), float64
        Close to ``glover_hrf_at(k * dt - onset)`` for ``k = 0, 1, ...`` (nilearn samples
        ``linspace(0, time_length, n) - onset`` and shifts the gammas by ``dt``).
    """
    from nilearn.glm.first_level.hemodynamic_models import glover_hrf as nilearn_glover

    dt = float(tr) / oversampling
    kernel = nilearn_glover(float(tr), oversampling, float(time_length), float(onset))
    return np.asarray(kernel, dtype=np.float64) / dt


def hrf_regressors(
    word_features: np.ndarray,
    word_times: np.ndarray,
    n_trs: int,
    tr: float,
    oversampling: int = 50,
    time_length: float = 32.0,
    durations: np.ndarray | None = None,
) -> np.ndarray:
    """Convolve word impulses (or boxcars) with the Glover HRF and sample at TR times.

    Conceptually: put each word's feature vector as an impulse on a fine grid
    (step ``dt = tr / oversampling``, word time rounded to the nearest grid
    point), convolve with :func:`glover_hrf`, and read the result at the grid
    points nearest to :func:`tr_times`. Since only the TR samples are needed,
    this is computed exactly but without the fine grid, as a matrix
    ``H[i, w] = hrf[k_tr(i) - k_word(w)]`` (zero outside the HRF support)
    applied to the features. This approximates
    ``sum_w glover_hrf_at(t_i - t_w) * f_w`` up to the grid rounding.

    With ``durations``, word ``w`` is instead a boxcar of height ``f_w`` from ``t_w`` to
    ``t_w + d_w`` (grid points ``k_word(w)`` to ``rint((t_w + d_w) / dt)``, at least one),
    integrated against the HRF: ``H[i, w] = dt * sum_k hrf[k_tr(i) - k]`` over the boxcar's
    points, so each word weighs by its duration -- nilearn's ``compute_regressor`` with
    ``(onsets, durations, amplitudes)``, as Bonnasse-Gahot & Pallier (2024) built their
    regressors (module docstring).

    Parameters
    ----------
    word_features : array_like of shape (n_words, n_features)
    word_times : array_like of shape (n_words,)
        Word onset times, seconds.
    n_trs : int
        Number of volumes.
    tr : float
        Repetition time, seconds.
    oversampling : int, default 50
    time_length : float, default 32.0
        HRF support, seconds.
    durations : array_like of shape (n_words,), optional
        Word durations, seconds (then ``word_times`` are the onsets). None: impulses.

    Returns
    -------
    numpy.ndarray of shape (n_trs, n_features), float32
    """
    feats = np.asarray(word_features)
    if feats.ndim == 1:
        feats = feats[:, None]
    times = np.asarray(word_times, dtype=np.float64).ravel()
    if feats.shape[0] != times.size:
        raise ValueError(f"{feats.shape[0]} feature rows but {times.size} word times")
    dt = float(tr) / oversampling
    hrf = glover_hrf(tr, oversampling, time_length)
    k_word = np.rint(times / dt).astype(np.int64)
    k_tr = np.rint(tr_times(n_trs, tr) / dt).astype(np.int64)
    lag = k_tr[:, None] - k_word[None, :]
    if durations is None:
        inside = (lag >= 0) & (lag < hrf.size)
        mat = np.where(inside, hrf[np.clip(lag, 0, hrf.size - 1)], 0.0).astype(np.float32)
    else:
        durations = np.asarray(durations, dtype=np.float64).ravel()
        if durations.shape != times.shape or (durations < 0).any():
            raise ValueError("durations must be one non-negative number per word")
        k_end = np.maximum(np.rint((times + durations) / dt).astype(np.int64), k_word + 1)
        # sum of hrf[l] for l in [k_tr - k_end + 1, k_tr - k_word], from its cumulative sum
        cum = np.concatenate([[0.0], np.cumsum(hrf)])
        first = np.clip(k_tr[:, None] - k_end[None, :] + 1, 0, hrf.size)
        last = np.clip(lag + 1, 0, hrf.size)
        mat = (dt * (cum[last] - cum[first])).astype(np.float32)
    return (mat @ feats.astype(np.float32, copy=False)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- #
# One story, end to end
# --------------------------------------------------------------------------- #
def build_design(
    word_features: np.ndarray,
    word_times: np.ndarray,
    n_trs: int,
    tr: float,
    trim_start: int,
    trim_end: int,
    method: str = "lanczos",
    delays: Sequence[int] = (1, 2, 3, 4),
    window: int = 3,
    durations: np.ndarray | None = None,
) -> np.ndarray:
    """Design matrix of one story.

    ``method="lanczos"``: :func:`lanczos_downsample` to :func:`tr_times` ->
    :func:`trim` -> :func:`zscore` -> :func:`make_delayed`. Z-scoring is per
    story and before delaying (Huth-lab convention), so the zero padding of
    the delayed copies equals the feature mean.

    ``method="hrf"``: :func:`hrf_regressors` -> :func:`trim` -> :func:`zscore`
    (no delays: the canonical HRF already models the lag).

    Parameters
    ----------
    word_features : array_like of shape (n_words, n_features)
    word_times : array_like of shape (n_words,)
        Seconds from the start of the first volume.
    n_trs : int
        Number of volumes of the story's run (before trimming).
    tr : float
        Repetition time, seconds.
    trim_start, trim_end : int
        TRs dropped at the start and end.
    method : {"lanczos", "hrf"}
    delays : sequence of int, default (1, 2, 3, 4)
        FIR delays in TRs (lanczos only).
    window : int, default 3
        Lanczos window (lanczos only).
    durations : array_like of shape (n_words,), optional
        hrf only: word durations, ``word_times`` being the onsets (boxcar events, see
        :func:`hrf_regressors`). None: impulses at ``word_times``.

    Returns
    -------
    numpy.ndarray of shape (n_trs - trim_start - trim_end, n_features_out), float32
        ``n_features_out`` is ``n_features * len(delays)`` for lanczos and
        ``n_features`` for hrf.
    """
    if method == "lanczos":
        x = lanczos_downsample(word_features, word_times, tr_times(n_trs, tr), window=window)
        x = zscore(trim(x, trim_start, trim_end))
        x = make_delayed(x, delays)
    elif method == "hrf":
        x = hrf_regressors(word_features, word_times, n_trs, tr, durations=durations)
        x = zscore(trim(x, trim_start, trim_end))
    else:
        raise ValueError(f"unknown temporal method {method!r}; use 'lanczos' or 'hrf'")
    return np.ascontiguousarray(x, dtype=np.float32)


def prepare_responses(y: np.ndarray, trim_start: int, trim_end: int) -> np.ndarray:
    """Trim and z-score one story's responses (per voxel).

    Parameters
    ----------
    y : array_like of shape (n_trs, n_voxels)
    trim_start, trim_end : int
        TRs dropped at the start and end (same as for :func:`build_design`).

    Returns
    -------
    numpy.ndarray of shape (n_trs - trim_start - trim_end, n_voxels), float32
        Constant voxels become all zeros.
    """
    y = np.asarray(y, dtype=np.float32)
    return np.ascontiguousarray(zscore(trim(y, trim_start, trim_end)), dtype=np.float32)
