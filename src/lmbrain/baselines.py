"""Baseline feature spaces that need no language model, and the trained-minus-untrained gap.

A baseline is a model entry of the configuration with a ``baseline`` key instead of (or
besides) ``model``:

``baseline: random_vectors``, ``width: 768``
    An independent N(0, 1) vector for every word *occurrence* (two occurrences of "the"
    get different vectors): a feature space of the right width that carries only word
    timing (any linear read-out of it is noise locked to word onsets).
``baseline: random_word_embeddings``, ``width: 768``
    A fixed N(0, 1) vector per word *type* (the lookup key of :func:`normalize_word`):
    lexical identity without any learned similarity.
``baseline: static``, ``path: glove.txt``
    Static word embeddings read from a GloVe-format text file (``word v1 v2 ...`` per
    line, a word2vec-style ``<count> <dim>`` header line is skipped). Words missing from
    the file (out of vocabulary) get zeros; their count is logged and stored.

Random baselines draw from ``numpy.random.default_rng([seed, crc32(key)])`` with the key the
story name (random vectors) or the word type (random embeddings), so a vector does not
depend on which other stories or words a dataset has, and reruns are identical.

Seeds and widths expand into one model id each (:func:`expand_model_entries`):
``seeds: [0, 1, 2]`` (random baselines and untrained twins) gives ids ``<name>-s0``,
``<name>-s1``...; ``width: [64, 768]`` gives ``<name>-w64``, ``<name>-w768`` (then the seed
suffix); ``width: models`` takes the hidden sizes of the trained models listed
(:func:`expand_model_widths`, when the workflow starts). A baseline writes the same feature HDF5 file as a language model, with one "layer"
0, so fits, scores and plots handle it unchanged. Its file attributes say ``n_params = 0``
(nothing is learned from text; the score table's parameter count, which the scaling fits use,
stays out of the model-size axis), ``n_layers = 1`` (so depth = layer / n_layers = 0),
``n_table_entries`` (the size of its lookup table: word types x width for the random
embeddings, vocabulary found x dim for a static file, 0 for random vectors) and ``n_oov``.
"""

from __future__ import annotations

import copy
import logging
import string
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmbrain.errors import ConfigError, InputError

if TYPE_CHECKING:  # pandas is imported where used: lmbrain.config (every job) imports this
    import pandas as pd

BASELINES = ("random_vectors", "random_word_embeddings", "static")
_STRIP = string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00ab\u00bb"

log = logging.getLogger("lmbrain")


# --------------------------------------------------------------------------- config entries


def is_baseline(entry: Mapping) -> bool:
    """Whether a model entry is a baseline (has a ``baseline`` key)."""
    return bool(entry.get("baseline"))


def expand_model_entries(entries: Sequence[Mapping]) -> list[dict]:
    """Expand ``seeds`` lists (and baseline ``width`` lists) into one entry per model id.

    Parameters
    ----------
    entries : sequence of mapping
        The config's ``models`` list (validated by the schema).

    Returns
    -------
    list of dict
        Entries without ``seeds`` and with a scalar ``width``. An entry with ``seeds: [s...]``
        becomes one entry per seed with ``seed: s`` and, when it has a ``name``, the name
        ``<name>-s<s>`` (unnamed untrained twins already get ``-untrained-s<seed>``). A
        baseline with ``width: [w...]`` becomes one entry per width named
        ``<name>-w<w>`` (before the seed suffix). Baselines are marked ``untrained: true``
        (no trained language model), so they never enter trained-model fits.

    Raises
    ------
    ConfigError
        A baseline without a ``name``, a random baseline without a ``width``, a static
        baseline without a ``path``, or ``seeds`` on an entry that is neither untrained nor
        a random baseline.
    """
    out = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        if is_baseline(entry):
            _check_baseline(entry, i)
            entry["untrained"] = True
        if entry.get("seeds") is not None and not (entry.get("untrained") or is_baseline(entry)):
            raise ConfigError(
                f"models.{i}.seeds", "only untrained twins and random baselines take seeds"
            )
        widths = entry.get("width")
        if widths == "models":  # resolved when the workflow starts (expand_model_widths)
            out.append(entry)
            continue
        seeds = entry.pop("seeds", None)
        variants = [entry]
        if isinstance(widths, list):
            variants = [_renamed(entry, f"-w{int(w)}", width=int(w)) for w in widths]
        if seeds is not None:
            variants = [
                _renamed(v, f"-s{int(s)}", seed=int(s)) if v.get("name") else {**v, "seed": s}
                for v in variants
                for s in seeds
            ]
        out.extend(variants)
    return out


def read_hidden_size(entry: Mapping, cache_dir: str | Path) -> int:
    """Hidden size of a language-model entry, read from its config without loading weights.

    Local folders and packages are read from ``config.json`` (``hidden_size``, ``n_embd``,
    ``d_model``, also inside ``text_config``...), GGUF files from their
    ``<arch>.embedding_length`` header, hub names through ``transformers.AutoConfig``.

    Raises
    ------
    InputError
        When the size cannot be found.
    """
    import json

    from lmbrain.models import _first_int, gguf_metadata, resolve_source

    source, gguf = resolve_source(entry, cache_dir)
    keys = ("hidden_size", "n_embd", "d_model")
    if isinstance(gguf, Path):
        meta = gguf_metadata(gguf)
        size = meta.get(f"{meta.get('general.architecture')}.embedding_length")
    elif isinstance(source, Path):
        cfg_file = source / "config.json"
        if not cfg_file.is_file():
            raise InputError(source, "no config.json to read the hidden size from")
        size = _first_int(json.loads(cfg_file.read_text()), keys)
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, gguf_file=gguf, trust_remote_code=False)
            size = _first_int(config.to_dict(), keys)
        except (OSError, ValueError) as exc:
            raise InputError(source, f"cannot read the model config ({exc})") from exc
    if not isinstance(size, int):
        raise InputError(gguf or source, "no hidden size in the model config")
    return int(size)


def expand_model_widths(entries: Sequence[Mapping], cache_dir: str | Path) -> list[dict]:
    """Replace ``width: models`` of random baselines by the widths of the listed models.

    Parameters
    ----------
    entries : sequence of mapping
        Expanded entries (:func:`expand_model_entries`).
    cache_dir : str or Path
        Cache folder (packaged GGUF models).

    Returns
    -------
    list of dict
        A baseline with ``width: models`` becomes one entry per distinct hidden size of the
        trained, non-baseline models (sorted) and seed, named ``<name>-w<width>-s<seed>``
        as for a ``width`` list (:func:`expand_model_entries`).
    """
    if not any(e.get("width") == "models" for e in entries):
        return [dict(e) for e in entries]
    trained = [e for e in entries if not e.get("untrained") and not is_baseline(e)]
    if not trained:
        raise ConfigError("models.width", "`width: models` needs at least one trained model")
    widths = sorted({read_hidden_size(e, cache_dir) for e in trained})
    out = []
    for entry in entries:
        if entry.get("width") != "models":
            out.append(dict(entry))
            continue
        entry = {**entry, "width": widths}
        out.extend(expand_model_entries([entry]))
    return out


def _renamed(entry: dict, suffix: str, **changes) -> dict:
    new = copy.deepcopy(entry)
    new.update(changes)
    if new.get("name"):
        new["name"] = f"{new['name']}{suffix}"
    return new


def _check_baseline(entry: dict, i: int) -> None:
    kind = entry["baseline"]
    if kind not in BASELINES:
        raise ConfigError(f"models.{i}.baseline", f"unknown baseline {kind!r}; use {BASELINES}")
    if not entry.get("name"):
        raise ConfigError(f"models.{i}.name", "a baseline needs a `name` (its output id)")
    if kind == "static":
        if not entry.get("path"):
            raise ConfigError(f"models.{i}.path", "a static baseline needs the embeddings file")
        if entry.get("seeds") is not None:
            raise ConfigError(f"models.{i}.seeds", "a static baseline has nothing random")
    elif entry.get("width") is None:
        raise ConfigError(f"models.{i}.width", f"a {kind} baseline needs a `width`")


def untrained_twins(entries: Sequence[Mapping]) -> dict[str, str]:
    """Map each untrained twin's id to the id of its trained model.

    The trained model of an untrained entry is the first trained, non-baseline entry with
    the same ``model`` and ``gguf_file``.

    Parameters
    ----------
    entries : sequence of mapping
        Expanded model entries (:func:`expand_model_entries`).

    Returns
    -------
    dict of str to str
        ``{untrained_id: trained_id}``; twins without a trained model are left out.
    """
    from lmbrain.models import model_id

    trained = {}
    for entry in entries:
        if not entry.get("untrained") and not is_baseline(entry):
            trained.setdefault((entry["model"], entry.get("gguf_file")), model_id(entry))
    out = {}
    for entry in entries:
        if entry.get("untrained") and not is_baseline(entry):
            key = (entry["model"], entry.get("gguf_file"))
            if key in trained:
                out[model_id(entry)] = trained[key]
    return out


# --------------------------------------------------------------------------- features


def normalize_word(word: str) -> str:
    """Lookup key of a word: lower-cased, surrounding punctuation and quotes stripped.

    ``"Farm,"`` -> ``"farm"``, ``"“You"`` -> ``"you"``, ``"don't"`` -> ``"don't"``
    (inner punctuation stays), ``"--"`` -> ``""``.
    """
    return str(word).strip().lower().strip(_STRIP)


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def random_vectors(n_words: int, width: int, seed: int, story: str) -> np.ndarray:
    """Independent N(0, 1) vectors, one per word occurrence of a story.

    Parameters
    ----------
    n_words : int
    width : int
    seed : int
    story : str
        Story name (part of the seed, so stories get different vectors).

    Returns
    -------
    ndarray, shape (n_words, width), float32
    """
    return _rng(seed, f"story:{story}").standard_normal((n_words, width)).astype(np.float32)


def random_word_embedding(key: str, width: int, seed: int) -> np.ndarray:
    """The fixed N(0, 1) vector of one word type (float32, shape (width,))."""
    return _rng(seed, f"word:{key}").standard_normal(width).astype(np.float32)


def random_word_embeddings(words: Sequence[str], width: int, seed: int) -> np.ndarray:
    """Per-word vectors of a fixed random embedding table (one vector per word type).

    Parameters
    ----------
    words : sequence of str
        The words (raw; looked up by :func:`normalize_word`).
    width : int
    seed : int

    Returns
    -------
    ndarray, shape (n_words, width), float32
        Words whose key is empty (pure punctuation) get zeros.
    """
    table: dict[str, np.ndarray] = {}
    out = np.zeros((len(words), width), dtype=np.float32)
    for i, word in enumerate(words):
        key = normalize_word(word)
        if not key:
            continue
        if key not in table:
            table[key] = random_word_embedding(key, width, seed)
        out[i] = table[key]
    return out


def read_static_embeddings(path: str | Path, vocabulary: Iterable[str] | None = None):
    """Read a GloVe-format text file (``word v1 ... vd`` per line).

    Parameters
    ----------
    path : str or Path
    vocabulary : iterable of str, optional
        Keep only these keys (others are skipped while streaming, which bounds memory for
        large files). Keys of the file are normalized with :func:`normalize_word`; the first
        line with a given key wins.

    Returns
    -------
    table : dict of str to ndarray (float32)
    dim : int

    Raises
    ------
    InputError
        Missing or empty file, a line with a different number of values, a non-number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "static embeddings file not found")
    wanted = None if vocabulary is None else set(vocabulary)
    table: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if not line.strip():
                continue
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: "<count> <dim>"
            if len(parts) < 2:
                raise InputError(path, f"line {lineno}: expected 'word v1 v2 ...'")
            if dim is None:
                dim = len(parts) - 1
            elif len(parts) - 1 != dim:
                raise InputError(
                    path, f"line {lineno}: {len(parts) - 1} values, but earlier lines have {dim}"
                )
            key = normalize_word(parts[0])
            if not key or key in table or (wanted is not None and key not in wanted):
                continue
            try:
                table[key] = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                raise InputError(path, f"line {lineno}: non-numeric value") from None
    if dim is None:
        raise InputError(path, "no embeddings in the file")
    return table, dim


def static_embeddings(words: Sequence[str], table: Mapping, dim: int) -> tuple[np.ndarray, int]:
    """Look words up in a static table; out-of-vocabulary words get zeros.

    Returns
    -------
    features : ndarray, shape (n_words, dim), float32
    n_oov : int
        Words (occurrences) without an entry.
    """
    out = np.zeros((len(words), dim), dtype=np.float32)
    n_oov = 0
    for i, word in enumerate(words):
        vec = table.get(normalize_word(word))
        if vec is None:
            n_oov += 1
        else:
            out[i] = vec
    return out, n_oov


def baseline_features(
    entry: Mapping, stories: Mapping[str, Sequence[str]]
) -> tuple[dict[str, np.ndarray], dict]:
    """Features of every story for a baseline entry, and the feature-file attributes.

    Parameters
    ----------
    entry : mapping
        An expanded baseline entry (``baseline``, ``width``/``path``, ``seed``, ``name``).
    stories : mapping of str to sequence of str
        ``{story: words}``.

    Returns
    -------
    features : dict of str to ndarray
        ``{story: (n_words, width) float32}``, stored as layer 0.
    info : dict
        File attributes (see the module docstring): ``n_params`` (0),
        ``n_params_nonembedding`` (0), ``n_layers`` (1), ``hidden_size``, ``baseline``,
        ``seed``, ``n_table_entries``, ``n_words``, ``n_oov``, ``layers`` ([0]), ``model_id``.
    """
    from lmbrain.models import model_id

    kind = entry["baseline"]
    seed = int(entry.get("seed") or 0)
    feats: dict[str, np.ndarray] = {}
    n_oov = 0
    if kind == "random_vectors":
        width = int(entry["width"])
        for story, words in stories.items():
            feats[story] = random_vectors(len(words), width, seed, story)
        n_table = 0
    elif kind == "random_word_embeddings":
        width = int(entry["width"])
        for story, words in stories.items():
            feats[story] = random_word_embeddings(words, width, seed)
        types = {normalize_word(w) for words in stories.values() for w in words} - {""}
        n_table = len(types) * width
    elif kind == "static":
        vocab = {normalize_word(w) for words in stories.values() for w in words}
        table, width = read_static_embeddings(entry["path"], vocab)
        for story, words in stories.items():
            feats[story], oov = static_embeddings(words, table, width)
            n_oov += oov
        n_table = len(table) * width
    else:
        raise ConfigError("models.baseline", f"unknown baseline {kind!r}; use {BASELINES}")
    n_words = sum(len(w) for w in stories.values())
    if n_oov:
        log.warning("%s: %d of %d words not in %s (zeros)", kind, n_oov, n_words, entry["path"])
    info = {
        "model_id": model_id(entry),
        "baseline": kind,
        "source": str(entry.get("path") or kind),
        "seed": seed if kind != "static" else None,
        "untrained": True,
        "n_params": 0,
        "n_params_nonembedding": 0,
        "n_layers": 1,
        "hidden_size": int(width),
        "n_table_entries": int(n_table),
        "n_words": int(n_words),
        "n_oov": int(n_oov),
        "layers": [0],
    }
    return feats, info


def write_baseline_features(path: str | Path, entry: Mapping, dataset, storage_dtype="float32"):
    """Compute a baseline's features for every story of a dataset and write the HDF5 file.

    Parameters
    ----------
    path : str or Path
        Output ``.h5`` (same layout as :class:`lmbrain.features.FeatureWriter`).
    entry : mapping
        Expanded baseline entry.
    dataset : dataset adapter
        Gives ``stories`` and ``words(story)``.
    storage_dtype : str

    Returns
    -------
    dict
        The file attributes written.
    """
    from lmbrain.features import write_features

    stories = {story: dataset.words(story).words for story in dataset.stories}
    feats, info = baseline_features(entry, stories)
    write_features(path, {s: {0: a} for s, a in feats.items()}, info, storage_dtype)
    return info


# --------------------------------------------------------------------------- gaps

GAP_COLUMNS = (
    "dataset",
    "family",
    "model",
    "n_params",
    "untrained_models",
    "n_seeds",
    "n_subjects",
    "mean_r_trained",
    "mean_r_untrained",
    "gap",
    "gap_ci_low",
    "gap_ci_high",
    "n_boot",
    "gap_ci_low_subjects",
    "gap_ci_high_subjects",
    "gap_ci_low_voxels",
    "gap_ci_high_voxels",
    "gap_t",
    "gap_t_p",
    "gap_signflip_p",
    "n_voxels",
    "n_train_stories",
    "n_test_stories",
    "resampling",
    "note",
)
"""Columns of :func:`untrained_gaps`."""


def untrained_gaps(
    scores: pd.DataFrame,
    twins: Mapping[str, str],
    load_voxels: Callable[[str], dict] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Trained-minus-untrained brain score per trained model (size), with bootstrap CIs.

    Parameters
    ----------
    scores : pandas.DataFrame
        Score rows (:func:`lmbrain.aggregate.read_score_rows`).
    twins : mapping
        ``{untrained_id: trained_id}`` (:func:`untrained_twins`).
    load_voxels : callable, optional
        ``fit_path -> {"r": ...}``; default :func:`lmbrain.aggregate.load_fit_voxels`.
    n_boot : int
        Bootstrap replicates per level (0: no interval).
    seed : int
    ci : float
        Coverage of the percentile interval.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GAP_COLUMNS`, one row per (dataset, trained model with at least one
        untrained twin). Both sides use their best layer by cross-validated score
        (:func:`lmbrain.aggregate.best_layers`) at the dataset's largest train fraction.
        For each subject, ``gap_s = mean_r(trained) - mean over seeds of mean_r(untrained)``
        (the seeds the subject has); ``gap`` is the mean of ``gap_s`` over subjects having
        both sides, and ``mean_r_trained`` / ``mean_r_untrained`` the matching means.

    Notes
    -----
    ``gap_ci_low`` / ``gap_ci_high`` resample subjects, then voxels within each drawn subject
    (:mod:`lmbrain.inference`; at least 3 subjects, else NaN and a ``note``);
    ``*_subjects`` resample subjects only (each keeping its observed gap) and ``*_voxels``
    voxels only, within each subject. Voxel draws are shared by the trained model and all
    its twins (paired); NaN voxels are ignored. ``gap_t``, ``gap_t_p`` and
    ``gap_signflip_p`` test the subjects' gaps against 0 (t-test, sign-flip permutation;
    two-sided, at least 3 subjects). Each (dataset, model) draws from its own streams
    seeded by ``seed`` and the names. ``n_voxels`` sums the subjects' voxel counts.
    """
    import pandas as pd

    from lmbrain.aggregate import at_largest_fraction, best_layers, load_fit_voxels

    loader = load_fit_voxels if load_voxels is None else load_voxels
    best = at_largest_fraction(best_layers(scores)) if len(scores) else scores
    rows = []
    for (dataset, trained), group in _twin_groups(best, twins):
        rows.append(_gap_row(dataset, trained, group, loader, n_boot, seed, ci))
    return pd.DataFrame(rows, columns=list(GAP_COLUMNS))


def _twin_groups(best: pd.DataFrame, twins: Mapping[str, str]):
    if best.empty:
        return
    for dataset in sorted(best["dataset"].unique()):
        rows = best[best["dataset"] == dataset]
        for trained in sorted(set(twins.values())):
            names = sorted(u for u, t in twins.items() if t == trained)
            t_rows = rows[rows["model"] == trained]
            u_rows = rows[rows["model"].isin(names)]
            if len(t_rows) and len(u_rows):
                yield (dataset, trained), (t_rows, u_rows)


def _gap_row(dataset, trained, group, loader, n_boot, seed, ci) -> dict:
    import pandas as pd

    from lmbrain import inference
    from lmbrain.aggregate import sample_sizes

    t_rows, u_rows = group
    subjects = sorted(set(t_rows["subject"]) & set(u_rows["subject"]))
    u_models = sorted(set(u_rows["model"]))
    gaps, means_t, means_u, matrices = [], [], [], []
    boot = np.full((max(n_boot, 0), len(subjects)), np.nan)
    key = zlib.crc32(f"{dataset}/{trained}".encode())
    rng = np.random.default_rng([int(seed), key])
    for j, subject in enumerate(subjects):
        t = t_rows[t_rows["subject"] == subject].iloc[0]
        us = u_rows[u_rows["subject"] == subject]
        mean_u = float(np.mean(us["mean_r"].to_numpy(dtype=float)))
        means_t.append(float(t["mean_r"]))
        means_u.append(mean_u)
        gaps.append(means_t[-1] - mean_u)
        if n_boot > 0:
            r_t = _voxel_r(loader, t["fit_path"])
            r_u = np.vstack([_voxel_r(loader, p) for p in us["fit_path"]])
            if r_u.shape[1] != r_t.size:
                raise InputError(us["fit_path"].iloc[0], f"not the {r_t.size} voxels of {trained}")
            boot[:, j] = _boot_gap(r_t, r_u, n_boot, rng)
            matrix = np.full((1 + len(u_models), r_t.size), np.nan)
            matrix[0] = r_t
            for model, r in zip(us["model"], r_u, strict=True):
                matrix[1 + u_models.index(model)] = r
            matrices.append(matrix)
    cis = {level: (float("nan"), float("nan")) for level in inference.LEVELS}
    if n_boot > 0 and subjects:
        cis["voxels"] = inference.percentile_ci(boot.mean(axis=1), ci)
    enough = len(subjects) >= inference.MIN_SUBJECTS
    if n_boot > 0 and enough:
        for i, level in enumerate(("hierarchical", "subjects"), start=1):
            stream = np.random.default_rng([int(seed), key, i])
            means = inference.resample_subject_means(matrices, n_boot, stream, level)[..., 0]
            with np.errstate(invalid="ignore"):
                u_mean = inference.slot_mean(np.moveaxis(means[:, :, 1:], 2, 1))
            per_slot = means[:, :, 0] - u_mean
            cis[level] = inference.percentile_ci(
                inference.slot_mean(per_slot[:, :, None])[:, 0], ci
            )
    tests = inference.one_sample_tests(
        np.asarray(gaps), rng=np.random.default_rng([int(seed), key, 3])
    )
    sizes = sample_sizes(pd.concat([t_rows, u_rows]), subjects)
    return {
        "dataset": dataset,
        "family": t_rows["family"].iloc[0],
        "model": trained,
        "n_params": int(t_rows["n_params"].iloc[0]),
        "untrained_models": ",".join(u_models),
        "n_seeds": len(u_models),
        "n_subjects": len(subjects),
        "mean_r_trained": float(np.mean(means_t)) if subjects else float("nan"),
        "mean_r_untrained": float(np.mean(means_u)) if subjects else float("nan"),
        "gap": float(np.mean(gaps)) if subjects else float("nan"),
        "n_boot": int(n_boot) if subjects else 0,
        **inference.ci_test_columns("gap", cis, tests),
        "n_voxels": sizes["n_voxels"],
        "n_train_stories": sizes["n_train_stories"],
        "n_test_stories": sizes["n_test_stories"],
        "resampling": inference.RESAMPLING,
        "note": "" if enough else inference.too_few_subjects_note(len(subjects)),
    }


def _voxel_r(loader, path) -> np.ndarray:
    arrays = loader(path)
    if "r" not in arrays:
        raise InputError(path, "per-voxel arrays lack 'r'")
    return np.asarray(arrays["r"], dtype=np.float64).ravel()


def _boot_gap(r_t: np.ndarray, r_u: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """Replicates of mean(r_t) - mean over rows of mean(r_u), same voxel draw for all."""
    n = r_t.size
    values = np.vstack([r_t[None, :], r_u])
    finite = np.isfinite(values)
    v0 = np.where(finite, values, 0.0)
    out = np.empty(n_boot)
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (v0 @ counts) / (finite @ counts)
        out[b] = means[0] - np.mean(means[1:])
    return out
