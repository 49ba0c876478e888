"""Alignment diagnostic: is the word timing of a dataset on the clock of its responses?

A wrong stimulus onset (a run's silent lead-in counted twice or not at all, TRs trimmed by the
publisher but not by the reader, an annotation in a different time origin) shifts every word
of a story by a constant. Encoding models still fit, only worse, and nothing fails. This
module refits a cheap word-locked model with every word time moved by a lag ``d`` (seconds;
**positive = words moved later**, ``time + d``) over a grid of lags, and scores each refit on
held-out data. On a correctly aligned dataset the curve of mean held-out r against lag peaks
at 0; if the words truly occur ``D`` seconds after their annotated times, it peaks at ``+D``
(the shift that puts them back).

The model reuses the workflow's own steps: :func:`lmbrain.encoding.design_from_features`
(Lanczos resampling to the TR times, trims, per-story z-score, FIR delays of the config's
``temporal`` section), :func:`lmbrain.fitting.fit_ridge_cv` (story-grouped CV over the
config's alpha grid) and the outer cross-validation of the fits,
:func:`lmbrain.encoding.outer_folds` (``fitting.cv``: by default the subject's training
stories against the dataset's test stories). The score of a lag is the mean over voxels of
the **held-out** Pearson r (test stories, or held-out runs / subjects for the other ``cv``
schemes), at train fraction 1.

Feature sets (``alignment.features``):

``word_rate``
    One column of ones per word: after Lanczos resampling, the number of words per TR
    (the low-level regressor every language-model feature carries).
``random_embedding``
    A fixed N(0, 1) vector per word type (:func:`lmbrain.baselines.random_word_embeddings`,
    ``alignment.width`` columns, seed from the config): lexical identity, no learning.

A lag grid steps by one TR unless told otherwise, and always contains 0
(:func:`lag_grid`). :func:`check_alignment` logs a warning naming the dataset when the best
lag of the mean curve over subjects is further than the tolerance (one TR) from 0.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lmbrain.baselines import random_word_embeddings
from lmbrain.encoding import design_from_features, outer_folds
from lmbrain.errors import ConfigError
from lmbrain.fitting import alpha_grid, fit_ridge_cv, predict
from lmbrain.scoring import pearson_r, summarize_scores
from lmbrain.temporal import prepare_responses

log = logging.getLogger("lmbrain")

#: Feature sets of the diagnostic (``alignment.features``).
FEATURE_SETS = ("word_rate", "random_embedding")

#: Columns of the per-subject tables and of ``summary/alignment.tsv``.
COLUMNS = (
    "dataset",
    "subject",
    "features",
    "method",
    "n_features",
    "lag_s",
    "lag_trs",
    "mean_r",
    "n_voxels",
    "n_train_trs",
    "n_test_trs",
    "cv",
)

#: Columns of :func:`best_lags`.
BEST_COLUMNS = ("dataset", "subject", "features", "best_lag_s", "best_lag_trs", "best_r", "r_at_0")


def lag_grid(spec, tr: float) -> np.ndarray:
    """The lags (seconds) of the diagnostic.

    Parameters
    ----------
    spec : mapping or sequence of float
        ``{"start": a, "stop": b, "step": s}``: the multiples of ``s`` (default one TR) from
        ``a`` to ``b``, both included where they fall on the grid (so 0 is always on it, and
        with the default step ``lag_s / tr`` is a whole number of TRs). A sequence: those lags,
        sorted. Either must include 0 (the annotated timing) between its ends.
    tr : float
        The dataset's repetition time (seconds).

    Returns
    -------
    ndarray of float64, sorted ascending, containing 0.0

    Raises
    ------
    ConfigError
        (``alignment.lags_s``) an empty grid, a non-positive step, or 0 outside the range.
    """
    key = "alignment.lags_s"
    if isinstance(spec, Mapping):
        start, stop = float(spec.get("start", -10.0)), float(spec.get("stop", 10.0))
        step = spec.get("step")
        step = float(tr) if step is None else float(step)
        if step <= 0:
            raise ConfigError(key, f"step must be positive (got {step})")
        if not start <= 0.0 <= stop:
            raise ConfigError(key, f"the range [{start}, {stop}] must contain 0")
        k = np.arange(int(np.ceil(start / step - 1e-9)), int(np.floor(stop / step + 1e-9)) + 1)
        lags = k * step
    else:
        lags = np.unique(np.asarray(list(spec), dtype=np.float64))
        if lags.size == 0 or not np.any(np.isclose(lags, 0.0)):
            raise ConfigError(key, f"a list of lags must include 0 (got {list(spec)})")
    lags = np.where(np.isclose(lags, 0.0), 0.0, lags)
    return np.asarray(lags, dtype=np.float64)


def word_features(words, kind: str, width: int = 64, seed: int = 0) -> np.ndarray:
    """Per-word features of one feature set.

    Parameters
    ----------
    words : lmbrain.stimulus.Words
    kind : {"word_rate", "random_embedding"}
    width : int
        Columns of ``random_embedding``.
    seed : int

    Returns
    -------
    ndarray, shape (n_words, 1 or width), float32
    """
    if kind == "word_rate":
        return np.ones((len(words), 1), dtype=np.float32)
    if kind == "random_embedding":
        return random_word_embeddings(list(words.words), int(width), int(seed))
    raise ConfigError("alignment.features", f"unknown feature set {kind!r}; use {FEATURE_SETS}")


def design_settings(temporal: Mapping, method: str = "hrf") -> dict:
    """The ``temporal`` settings of the diagnostic's designs.

    ``method="hrf"``: the canonical HRF (no FIR delays: a fixed response shape, so that a
    shift of the words is not absorbed by the delays), whatever the config's section says
    (``window`` and ``delays`` are fixed placeholders the HRF ignores, so that changing them
    in the config does not rerun the diagnostic). ``"temporal"``: the config's section.
    """
    if method == "hrf":
        return {"method": "hrf", "window": 3, "delays": [0]}
    if method == "temporal":
        return dict(temporal)
    raise ConfigError("alignment.method", f"unknown method {method!r}; use hrf or temporal")


def shifted_design(dataset, feats, words, lag_s: float, n_trs: int, temporal: Mapping):
    """Design matrix of one story with every word moved ``lag_s`` seconds later.

    ``lag_s > 0`` moves the words later (their times become ``time + lag_s``), ``< 0``
    earlier; the rest is :func:`lmbrain.encoding.design_from_features` unchanged (words
    moved past either end of the run simply fall off the TR grid).
    """
    times = np.asarray(words.times, dtype=np.float64) + float(lag_s)
    return design_from_features(dataset, feats, times, n_trs, temporal)


def alignment_curve(
    dataset,
    subject: str,
    lags_s: Sequence[float],
    *,
    temporal: Mapping,
    fitting: Mapping,
    features: Sequence[str] = ("word_rate",),
    method: str = "hrf",
    width: int = 64,
    seed: int = 0,
    subjects: Sequence[str] | None = None,
    dataset_name: str | None = None,
) -> pd.DataFrame:
    """Held-out mean r of a word-locked model refitted at every lag.

    Parameters
    ----------
    dataset : dataset adapter
        Any story adapter (``words``, ``responses``, ``test_target``, ``tr``, trims, train
        and test stories, ``subject_stories`` where it has one).
    subject : str
    lags_s : sequence of float
        Shifts of the word times in seconds (positive = words later), e.g. :func:`lag_grid`.
    temporal, fitting : mapping
        The config's sections (``fitting.cv`` picks the held-out data, as for the fits).
    features : sequence of str
        Feature sets, among :data:`FEATURE_SETS`.
    method : {"hrf", "temporal"}
        ``hrf``: the canonical (Glover) HRF, one regressor per feature and no delays
        (``temporal`` with ``method: hrf``), so the curve has one sharp peak. ``temporal``: the
        config's ``temporal`` section as the fits use it; with FIR delays the model absorbs
        any shift the delays span, and the curve is a plateau as wide as the delays.
    width : int
        Columns of ``random_embedding``.
    seed : int
        Seed of the random embeddings and of the outer folds' story subsets.
    subjects : sequence of str, optional
        The study's subjects (the training pool of ``fitting.cv: by_subject``).
    dataset_name : str, optional
        The ``dataset`` column (default ``dataset.name``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per (feature set, lag). ``mean_r`` is the mean over
        voxels of the held-out Pearson r (mean over outer folds when there are several),
        ``n_voxels`` the voxels with a finite r.
    """
    temporal = design_settings(temporal, method)
    cv = fitting.get("cv", "test_stories")
    folds = outer_folds(dataset, subject, 1.0, cv, seed, list(subjects) if subjects else None)
    for kind in features:
        if kind not in FEATURE_SETS:
            raise ConfigError("alignment.features", f"unknown feature set {kind!r}")
    alphas = alpha_grid(fitting["alphas"], key="fitting.alphas")
    responses: dict = {}

    def load_y(pairs, target: bool):
        out = []
        for subj, story in pairs:
            key = (subj, story, target)
            if key not in responses:
                y = dataset.test_target(subj, story) if target else dataset.responses(subj, story)
                responses[key] = (
                    prepare_responses(y, dataset.trim_start, dataset.trim_end),
                    int(y.shape[0]),
                )
            out.append(responses[key])
        return out

    rows = []
    name = dataset_name or getattr(dataset, "name", "")
    for kind in features:
        feats = {}
        for lag in lags_s:
            rs, n_train, n_test = [], 0, 0
            for train_pairs, test_pairs in folds:
                X, Y, groups = _stack(
                    dataset,
                    train_pairs,
                    load_y(train_pairs, False),
                    feats,
                    kind,
                    width,
                    seed,
                    lag,
                    temporal,
                )
                Xt, Yt, _ = _stack(
                    dataset,
                    test_pairs,
                    load_y(test_pairs, True),
                    feats,
                    kind,
                    width,
                    seed,
                    lag,
                    temporal,
                )
                fit = fit_ridge_cv(
                    X,
                    Y,
                    groups,
                    alphas,
                    n_folds=fitting["n_folds"],
                    backend=fitting.get("backend", "auto"),
                    solver=fitting.get("solver", "auto"),
                    n_targets_batch=fitting.get("n_targets_batch"),
                    cv_precision=fitting.get("cv_precision", "float64"),
                )
                rs.append(pearson_r(Yt, predict(fit, Xt)))
                n_train, n_test = X.shape[0], n_test + Xt.shape[0]
                n_features = X.shape[1]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r = np.nanmean(rs, axis=0) if len(rs) > 1 else rs[0]
            score = summarize_scores(r)
            rows.append(
                {
                    "dataset": name,
                    "subject": subject,
                    "features": kind,
                    "method": method,
                    "n_features": int(n_features),
                    "lag_s": float(lag),
                    "lag_trs": float(lag) / float(dataset.tr),
                    "mean_r": score["mean"],
                    "n_voxels": score["n_used"],
                    "n_train_trs": int(n_train),
                    "n_test_trs": int(n_test),
                    "cv": cv,
                }
            )
            log.info("%s %s %s lag %+.2f s: mean r = %.4f", name, subject, kind, lag, score["mean"])
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _stack(dataset, pairs, ys, feats, kind, width, seed, lag, temporal):
    """Design rows, responses and story groups of ``pairs`` at one lag."""
    xs, out_y, groups = [], [], []
    for i, ((_, story), (y, n_trs)) in enumerate(zip(pairs, ys, strict=True)):
        if story not in feats:
            words = dataset.words(story)
            feats[story] = (words, word_features(words, kind, width, seed))
        words, f = feats[story]
        xs.append(shifted_design(dataset, f, words, lag, n_trs, temporal))
        out_y.append(y)
        groups.append(np.full(y.shape[0], i))
    return np.concatenate(xs), np.concatenate(out_y), np.concatenate(groups)


def best_lags(table: pd.DataFrame) -> pd.DataFrame:
    """Best lag of every (dataset, subject, feature set), and of their mean over subjects.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`alignment_curve` (several subjects, feature sets).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`BEST_COLUMNS`; the rows of the mean curve over subjects have
        ``subject == "mean"``. Ties go to the lag nearest 0. NaN curves give NaN.
    """
    rows = []
    mean = table.groupby(["dataset", "features", "lag_s"], as_index=False).agg(
        mean_r=("mean_r", "mean"), lag_trs=("lag_trs", "mean")
    )
    mean["subject"] = "mean"
    both = pd.concat([table, mean], ignore_index=True)
    for (dataset, subject, kind), curve in both.groupby(["dataset", "subject", "features"]):
        curve = curve.sort_values("lag_s")
        r = curve["mean_r"].to_numpy(dtype=float)
        lags = curve["lag_s"].to_numpy(dtype=float)
        at0 = r[np.isclose(lags, 0.0)]
        row = {
            "dataset": dataset,
            "subject": subject,
            "features": kind,
            "r_at_0": float(at0[0]) if at0.size else float("nan"),
        }
        if np.isfinite(r).any():
            top = np.nanmax(r)
            ties = np.flatnonzero(r == top)
            i = ties[np.argmin(np.abs(lags[ties]))]
            row.update(
                best_lag_s=float(lags[i]),
                best_lag_trs=float(curve["lag_trs"].to_numpy(dtype=float)[i]),
                best_r=float(r[i]),
            )
        else:
            row.update(best_lag_s=np.nan, best_lag_trs=np.nan, best_r=np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(BEST_COLUMNS))


def check_alignment(table: pd.DataFrame, tr: float, tolerance_s: float | None = None) -> list[str]:
    """Warn about every dataset whose words look shifted against its responses.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`alignment_curve`.
    tr : float
        The dataset's repetition time (seconds).
    tolerance_s : float, optional
        Largest ``|best lag|`` taken as aligned; default one TR.

    Returns
    -------
    list of str
        The warnings logged (``logging.WARNING`` on the ``lmbrain`` logger), one per
        (dataset, feature set) whose mean curve over subjects peaks further than
        ``tolerance_s`` from 0; empty when everything is aligned.
    """
    tol = float(tr) if tolerance_s is None else float(tolerance_s)
    best = best_lags(table)
    messages = []
    for _, row in best[best["subject"] == "mean"].iterrows():
        if not np.isfinite(row["best_lag_s"]) or abs(row["best_lag_s"]) <= tol + 1e-9:
            continue
        subj = best[
            (best["dataset"] == row["dataset"])
            & (best["features"] == row["features"])
            & (best["subject"] != "mean")
        ]
        off = subj[np.abs(subj["best_lag_s"]) > tol + 1e-9]["subject"].tolist()
        direction = "later" if row["best_lag_s"] > 0 else "earlier"
        msg = (
            f"dataset '{row['dataset']}': the words look misaligned with the responses: "
            f"the {row['features']} model scores best with every word moved "
            f"{abs(row['best_lag_s']):.3g} s {direction} ({row['best_lag_trs']:+.3g} TRs; "
            f"mean r {row['best_r']:.4f} against {row['r_at_0']:.4f} at lag 0; subjects off: "
            f"{', '.join(off) or 'none alone'}). Check the stimulus onsets, the trims and "
            f"the TR of the dataset (README, 'Check the alignment')."
        )
        log.warning(msg)
        messages.append(msg)
    return messages


def runs_on(section: Mapping, spec: Mapping) -> bool:
    """Whether the diagnostic runs on a dataset.

    Parameters
    ----------
    section : mapping
        The config's ``alignment`` section (``enabled``: ``"auto"``, true or false).
    spec : mapping
        The dataset's config block.

    Returns
    -------
    bool
        Never for trial datasets (no word timing); ``auto``: datasets read from disk, not the
        simulated ones (exact timing by construction).
    """
    if spec.get("format", "native") in ("trials", "nsd"):
        return False
    enabled = section.get("enabled", "auto")
    if enabled == "auto":
        return "simulate" not in spec
    return bool(enabled)


def canonical_settings(section: Mapping) -> dict:
    """The settings of the alignment jobs, normalised (rule params: reruns on change only).

    ``features`` becomes a sorted list, ``lags_s`` a sorted list or a ``{start, stop, step}``
    mapping with every key; the grid is checked (:func:`lag_grid`, with a unit TR).
    """
    features = section.get("features", ["word_rate"])
    features = sorted({features} if isinstance(features, str) else set(features))
    lags = section.get("lags_s", {})
    if isinstance(lags, Mapping):
        lags = {
            "start": float(lags.get("start", -10.0)),
            "stop": float(lags.get("stop", 10.0)),
            "step": None if lags.get("step") is None else float(lags["step"]),
        }
    else:
        lags = sorted(float(v) for v in lags)
    lag_grid(lags, 1.0)
    tolerance = section.get("tolerance_s")
    return {
        "lags_s": lags,
        "features": features,
        "method": str(section.get("method", "hrf")),
        "width": int(section.get("width", 64)),
        "tolerance_s": None if tolerance is None else float(tolerance),
    }
