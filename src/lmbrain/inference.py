"""Subject-level inference: hierarchical bootstrap and one-sample tests across subjects.

A brain score of a study is a mean over subjects of means over voxels. Its sampling
variability has two sources: which subjects were scanned, and which voxels (and noise) each
subject contributed. A bootstrap that resamples voxels only (pooled over subjects) ignores
the first, which dominates when subjects differ: its intervals are too narrow for a claim
about new subjects (``tests/test_inference.py`` shows the under-coverage on simulated
subjects). The summaries of lmbrain therefore report three intervals:

``hierarchical`` (the headline ``*_ci_low`` / ``*_ci_high`` columns)
    Each replicate draws subjects with replacement, then, within every drawn subject
    (independently for each time a subject is drawn), voxels with replacement -- the
    two-stage bootstrap of Davison & Hinkley (1997, *Bootstrap Methods and their
    Application*, section 3.8, "hierarchical data"), as recommended for nested
    neuroscience data by Saravanan, Berman & Sober (2020, Neurons, Behavior, Data
    Analysis and Theory 3(5)). With fewer than :data:`MIN_SUBJECTS` subjects it is not
    reported (NaN, with a ``note``): two subjects cannot estimate a between-subject spread.
``subjects``
    Subjects with replacement, each keeping its observed voxel means.
``voxels``
    Every subject kept once, voxels with replacement within each subject: the precision of
    the estimate *for these subjects* (what lmbrain reported before).

Within a subject the same voxel draw serves every point of a fit (several models or train
fractions scored on that subject's voxels), so the resampling is paired across points.

A slope is also tested across subjects: each subject's own slope, then a one-sample
t-test (:func:`one_sample_tests`, matching :func:`scipy.stats.ttest_1samp`) and a
sign-flip permutation test of the mean slope (exact over all 2^n sign patterns up to
n = :data:`EXACT_SIGNFLIP_MAX`, Monte Carlo beyond; Nichols & Holmes 2002, Hum. Brain Mapp.
15:1, section "one-sample test").
"""

from __future__ import annotations

import itertools

import numpy as np

#: Fewest subjects for which a subject-level interval or test is reported.
MIN_SUBJECTS = 3
#: Sign-flip tests enumerate all 2^n sign patterns up to this many subjects.
EXACT_SIGNFLIP_MAX = 16
LEVELS = ("hierarchical", "subjects", "voxels")
#: What the ``resampling`` column of a summary table says about its headline CI.
RESAMPLING = "subjects, then voxels within subject"
_BOOT_CHUNK_ELEMENTS = 4_000_000  # resampled indices held at once (bounds memory)


def too_few_subjects_note(n_subjects: int) -> str:
    """The ``note`` of a table row whose subject-level statistics are not reported."""
    return (
        f"subject-level CI and tests need >= {MIN_SUBJECTS} subjects (have {n_subjects}); "
        "only the voxel-only CI is given"
    )


def ci_test_columns(prefix: str, cis: dict, tests: dict) -> dict:
    """The inference columns of a summary row for the statistic ``prefix`` (``slope``, ``gap``).

    ``<prefix>_ci_low/high`` (the hierarchical CI), ``..._subjects`` and ``..._voxels`` (the
    one-level variants) from ``cis`` (``{level: (low, high)}``, :data:`LEVELS`), and
    ``<prefix>_t``, ``_t_p``, ``_signflip_p`` from :func:`one_sample_tests`.
    """
    out = {}
    for level in LEVELS:
        suffix = "" if level == "hierarchical" else f"_{level}"
        out[f"{prefix}_ci_low{suffix}"], out[f"{prefix}_ci_high{suffix}"] = cis[level]
    out[f"{prefix}_t"] = tests["t"]
    out[f"{prefix}_t_p"] = tests["t_p"]
    out[f"{prefix}_signflip_p"] = tests["signflip_p"]
    return out


def stratum_means(
    values: np.ndarray, strata: list[np.ndarray], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Voxel-resampled means, shape (n_boot, n_points, n_strata), of ``values`` (n_points, n_vox).

    Within each stratum (an index array of voxels), voxel indices are drawn with replacement
    (the same draw for every point); NaN voxels are ignored in the means. Draws are turned
    into counts per voxel, so the means are one matrix product per chunk of replicates.
    """
    out = np.full((n_boot, values.shape[0], len(strata)), np.nan)
    for s, idx in enumerate(strata):
        if idx.size == 0 or n_boot == 0:
            continue
        v = values[:, idx]
        finite = np.isfinite(v)
        v0, w = np.where(finite, v, 0.0).T, finite.astype(np.float64).T
        all_finite = bool(finite.all())
        n = idx.size
        chunk = max(1, min(n_boot, _BOOT_CHUNK_ELEMENTS // n))
        for start in range(0, n_boot, chunk):
            b = min(chunk, n_boot - start)
            draws = rng.integers(0, n, size=(b, n), dtype=np.int64)
            draws += (np.arange(b, dtype=np.int64) * n)[:, None]
            counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
            denominator = n if all_finite else counts @ w
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start : start + b, :, s] = (counts @ v0) / denominator
    return out


def observed_means(values: np.ndarray, strata: list[np.ndarray]) -> np.ndarray:
    """Means over each stratum's voxels (NaN ignored): shape (n_points, n_strata)."""
    out = np.full((values.shape[0], len(strata)), np.nan)
    for s, idx in enumerate(strata):
        v = values[:, idx]
        finite = np.isfinite(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, s] = np.where(finite, v, 0.0).sum(axis=1) / finite.sum(axis=1)
    return out


def resample_subject_means(
    subject_values: list[np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
    level: str = "hierarchical",
    strata: list[list[np.ndarray]] | None = None,
) -> np.ndarray:
    """Bootstrap replicates of every subject slot's stratum means.

    Parameters
    ----------
    subject_values : list of ndarray
        One (n_points, n_voxels_s) array per subject: the per-voxel values (e.g. test r)
        behind each point (NaN where a voxel has no value or the subject lacks a point).
    n_boot : int
        Replicates.
    rng : numpy.random.Generator
    level : {"hierarchical", "subjects", "voxels"}
        What is resampled (module docstring).
    strata : list of list of ndarray, optional
        Per subject, voxel index arrays resampled separately (e.g. left and right
        hemisphere); default one stratum of all voxels.

    Returns
    -------
    ndarray, shape (n_boot, n_subjects, n_points, n_strata)
        Replicate ``b``, slot ``j``: the stratum means of the subject drawn for slot ``j``
        (``level="voxels"``: subject ``j``) over its drawn voxels (``level="subjects"``:
        over all its voxels). Callers combine strata and points per slot, then average
        over slots (:func:`slot_mean`), so a statistic is computed per subject first.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown bootstrap level {level!r}; use one of {LEVELS}")
    n_sub = len(subject_values)
    if strata is None:
        strata = [[np.arange(v.shape[1])] for v in subject_values]
    n_points = subject_values[0].shape[0] if n_sub else 0
    n_strata = len(strata[0]) if n_sub else 1
    out = np.full((n_boot, n_sub, n_points, n_strata), np.nan)
    if n_sub == 0 or n_boot == 0:
        return out
    if level == "voxels":
        for j, (values, st) in enumerate(zip(subject_values, strata, strict=True)):
            out[:, j] = stratum_means(values, st, n_boot, rng)
        return out
    drawn = rng.integers(0, n_sub, size=(n_boot, n_sub))
    for s, (values, st) in enumerate(zip(subject_values, strata, strict=True)):
        slots = np.argwhere(drawn == s)  # (k, 2): replicate, slot
        if slots.size == 0:
            continue
        if level == "subjects":
            out[slots[:, 0], slots[:, 1]] = observed_means(values, st)
        else:
            out[slots[:, 0], slots[:, 1]] = stratum_means(values, st, len(slots), rng)
    return out


def slot_mean(per_slot: np.ndarray) -> np.ndarray:
    """Mean over axis 1 (subject slots) ignoring NaN; NaN, without a warning, if all are."""
    finite = np.isfinite(per_slot)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, per_slot, 0.0).sum(axis=1) / finite.sum(axis=1)


def percentile_ci(values: np.ndarray, ci: float = 0.95, method: str = "linear"):
    """``(low, high)`` percentiles ``(1 -+ ci) / 2`` of the non-NaN values; NaN if none.

    ``method="nearest"`` keeps infinite replicates usable (an upper bound of inf).
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [50 * (1 - ci), 50 * (1 + ci)], method=method)
    return float(low), float(high)


def sign_flip_pvalue(
    values: np.ndarray, n_permutations: int = 10000, rng: np.random.Generator | None = None
) -> float:
    """Two-sided sign-flip permutation p-value of the mean of ``values`` against 0.

    Under the null each value is symmetric about 0, so flipping signs gives equally likely
    data sets. The p-value is the fraction of sign patterns whose ``|mean|`` reaches the
    observed one: exact over all 2^n patterns (observed included) for n <=
    :data:`EXACT_SIGNFLIP_MAX`, otherwise ``(1 + hits) / (1 + n_permutations)`` over random
    patterns. NaN values are dropped; NaN with no value left.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    if n == 0:
        return float("nan")
    observed = abs(x.mean())
    tol = 1e-12 * max(1.0, float(np.abs(x).max()))
    if n <= EXACT_SIGNFLIP_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float(np.mean(np.abs(signs @ x) / n >= observed - tol))
    rng = np.random.default_rng(0) if rng is None else rng
    signs = rng.choice((-1.0, 1.0), size=(int(n_permutations), n))
    hits = int(np.sum(np.abs(signs @ x) / n >= observed - tol))
    return (1.0 + hits) / (1.0 + int(n_permutations))


def one_sample_tests(
    values: np.ndarray, n_permutations: int = 10000, rng: np.random.Generator | None = None
) -> dict:
    """t-test and sign-flip test of ``mean(values) = 0`` across subjects (two-sided).

    Returns
    -------
    dict
        ``t`` (statistic, ``n - 1`` degrees of freedom), ``t_p``, ``signflip_p`` and ``n``
        (finite values used). The tests are NaN with fewer than :data:`MIN_SUBJECTS` values.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    out = {"t": float("nan"), "t_p": float("nan"), "signflip_p": float("nan"), "n": int(x.size)}
    if x.size < MIN_SUBJECTS:
        return out
    if np.ptp(x) > 0:
        # imported here: scipy.stats costs ~0.4 s at start-up, in every aggregate and plot job
        from scipy import stats

        result = stats.ttest_1samp(x, 0.0)
        out["t"], out["t_p"] = float(result.statistic), float(result.pvalue)
    out["signflip_p"] = sign_flip_pvalue(x, n_permutations, rng)
    return out
