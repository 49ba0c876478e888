"""Banded ridge: several feature spaces fitted jointly, one regularisation per band.

Text and audio features (or two language models, or two layers) explain overlapping parts of
the response. Concatenating them into one ridge problem with a single penalty lets the larger
or noisier space dominate; banded ridge (Nunez-Elizalde et al. 2019; Dupre la Tour et al.
2022) gives each band ``i`` its own scaling ``exp(delta_i)`` of the features, so each voxel
chooses how much each space contributes. This module wraps himalaya's ``BandedRidgeCV``
(random search over the simplex of band scalings, with an alpha grid) with the project's
story-grouped folds, and adds the two ways the field reports a joint model:

- **split scores** (:func:`split_r2`): the joint prediction is a sum of per-band
  predictions ``y_hat = sum_i X_i w_i``; the R^2 is split as
  ``R2_i = (2 y^T y_hat_i - y_hat_i^T y_hat) / y^T y`` (on centred ``y``), which sums over
  bands to the joint R^2 (himalaya's ``r2_score_split``);
- **variance partitioning** (:func:`variance_partition`): from the R^2 of the joint model
  and of the models that leave one band out, each band's unique variance is
  ``R2(all) - R2(all without i)`` and the shared variance is what is left,
  ``R2(all) - sum_i unique_i`` (for two bands: ``R2_A + R2_B - R2_AB``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lmbrain.fitting import select_backend, story_folds


@dataclass
class BandedFit:
    """Result of :func:`fit_banded_ridge_cv`.

    Attributes
    ----------
    coefs : list of numpy.ndarray
        Weights per band, each ``(n_features_i, n_voxels)``, float32.
    deltas : numpy.ndarray of shape (n_bands, n_voxels)
        Log band scalings chosen per voxel (the effective penalty of band ``i`` is
        ``exp(-delta_i)``).
    cv_scores : numpy.ndarray of shape (n_voxels,)
        Best cross-validated score of each voxel (himalaya's, negative MSE by default).
    band_names : list of str
    """

    coefs: list
    deltas: np.ndarray
    cv_scores: np.ndarray
    band_names: list

    def predict_split(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        """Per-band predictions ``(n_bands, n_samples, n_voxels)``; their sum is the joint."""
        if len(Xs) != len(self.coefs):
            raise ValueError(f"expected {len(self.coefs)} feature spaces, got {len(Xs)}")
        return np.stack(
            [np.asarray(X, dtype=np.float32) @ w for X, w in zip(Xs, self.coefs, strict=True)]
        )


def fit_banded_ridge_cv(
    Xs: Sequence[np.ndarray],
    Y: np.ndarray,
    groups: Sequence,
    alphas: Sequence[float],
    *,
    band_names: Sequence[str] | None = None,
    n_iter: int = 20,
    n_folds: int = 5,
    seed: int = 0,
    backend: str = "auto",
) -> BandedFit:
    """Fit a banded ridge model with story-grouped cross-validation.

    Parameters
    ----------
    Xs : sequence of numpy.ndarray, each (n_samples, n_features_i)
        One design matrix per band (already delayed and z-scored).
    Y : numpy.ndarray of shape (n_samples, n_voxels)
    groups : sequence of length n_samples
        Story id of each row; folds from :func:`lmbrain.fitting.story_folds`.
    alphas : sequence of float
        Penalty grid searched for every sampled band scaling.
    band_names : sequence of str, optional
        Names of the bands (default ``band0``, ``band1``, ...).
    n_iter : int, default 20
        Band scalings sampled on the simplex (the first ones are the corners and the centre
        in himalaya's random search, so each single band is always tried).
    n_folds : int, default 5
    seed : int, default 0
        Seed of the random search.
    backend : str, default "auto"
        See :func:`lmbrain.fitting.select_backend`.

    Returns
    -------
    BandedFit
    """
    from himalaya.backend import get_backend
    from himalaya.ridge import BandedRidgeCV

    if len(Xs) < 2:
        raise ValueError("banded ridge needs at least two feature spaces")
    select_backend(backend)
    bk = get_backend()
    Xs = [np.ascontiguousarray(X, dtype=np.float32) for X in Xs]
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    if Y.ndim == 1:
        Y = Y[:, None]
    if any(X.shape[0] != Y.shape[0] for X in Xs):
        raise ValueError("every feature space needs one row per response row")
    folds = story_folds(groups, n_folds)
    model = BandedRidgeCV(
        groups="input",
        solver_params=dict(
            alphas=np.asarray(alphas, dtype=np.float32),
            n_iter=int(n_iter),
            progress_bar=False,
            warn=False,
        ),
        cv=folds,
        random_state=int(seed),
    )
    model.fit(Xs, Y)
    coef = np.asarray(bk.to_numpy(model.coef_), dtype=np.float32).reshape(-1, Y.shape[1])
    edges = np.cumsum([0] + [X.shape[1] for X in Xs])
    names = list(band_names) if band_names is not None else [f"band{i}" for i in range(len(Xs))]
    if len(names) != len(Xs):
        raise ValueError("band_names must name every feature space")
    return BandedFit(
        coefs=[coef[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)],
        deltas=np.asarray(bk.to_numpy(model.deltas_), dtype=np.float64).reshape(len(Xs), -1),
        cv_scores=np.asarray(bk.to_numpy(model.cv_scores_), dtype=np.float64).max(axis=0),
        band_names=names,
    )


def split_r2(y_true: np.ndarray, pred_split: np.ndarray) -> np.ndarray:
    """Split the joint R^2 of a sum of per-band predictions into one share per band.

    ``R2_i = (2 y_c . p_i - p_i . p) / (y_c . y_c)`` where ``y_c`` is the centred response,
    ``p_i`` band ``i``'s prediction and ``p = sum_i p_i``; the shares sum to
    ``1 - |y_c - p|^2 / |y_c|^2``, the R^2 of the joint prediction (exactly
    :func:`lmbrain.scoring.r2_score` for z-scored responses, whose mean is 0). This is
    himalaya's ``r2_score_split``; a prediction's constant offset counts against its band.

    Parameters
    ----------
    y_true : numpy.ndarray of shape (n_samples, n_voxels)
    pred_split : numpy.ndarray of shape (n_bands, n_samples, n_voxels)

    Returns
    -------
    numpy.ndarray of shape (n_bands, n_voxels)
        NaN where the response is constant.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(pred_split, dtype=np.float64)
    if y.ndim == 1:
        y, p = y[:, None], p[:, :, None]
    y = y - y.mean(0)
    total = p.sum(0)
    denom = (y * y).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = (2 * (y[None] * p).sum(1) - (p * total[None]).sum(1)) / denom
    return np.where(denom > 0, shares, np.nan)


def variance_partition(
    r2: Mapping[frozenset, np.ndarray], bands: Sequence[str]
) -> dict[str, np.ndarray]:
    """Unique and shared explained variance from the joint and leave-one-band-out models.

    Parameters
    ----------
    r2 : mapping
        R^2 per voxel of the model fitted on each subset of bands, keyed by
        ``frozenset`` of band names; needs the full set and every set that leaves one band
        out (for two bands: ``{A, B}``, ``{A}``, ``{B}``).
    bands : sequence of str

    Returns
    -------
    dict
        ``unique_<band>`` = ``R2(all) - R2(all without band)`` per band, ``shared`` =
        ``R2(all) - sum of unique``, and ``joint`` = ``R2(all)``.
    """
    full = frozenset(bands)
    missing = [sorted(s) for s in [full, *(full - {b} for b in bands)] if s and s not in r2]
    if missing:
        raise ValueError(f"variance partitioning needs the R^2 of the band sets {missing}")
    joint = np.asarray(r2[full], dtype=np.float64)
    out = {"joint": joint}
    total_unique = np.zeros_like(joint)
    for band in bands:
        rest = full - {band}
        unique = joint - (np.asarray(r2[rest], dtype=np.float64) if rest else 0.0)
        out[f"unique_{band}"] = unique
        total_unique = total_unique + unique
    out["shared"] = joint - total_unique
    return out


def winning_band(shares: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """Name of the band with the largest split R^2 per voxel ('' where every share is NaN)."""
    shares = np.asarray(shares, dtype=np.float64)
    valid = np.isfinite(shares).any(axis=0)
    idx = np.argmax(np.where(np.isfinite(shares), shares, -np.inf), axis=0)
    return np.where(valid, np.asarray(band_names, dtype=object)[idx], "").astype(str)


# --------------------------------------------------------------------------- encoding
def _band_designs(dataset, subject, stories, bands, temporal, test: bool):
    """Per-band design matrices, the responses and story groups of ``stories``."""
    from lmbrain.encoding import story_design
    from lmbrain.temporal import prepare_responses

    xs = [[] for _ in bands]
    ys, groups = [], []
    for i, story in enumerate(stories):
        y = dataset.test_target(subject, story) if test else dataset.responses(subject, story)
        for k, (_, path, layer) in enumerate(bands):
            xs[k].append(story_design(dataset, path, story, layer, y.shape[0], temporal))
        ys.append(prepare_responses(y, dataset.trim_start, dataset.trim_end))
        groups.append(np.full(ys[-1].shape[0], i))
    return [np.concatenate(x) for x in xs], np.concatenate(ys), np.concatenate(groups)


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    from lmbrain.scoring import r2_score

    return np.asarray(r2_score(y, pred), dtype=np.float64)


def fit_banded_encoding_model(
    dataset,
    subject: str,
    bands: Sequence[tuple[str, str, int]],
    *,
    temporal: dict,
    fitting: dict,
    n_iter: int = 20,
    seed: int = 0,
):
    """Fit a banded encoding model on every training story and score it on the test stories.

    Besides the joint model, the models that leave one band out are fitted (ridge for a
    single band, banded ridge otherwise) for :func:`variance_partition`.

    Parameters
    ----------
    dataset : dataset adapter
    subject : str
    bands : sequence of (name, feature_path, layer)
        One feature space per band: features of a model (HDF5 of the extraction rule) at
        one layer.
    temporal, fitting : dict
        Config sections (the same temporal model and alpha grid as single-space fits).
    n_iter : int
        Band scalings tried by the random search.
    seed : int
        Seed of the random search.

    Returns
    -------
    voxels : dict of numpy.ndarray
        ``r2`` (joint), ``r`` (joint Pearson r), ``split_r2_<band>``, ``unique_<band>``,
        ``shared``, ``winner`` (band with the largest split R^2) and ``hemisphere``.
    row : dict
        Summary: the means of these over voxels, overall and per hemisphere.
    """
    from lmbrain.fitting import alpha_grid
    from lmbrain.scoring import pearson_r

    names = [name for name, _, _ in bands]
    if len(set(names)) != len(names):
        raise ValueError(f"band names must be distinct, got {names}")
    X, Y, groups = _band_designs(dataset, subject, dataset.train_stories, bands, temporal, False)
    Xt, Yt, _ = _band_designs(dataset, subject, dataset.test_stories, bands, temporal, True)
    alphas = alpha_grid(fitting["alphas"], key="fitting.alphas")
    common = dict(n_folds=fitting["n_folds"], backend=fitting["backend"])

    def fit_subset(keep: list[int]) -> np.ndarray:
        """Test-set predictions of the model fitted on the bands ``keep``."""
        if len(keep) == 1:
            from lmbrain.fitting import fit_ridge_cv, predict

            single = fit_ridge_cv(X[keep[0]], Y, groups, alphas, solver=fitting["solver"], **common)
            return predict(single, Xt[keep[0]])[None]
        sub = fit_banded_ridge_cv(
            [X[k] for k in keep],
            Y,
            groups,
            alphas,
            band_names=[names[k] for k in keep],
            n_iter=n_iter,
            seed=seed,
            **common,
        )
        return sub.predict_split([Xt[k] for k in keep])

    pred_split = fit_subset(list(range(len(bands))))
    joint = pred_split.sum(0)
    r2 = {frozenset(names): _r2(Yt, joint)}
    for k in range(len(bands)):
        keep = [j for j in range(len(bands)) if j != k]
        r2[frozenset(names[j] for j in keep)] = _r2(Yt, fit_subset(keep).sum(0))
    shares = split_r2(Yt, pred_split)
    parts = variance_partition(r2, names)
    hemi = np.asarray(dataset.voxels(subject)["hemisphere"])
    voxels = {
        "r2": parts["joint"].astype(np.float32),
        "r": np.asarray(pearson_r(Yt, joint), dtype=np.float32),
        "shared": parts["shared"].astype(np.float32),
        "winner": winning_band(shares, names),
        "hemisphere": hemi,
    }
    for k, name in enumerate(names):
        voxels[f"split_r2_{name}"] = shares[k].astype(np.float32)
        voxels[f"unique_{name}"] = parts[f"unique_{name}"].astype(np.float32)
    row = {"subject": subject, "bands": names, "n_train_trs": int(Y.shape[0])}
    row["n_voxels"] = int(Y.shape[1])
    return voxels, row
