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


# --------------------------------------------------------------------------- datasets

ALL_VOXELS = "all"
RSA_COLUMNS = (
    "dataset subject roi model family untrained baseline n_layers layer depth rho p_value "
    "noise_ceiling_lower noise_ceiling_upper n_stimuli n_voxels"
).split()


def brain_rdms(
    dataset, subjects: Sequence[str], min_voxels: int = 3, responses: Mapping | None = None
) -> dict:
    """RDMs of every subject's ROIs (and of all its voxels) over the test stimuli.

    Patterns are the betas (z-scored per session when the dataset says so) averaged over
    the repeats of each test image. ROIs with fewer than ``min_voxels`` voxels are skipped.
    ``responses``: ``{subject: lmbrain.trial_encoding.subject_responses(...)}``, read from
    the dataset for subjects it lacks.

    Returns
    -------
    dict
        ``(subject, roi) -> (rdm vector, n_voxels)``; roi ``"all"`` is every voxel.
    """
    from lmbrain.trial_encoding import stimulus_means, subject_responses

    out = {}
    for subject in subjects:
        data = (responses or {}).get(subject) or subject_responses(dataset, subject)
        _, means, _ = stimulus_means(data["responses"], data["stimulus"], dataset.test_stimuli)
        rois = dataset.voxels(subject)["roi"]
        masks = {ALL_VOXELS: np.ones(len(rois), dtype=bool)}
        masks.update({str(r): rois == r for r in sorted(set(rois) - {""})})
        for roi, mask in masks.items():
            if mask.sum() >= min_voxels:
                out[(subject, roi)] = (rdm(means[:, mask]), int(mask.sum()))
    return out


def dataset_rsa(
    dataset,
    subjects: Sequence[str],
    models: Mapping[str, Mapping],
    n_permutations: int,
    seed: int,
    dataset_name: str = "",
    responses: Mapping | None = None,
):
    """RSA of every (subject, ROI) against every (model, layer) on the test stimuli.

    Parameters
    ----------
    dataset : :class:`lmbrain.datasets.trials.TrialDataset`
    subjects : sequence of str
    models : mapping model id -> {"path", "layers", "family", "untrained", "baseline"}
        Stimulus feature files (:func:`lmbrain.sentence_features.write_stimulus_features`).
    n_permutations, seed : int
    dataset_name : str
    responses : mapping, optional
        Per-subject preprocessed responses (see :func:`brain_rdms`).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RSA_COLUMNS`, one row per (subject, roi, model, layer).
    """
    import pandas as pd

    from lmbrain.features import read_feature_info
    from lmbrain.sentence_features import read_stimulus_features

    brains = brain_rdms(dataset, subjects, responses=responses)
    model_rdms, facts = {}, {}
    for mid, spec in models.items():
        n_layers = int(read_feature_info(spec["path"])["n_layers"])
        for layer in spec["layers"]:
            _, feats = read_stimulus_features(spec["path"], layer, dataset.test_stimuli)
            model_rdms[(mid, int(layer))] = rdm(feats)
        facts[mid] = {
            "family": spec.get("family", mid),
            "untrained": bool(spec.get("untrained", False)),
            "baseline": bool(spec.get("baseline", False)),
            "n_layers": n_layers,
        }
    rows = rsa_rows({k: v[0] for k, v in brains.items()}, model_rdms, n_permutations, seed)
    for row in rows:
        row.update(facts[row["model"]])
        row["dataset"] = dataset_name or dataset.name
        row["depth"] = row["layer"] / row["n_layers"]
        row["n_voxels"] = brains[(row["subject"], row["roi"])][1]
    return pd.DataFrame(rows, columns=RSA_COLUMNS)


def plot_rsa(table, path) -> None:
    """RSA against relative depth, one panel per ROI (mean over subjects), with the ceiling.

    Models are lines over depth (untrained twins dashed), baselines horizontal dotted lines,
    and the grey band spans the noise ceiling's lower to upper bound.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lmbrain.io import atomic_path

    rois = sorted(table["roi"].unique(), key=lambda r: (r != ALL_VOXELS, r)) or [ALL_VOXELS]
    fig = Figure(figsize=(5.0 * len(rois), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(rois), squeeze=False)[0]
    for ax, roi in zip(axes, rois, strict=True):
        sub = table[table["roi"] == roi]
        if sub.empty:
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
            continue
        lo, hi = sub["noise_ceiling_lower"].iloc[0], sub["noise_ceiling_upper"].iloc[0]
        if np.isfinite(hi):
            ax.axhspan(lo if np.isfinite(lo) else hi, hi, color="0.85", label="noise ceiling")
        mean = (
            sub.groupby(["model", "layer"], sort=True)
            .agg(
                rho=("rho", "mean"),
                depth=("depth", "first"),
                baseline=("baseline", "first"),
                untrained=("untrained", "first"),
            )
            .reset_index()
        )
        for mid, rows in mean.groupby("model", sort=True):
            if rows["baseline"].iloc[0]:
                ax.axhline(rows["rho"].iloc[0], ls=":", lw=1.2, label=f"{mid} (baseline)")
            else:
                style = "--" if rows["untrained"].iloc[0] else "-"
                ax.plot(rows["depth"], rows["rho"], style, marker="o", label=mid)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(
            title=f"ROI {roi}",
            xlabel="relative depth (layer / n_layers)",
            ylabel="Spearman rho (model RDM, brain RDM)",
        )
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
