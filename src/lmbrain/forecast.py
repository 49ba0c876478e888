"""Forecast windows (Caucheteux, Gramfort & King 2023): do brain responses anticipate words?

For every word ``i`` of a story, the *forecast window* at distance ``d`` and width ``w`` is
built from the features of the words ``i + d - w + 1 .. i + d`` (the window of ``w`` words
ending ``d`` words ahead; ``w = 1`` is the single word at distance ``d``, ``d = 0`` the
current word itself). The window is either their **mean** (``mode="mean"``) or their
**concatenation** in word order (``mode="concat"``, ``w * dim`` columns). Positions past the
story's last word (or before its first, when ``w > d + 1``) have no word: they count as
zero vectors, so the mean divides by ``w`` whatever the padding (a window at the end of a
story fades towards zero rather than being renormalised).

The window is reduced by PCA to the width of the current-word features (or fewer when the
training data have fewer dimensions), fitted on the **training stories only** (words of
every training story stacked; no test-story word enters the projection), and concatenated
to the current-word features. Both go through the usual temporal model
(:func:`lmbrain.temporal.build_design`: Lanczos downsampling, trim, per-story z-score,
delays) and the same ridge fit as the main encoding models. The **forecast score** of a voxel
is ``F_d = r(current + forecast_d) - r(current)`` on the test stories, and its best distance
is the ``d`` that maximises the *cross-validated* gain on the training stories (so the choice
does not look at the test story); with several forecast layers (depths ``k``), the best
``(k, d)`` pair is chosen the same way.

**Random-future control** (``control="random_future"``). Adding any ``dim`` columns to a
ridge model can change its test score, whatever they contain. The control repeats every fit
with the future words replaced by random words of the same story: the word features of each
story are permuted (one permutation per story, drawn from ``seed`` and the story name, shared
by every distance and layer), then the window is built, PCA-reduced and fitted exactly like
the true one, so it has the same dimension, the same end-of-story padding and the same word
statistics, but no relation to the words actually ahead. ``F_control = r(current + random
window) - r(current)``; a forecast effect is ``F > F_control``. This follows a reading of
Caucheteux, Gramfort & King (2023) as comparing forecast scores with windows of random words
of the same story; their Methods text could not be checked here (only the introduction of
https://www.nature.com/articles/s41562-022-01516-2 was available), so the section and the
exact draw (here a permutation of the story's words, not draws with replacement) are
unverified.

PCA is computed exactly (SVD of the centred training matrix; each component's sign is fixed
so that its largest-magnitude loading is positive), so it has no randomness; reruns are
identical.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from lmbrain.encoding import design_from_features, word_events
from lmbrain.errors import ConfigError
from lmbrain.fitting import alpha_grid, fit_ridge_cv, predict
from lmbrain.scoring import pearson_r
from lmbrain.temporal import prepare_responses

MODES = ("mean", "concat")
CONTROLS = (None, "random_future")
#: What the ``resampling`` column of forecast.tsv says: its rows are one subject's voxel means
#: (no CI); plots/forecast.png shows the SEM across subjects.
RESAMPLING = "none (one subject's mean over voxels)"


def plan_forecast(
    settings: dict,
    models: dict,
    extracted: dict[str, list[int]],
    n_layers: Callable[[str], int],
) -> dict[str, tuple[int, list[int]]]:
    """Which models get forecast fits, with their current and forecast layers.

    Parameters
    ----------
    settings : dict
        The config's ``forecast`` section.
    models : dict
        ``{model_id: entry}``.
    extracted : dict
        ``{model_id: layers stored in its feature file}``.
    n_layers : callable
        ``model_id -> number of blocks`` (for negative layer indices).

    Returns
    -------
    dict
        ``{model_id: (current_layer, forecast_layers)}``; empty when disabled.

    Raises
    ------
    ConfigError
        An unknown model id, or a layer the model's feature file does not hold.
    """
    if not settings.get("enabled"):
        return {}
    names = settings.get("models")
    if names is None:
        names = [m for m, e in models.items() if not e.get("untrained") and not e.get("baseline")]
    plan = {}
    for mid in names:
        if mid not in models:
            raise ConfigError("forecast.models", f"unknown model id {mid!r}; ids: {list(models)}")
        have = list(extracted[mid])
        top = max(have) if settings.get("layer") is None else settings["layer"]
        ks = settings.get("forecast_layers") or [top]
        resolved = []
        for key, layer in [("layer", top)] + [("forecast_layers", k) for k in ks]:
            idx = layer + n_layers(mid) + 1 if layer < 0 else layer
            if idx not in have:
                raise ConfigError(
                    f"forecast.{key}",
                    f"layer {layer} of model '{mid}' is not extracted (extracted: {have})",
                )
            resolved.append(int(idx))
        plan[mid] = (resolved[0], sorted(set(resolved[1:])))
    return plan


def forecast_window(features: np.ndarray, distance: int, width: int = 1, mode: str = "mean"):
    """Features of the window of ``width`` words ending ``distance`` words ahead of each word.

    Parameters
    ----------
    features : ndarray, shape (n_words, dim)
        Per-word features of one story.
    distance : int
        ``d >= 0``.
    width : int
        ``w >= 1``.
    mode : {"mean", "concat"}

    Returns
    -------
    ndarray, shape (n_words, dim) for "mean", (n_words, width * dim) for "concat"
        Rows of positions outside the story are zeros (see the module docstring).
    """
    if distance < 0 or width < 1:
        raise ValueError(f"need distance >= 0 and width >= 1, got {distance}, {width}")
    if mode not in MODES:
        raise ValueError(f"unknown forecast mode {mode!r}; use one of {MODES}")
    x = np.asarray(features, dtype=np.float32)
    n, dim = x.shape
    parts = []
    for offset in range(distance - width + 1, distance + 1):
        shifted = np.zeros_like(x)
        lo, hi = max(0, -offset), min(n, n - offset)
        if hi > lo:
            shifted[lo:hi] = x[lo + offset : hi + offset]
        parts.append(shifted)
    if mode == "concat":
        return np.concatenate(parts, axis=1)
    return (np.sum(parts, axis=0) / width).astype(np.float32)


def random_future(features: np.ndarray, seed: int, story: str) -> np.ndarray:
    """The story's word features with the words permuted: random words of the same story.

    Parameters
    ----------
    features : ndarray, shape (n_words, dim)
    seed : int
        From the config (``seed``).
    story : str
        The permutation is drawn from ``(seed, crc32(story))``, so it is the same for every
        subject, layer and distance, and does not change when stories are added.

    Returns
    -------
    ndarray, shape (n_words, dim)
        ``features[perm]``: a window built from it (:func:`forecast_window`) holds, at every
        word, the features of random words of the story in place of the upcoming ones.
    """
    x = np.asarray(features)
    rng = np.random.default_rng([int(seed), zlib.crc32(str(story).encode("utf-8"))])
    return x[rng.permutation(x.shape[0])]


def fit_pca(x: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA of the rows of ``x``.

    Returns
    -------
    mean : ndarray, shape (dim,)
    components : ndarray, shape (k, dim)
        ``k = min(n_components, rank)`` leading right singular vectors, each with its
        largest-magnitude loading positive.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
    comps = vt[: min(int(n_components), rank)]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    return mean, comps * signs[:, None]


def pca_transform(x: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Project rows of ``x`` on the components (float32)."""
    return ((np.asarray(x, np.float64) - mean) @ components.T).astype(np.float32)


def fit_forecast(
    dataset,
    subject: str,
    load_features: Callable[[str, int], np.ndarray],
    current_layer: int,
    forecast_layers: Sequence[int],
    distances: Sequence[int],
    *,
    width: int = 1,
    mode: str = "mean",
    temporal: dict,
    fitting: dict,
    control: str | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Forecast scores of one subject and model, for every forecast layer and distance.

    Parameters
    ----------
    dataset : dataset adapter
        ``train_stories``, ``test_stories``, ``words``, ``responses``, ``test_target``,
        ``tr``, ``trim_start``, ``trim_end``.
    subject : str
    load_features : callable
        ``(story, layer) -> (n_words, dim)`` per-word features.
    current_layer : int
        Layer of the current-word features.
    forecast_layers : sequence of int
        Layers ``k`` the forecast windows are built from.
    distances : sequence of int
        Distances ``d``.
    width, mode
        See :func:`forecast_window`.
    temporal, fitting : dict
        Config sections (as for :func:`lmbrain.encoding.fit_encoding_model`); all training
        stories are used.
    control : {None, "random_future"}
        With ``"random_future"``, every fit is repeated with the window built from
        :func:`random_future` features (see the module docstring).
    seed : int
        Seed of the random-future permutations (the config's ``seed``).

    Returns
    -------
    dict of ndarray
        ``r_base`` (n_voxels,), ``cv_base`` (n_voxels,): test r and CV score without
        forecast; ``r`` and ``cv`` (n_layers, n_distances, n_voxels) with forecast;
        ``F = r - r_base``, ``F_cv = cv - cv_base``; ``best_d`` and ``best_k`` per voxel
        (argmax of ``F_cv`` over distances and layers; -1 where no finite value);
        ``best_d_per_layer`` (n_layers, n_voxels); ``distances``, ``layers``;
        ``r_control``, ``cv_control``, ``F_control``, ``F_control_cv`` like ``r``... (NaN
        without a control) and ``control`` (``"none"`` or its name); ``n_train_stories``,
        ``n_test_stories``.
    """
    if control not in CONTROLS:
        raise ConfigError("forecast.control", f"unknown control {control!r}; use one of {CONTROLS}")
    train, test = list(dataset.train_stories), list(dataset.test_stories)
    stories = train + test
    cur = {s: load_features(s, current_layer) for s in stories}
    ys = {s: _target(dataset, subject, s, s in test) for s in stories}
    designs_cur = {s: _design(dataset, s, cur[s], ys[s].shape[0], temporal) for s in stories}
    y_train = np.concatenate([prepare_responses(ys[s], *_trims(dataset)) for s in train])
    y_test = np.concatenate([prepare_responses(ys[s], *_trims(dataset)) for s in test])
    groups = np.concatenate([np.full(designs_cur[s].shape[0], i) for i, s in enumerate(train)])
    alphas = alpha_grid(fitting["alphas"], key="fitting.alphas")

    def score(designs):
        fit = fit_ridge_cv(
            np.concatenate([designs[s] for s in train]),
            y_train,
            groups,
            alphas,
            n_folds=fitting["n_folds"],
            backend=fitting["backend"],
            solver=fitting["solver"],
            n_targets_batch=fitting.get("n_targets_batch"),
            cv_precision=fitting.get("cv_precision", "float64"),
        )
        pred = predict(fit, np.concatenate([designs[s] for s in test]))
        return pearson_r(y_test, pred), np.asarray(fit.cv_scores, dtype=np.float64)

    def score_window(src, d):
        win = {s: forecast_window(src[s], d, width, mode) for s in stories}
        mean, comps = fit_pca(np.concatenate([win[s] for s in train]), cur[train[0]].shape[1])
        designs = {
            s: _design(
                dataset,
                s,
                np.concatenate([cur[s], pca_transform(win[s], mean, comps)], axis=1),
                ys[s].shape[0],
                temporal,
            )
            for s in stories
        }
        return score(designs)

    r_base, cv_base = score(designs_cur)
    n_vox = y_train.shape[1]
    r = np.full((len(forecast_layers), len(distances), n_vox), np.nan)
    cv, r_ctl, cv_ctl = (np.full_like(r, np.nan) for _ in range(3))
    for a, layer in enumerate(forecast_layers):
        src = cur if layer == current_layer else {s: load_features(s, layer) for s in stories}
        shuffled = {s: random_future(src[s], seed, s) for s in stories} if control else None
        for b, d in enumerate(distances):
            r[a, b], cv[a, b] = score_window(src, d)
            if control:
                r_ctl[a, b], cv_ctl[a, b] = score_window(shuffled, d)
    out = _summarise(r, cv, r_base, cv_base, distances, forecast_layers)
    out.update(
        r_control=r_ctl.astype(np.float32),
        cv_control=cv_ctl.astype(np.float32),
        F_control=(r_ctl - r_base).astype(np.float32),
        F_control_cv=(cv_ctl - cv_base).astype(np.float32),
        control=np.asarray(control or "none"),
        n_train_stories=np.asarray(len(train)),
        n_test_stories=np.asarray(len(test)),
    )
    return out


def _summarise(r, cv, r_base, cv_base, distances, layers) -> dict[str, np.ndarray]:
    F, F_cv = r - r_base, cv - cv_base
    best_d, best_k = best_distance(F_cv)
    per_layer = np.stack([best_distance(F_cv[a : a + 1])[0] for a in range(F_cv.shape[0])])
    return {
        "r_base": r_base.astype(np.float32),
        "cv_base": cv_base.astype(np.float32),
        "r": r.astype(np.float32),
        "cv": cv.astype(np.float32),
        "F": F.astype(np.float32),
        "F_cv": F_cv.astype(np.float32),
        "best_d": np.where(best_d >= 0, np.asarray(distances)[np.maximum(best_d, 0)], -1),
        "best_k": np.where(best_k >= 0, np.asarray(layers)[np.maximum(best_k, 0)], -1),
        "best_d_per_layer": np.where(
            per_layer >= 0, np.asarray(distances)[np.maximum(per_layer, 0)], -1
        ),
        "distances": np.asarray(distances, dtype=np.int64),
        "layers": np.asarray(layers, dtype=np.int64),
    }


def best_distance(gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per voxel, the (distance index, layer index) of the largest gain.

    Parameters
    ----------
    gain : ndarray, shape (n_layers, n_distances, n_voxels)

    Returns
    -------
    d_index, k_index : ndarray of int, shape (n_voxels,)
        -1 where every value is NaN; ties go to the smallest layer, then distance.
    """
    n_k, n_d, n_vox = gain.shape
    flat = gain.reshape(n_k * n_d, n_vox)
    ok = np.isfinite(flat).any(axis=0)
    idx = np.argmax(np.where(np.isfinite(flat), flat, -np.inf), axis=0)
    return np.where(ok, idx % n_d, -1), np.where(ok, idx // n_d, -1)


def forecast_summary(
    result: dict[str, np.ndarray], voxels: dict[str, np.ndarray], keys: dict
) -> pd.DataFrame:
    """Mean ``F_d`` per (forecast layer, distance) over voxel sets: all, each hemisphere, ROI.

    Parameters
    ----------
    result : dict
        Output of :func:`fit_forecast`.
    voxels : dict
        ``hemisphere`` and optional ``roi`` arrays (the dataset's voxel table).
    keys : dict
        Columns put first in every row (dataset, subject, model...).

    Returns
    -------
    pandas.DataFrame
        Columns: ``keys``, ``layer``, ``distance``, ``hemisphere`` (``all``, ``L``, ``R``),
        ``roi`` (``all`` or an ROI label), ``n_voxels``, ``mean_F`` (test), ``mean_F_cv``,
        ``mean_r_base``, ``share_best`` (fraction of the set's voxels whose best distance,
        over layers, is this one), ``mean_F_control`` (the random-future control, NaN
        without it), ``control``, and the sample: ``n_subjects`` (1: a row is one subject's
        mean over the set's voxels), ``n_train_stories``, ``n_test_stories``,
        ``resampling`` (:data:`RESAMPLING`: no CI on these rows).
    """
    hemi = np.asarray(voxels["hemisphere"]).astype(str)
    roi = np.asarray(voxels.get("roi", np.full(hemi.shape, ""))).astype(str)
    sets = [("all", "all", np.ones(hemi.shape, bool))]
    sets += [(h, "all", hemi == h) for h in ("L", "R")]
    for label in sorted(set(roi) - {""}):
        sets += [(h, label, (roi == label) & (hemi == h)) for h in ("L", "R")]
    F_control = result.get("F_control", np.full_like(result["F"], np.nan))
    sample = {
        "control": str(result.get("control", "none")),
        "n_subjects": 1,
        "n_train_stories": int(result.get("n_train_stories", -1)),
        "n_test_stories": int(result.get("n_test_stories", -1)),
        "resampling": RESAMPLING,
    }
    rows = []
    for a, layer in enumerate(result["layers"]):
        for b, d in enumerate(result["distances"]):
            for h, label, mask in sets:
                rows.append(
                    {
                        **keys,
                        "layer": int(layer),
                        "distance": int(d),
                        "hemisphere": h,
                        "roi": label,
                        "n_voxels": int(mask.sum()),
                        "mean_F": _mean(result["F"][a, b][mask]),
                        "mean_F_cv": _mean(result["F_cv"][a, b][mask]),
                        "mean_r_base": _mean(result["r_base"][mask]),
                        "share_best": _mean((result["best_d"][mask] == d).astype(float)),
                        "mean_F_control": _mean(F_control[a, b][mask]),
                        **sample,
                    }
                )
    return pd.DataFrame(rows)


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _trims(dataset) -> tuple[int, int]:
    return dataset.trim_start, dataset.trim_end


def _target(dataset, subject, story, is_test):
    return dataset.test_target(subject, story) if is_test else dataset.responses(subject, story)


def _design(dataset, story, feats, n_trs, temporal):
    words = dataset.words(story)
    if feats.shape[0] != len(words):
        raise ValueError(f"story {story}: {feats.shape[0]} feature rows for {len(words)} words")
    times, durations = word_events(words, temporal)
    return design_from_features(dataset, feats, times, n_trs, temporal, durations)


def plot_forecast(table: pd.DataFrame, path) -> None:
    """F_d curves: mean over subjects of ``mean_F`` against distance, per hemisphere.

    One panel per (dataset, model); one line per hemisphere (and forecast layer when there
    are several), with a SEM band over subjects when there are several; the random-future
    control (``mean_F_control``, where computed) as a dashed line of the same colour; ROI rows
    are ignored. Written atomically as a PNG (dpi 150).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from lmbrain.io import atomic_path

    rows = table[(table["roi"] == "all") & table["hemisphere"].isin(["L", "R"])]
    panels = sorted({(d, m) for d, m in zip(rows["dataset"], rows["model"], strict=True)})
    n = max(1, len(panels))
    fig = Figure(figsize=(5.5 * n, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (dataset, model) in zip(axes, panels, strict=False):
        sub = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
        multi = sub["layer"].nunique() > 1
        for (hemi, layer), g in sub.groupby(["hemisphere", "layer"], sort=True):
            stats = g.groupby("distance")["mean_F"].agg(["mean", "std", "count"])
            sem = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
            label = f"{hemi}" + (f", layer {layer}" if multi else "")
            color = "C0" if hemi == "L" else "C3"
            line = ax.plot(stats.index, stats["mean"], "o-", label=label, color=color)[0]
            ax.fill_between(
                stats.index,
                stats["mean"] - sem,
                stats["mean"] + sem,
                color=line.get_color(),
                alpha=0.2,
                lw=0,
            )
            control = g.groupby("distance")["mean_F_control"].mean() if _has_control(g) else None
            if control is not None:
                ax.plot(
                    control.index, control, "x--", color=color, alpha=0.8, label=f"{label} control"
                )
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Forecast distance d (words ahead)")
        ax.set_ylabel("Forecast score F_d (gain in mean test r)")
        n_sub = sub["subject"].nunique()
        ax.set_title(f"{dataset}: {model} ({n_sub} subject{'s' * (n_sub > 1)})", fontsize=10)
        ax.legend(fontsize=8, title="hemisphere", title_fontsize=8)
    if not panels:
        axes[0].text(0.5, 0.5, "no forecast rows", ha="center", va="center")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    fig.clear()


def _has_control(rows: pd.DataFrame) -> bool:
    return "mean_F_control" in rows.columns and bool(rows["mean_F_control"].notna().any())


def plot_forecast_roi(table: pd.DataFrame, path) -> None:
    """F_d curves per ROI: mean over subjects of ``mean_F`` against distance.

    One panel per (dataset, model, hemisphere ``L``/``R``), one line per ROI (the first
    forecast layer when there are several; its random-future control dashed, where
    computed). Without ROI rows the figure says so. Written atomically (PNG, dpi 150).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from lmbrain.io import atomic_path

    rows = table[(table["roi"].astype(str) != "all") & table["hemisphere"].isin(["L", "R"])]
    panels = sorted(set(zip(rows["dataset"], rows["model"], rows["hemisphere"], strict=True)))
    n = max(1, len(panels))
    cols = min(n, 2)
    fig = Figure(figsize=(5.5 * cols, 4.2 * -(-n // cols)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(-(-n // cols), cols, squeeze=False).ravel()
    rois = sorted(rows["roi"].astype(str).unique())
    colors = {roi: f"C{i % 10}" for i, roi in enumerate(rois)}
    for ax, (dataset, model, hemi) in zip(axes, panels, strict=False):
        sub = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
        sub = sub[(sub["hemisphere"] == hemi) & (sub["layer"] == sub["layer"].min())]
        for roi, g in sub.groupby(sub["roi"].astype(str), sort=True):
            stats = g.groupby("distance")["mean_F"].agg(["mean", "std", "count"])
            sem = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0)
            ax.plot(stats.index, stats["mean"], "o-", color=colors[roi], label=roi)
            ax.fill_between(
                stats.index,
                stats["mean"] - sem,
                stats["mean"] + sem,
                color=colors[roi],
                alpha=0.15,
                lw=0,
            )
            if _has_control(g):
                control = g.groupby("distance")["mean_F_control"].mean()
                ax.plot(control.index, control, "x--", color=colors[roi], alpha=0.6)
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Forecast distance d (words ahead)")
        ax.set_ylabel("Forecast score F_d (gain in mean test r)")
        n_sub = sub["subject"].nunique()
        title = f"{dataset}: {model}, {hemi} hemisphere, layer {sub['layer'].min()}"
        ax.set_title(f"{title} ({n_sub} subject{'s' * (n_sub > 1)})", fontsize=9)
        ax.legend(fontsize=7, title="ROI (dashed: control)", title_fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if not panels:
        axes[0].set_axis_on()
        axes[0].text(0.5, 0.5, "no ROI labels: no ROI forecast rows", ha="center", va="center")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    fig.clear()
