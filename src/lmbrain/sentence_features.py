"""Caption features of images: sentence embeddings per layer, averaged over an image's captions.

Each caption is run through the model on its own (captions are batched, right-padded, with an
attention mask; special tokens are added as the tokenizer does). Its embedding at hidden
state ``L`` is pooled over tokens:

``mean``
    The attention-masked mean over every token of the caption, special tokens included --
    sentence-transformers' mean pooling (MiniLM, MPNet).
``last``
    The hidden state of the last non-pad token -- for causal language models, the only
    token that has seen the whole caption.
``auto``
    ``last`` for causal models (:func:`lmbrain.features.is_causal`), else ``mean``.

An image's feature vector is the mean of its captions' embeddings. No temporal model is
involved. Baselines (:func:`bow_features`, :func:`category_features`,
:func:`random_features`) give the same ``(n_stimuli, n_features)`` arrays.

Features are stored in one HDF5 file per (dataset, model): ``/stimuli`` (ids, in row order)
and ``/layer_<L>`` (n_stimuli x n_features), with the model facts as JSON file attributes
(readable with :func:`lmbrain.features.read_feature_info`).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from lmbrain.errors import InputError
from lmbrain.features import _pad_batch

POOLINGS = ("auto", "mean", "last")
MAX_TOKENS = 512
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


# --------------------------------------------------------------------------- language models


def resolve_pooling(pooling: str, model) -> str:
    """``mean`` or ``last`` (``auto``: ``last`` for causal models, else ``mean``)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
    if pooling != "auto":
        return pooling
    from lmbrain.features import is_causal

    return "last" if is_causal(model) else "mean"


def pool(states, mask, pooling: str):
    """Pool token states (batch, tokens, hidden) with a 0/1 mask (batch, tokens).

    Parameters
    ----------
    states : torch.Tensor, shape (batch, tokens, hidden)
    mask : torch.Tensor, shape (batch, tokens)
        1 on caption tokens, 0 on right padding.
    pooling : {"mean", "last"}

    Returns
    -------
    torch.Tensor, shape (batch, hidden), float32
    """
    import torch

    states = states.float()
    if pooling == "mean":
        m = mask.to(states.dtype).unsqueeze(-1)
        return (states * m).sum(1) / m.sum(1).clamp(min=1.0)
    if pooling == "last":
        last = mask.long().sum(1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]
    raise ValueError(f"unknown pooling {pooling!r}; use 'mean' or 'last'")


def _max_tokens(model) -> int:
    config = model.config.to_dict()
    limit = next(
        (
            config[k]
            for k in ("max_position_embeddings", "n_positions")
            if isinstance(config.get(k), int)
        ),
        None,
    )
    return min(MAX_TOKENS, limit) if limit else MAX_TOKENS


def _check_layers(layers: Sequence[int], n_layers: int | None) -> list[int]:
    layers = [int(layer) for layer in layers]
    top = max(layers, default=0) if n_layers is None else n_layers
    bad = [layer for layer in layers if not 0 <= layer <= top]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has hidden states 0..{top}")
    return layers


def tokenize_captions(tokenizer, captions: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each caption, with the tokenizer's special tokens, truncated."""
    out = []
    for caption in captions:
        ids = tokenizer(caption, add_special_tokens=True)["input_ids"]
        out.append(list(ids[:max_tokens]) or [0])
    return out


def caption_embeddings(
    model,
    tokenizer,
    captions: Sequence[str],
    layers: Sequence[int],
    pooling: str = "auto",
    batch_size: int = 32,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Pooled hidden states of every caption at every requested layer.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Base model in eval mode (:func:`lmbrain.models.load_model`).
    tokenizer : transformers tokenizer
    captions : sequence of str
    layers : sequence of int
        Hidden-state indices, 0 (embeddings) to n_layers.
    pooling : {"auto", "mean", "last"}
        See the module docstring.
    batch_size : int
        Captions per forward pass (sorted by length to limit padding).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    dict of int -> ndarray, shape (n_captions, hidden), float32
    """
    import torch
    from tqdm.auto import tqdm

    from lmbrain.models import n_layers_from_config

    layers = _check_layers(layers, n_layers_from_config(model.config.to_dict()))
    pooling = resolve_pooling(pooling, model)
    device = next(model.parameters()).device
    hidden = model.get_input_embeddings().weight.shape[1]
    out = {layer: np.zeros((len(captions), hidden), dtype=np.float32) for layer in layers}
    seqs = tokenize_captions(tokenizer, captions, _max_tokens(model))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    pad = getattr(model.config, "pad_token_id", None)
    pad = pad if isinstance(pad, int) and pad >= 0 else 0
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode():
        for chunk in tqdm(chunks, desc="captions", unit="batch", disable=not progress):
            ids, mask = _pad_batch([seqs[i] for i in chunk], pad, device)
            states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            for layer in layers:
                pooled = pool(states.hidden_states[layer], mask, pooling)
                out[layer][chunk] = pooled.cpu().numpy()
    return out


def average_over_captions(
    per_caption: np.ndarray, owner: Sequence[int], n_stimuli: int
) -> np.ndarray:
    """Mean of the caption rows belonging to each stimulus.

    Parameters
    ----------
    per_caption : ndarray, shape (n_captions, n_features)
    owner : sequence of int, length n_captions
        Stimulus index (0..n_stimuli-1) of each caption.
    n_stimuli : int

    Returns
    -------
    ndarray, shape (n_stimuli, n_features), float32
    """
    owner = np.asarray(owner, dtype=np.int64)
    counts = np.bincount(owner, minlength=n_stimuli)
    if np.any(counts == 0):
        raise ValueError(f"stimuli {np.flatnonzero(counts == 0)[:5].tolist()} have no caption")
    sums = np.zeros((n_stimuli, per_caption.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, per_caption)
    return (sums / counts[:, None]).astype(np.float32)


def flatten_captions(
    captions: Mapping[str, Sequence[str]], stimuli: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """All captions of ``stimuli`` in order, and the stimulus index of each."""
    texts, owner = [], []
    for i, stim in enumerate(stimuli):
        texts.extend(captions[stim])
        owner.extend([i] * len(captions[stim]))
    return texts, np.asarray(owner, dtype=np.int64)


def stimulus_embeddings(
    model,
    tokenizer,
    captions: Mapping[str, Sequence[str]],
    stimuli: Sequence[str],
    layers: Sequence[int],
    pooling: str = "auto",
    batch_size: int = 32,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Caption embeddings averaged per stimulus: ``{layer: (n_stimuli, hidden)}``."""
    texts, owner = flatten_captions(captions, stimuli)
    per_caption = caption_embeddings(
        model, tokenizer, texts, layers, pooling, batch_size, progress=progress
    )
    return {
        layer: average_over_captions(a, owner, len(stimuli)) for layer, a in per_caption.items()
    }


# --------------------------------------------------------------------------- baselines


def caption_words(caption: str, lower: bool = False) -> list[str]:
    """Words of a caption (letters, digits, inner apostrophes); punctuation dropped."""
    words = _WORD.findall(caption)
    return [w.lower() for w in words] if lower else words


def model_word_vectors(model, tokenizer) -> Callable[[str], np.ndarray | None]:
    """``word -> vector``: mean of the model's input embeddings of the word's tokens.

    The word is tokenized with a leading space (as it appears inside a caption) and without
    special tokens; a word with no token gives None.
    """
    table = model.get_input_embeddings().weight.detach().float().cpu().numpy()

    def vector(word: str) -> np.ndarray | None:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        ids = [i for i in ids if 0 <= i < table.shape[0]]
        if not ids:
            return None
        return table[ids].mean(axis=0)

    return vector


def read_glove(path: str | Path, vocabulary: set[str] | None = None) -> dict[str, np.ndarray]:
    """Word vectors from a GloVe-format text file (``word v1 v2 ...`` per line).

    Parameters
    ----------
    path : str or Path
    vocabulary : set of str, optional
        Keep only these (lower-cased) words, to save memory on large files.

    Raises
    ------
    InputError
        Missing file, a line with a different dimension than the first, no vectors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "word-vector file not found")
    vectors: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.rstrip().split(" ")
            if len(parts) < 2:
                continue
            word = parts[0].lower()
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise InputError(path, f"line {n}: {len(parts) - 1} values, expected {dim}")
            if vocabulary is not None and word not in vocabulary:
                continue
            try:
                vectors.setdefault(word, np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise InputError(path, f"line {n}: values are not numbers") from None
    if dim is None:
        raise InputError(path, "no word vectors")
    vectors[""] = np.zeros(dim, dtype=np.float32)  # dimension marker for empty captions
    return vectors


def bow_features(
    captions: Mapping[str, Sequence[str]],
    stimuli: Sequence[str],
    vector: Callable[[str], np.ndarray | None] | Mapping[str, np.ndarray],
    lower: bool = False,
) -> np.ndarray:
    """Bag of words: mean word vector of each caption, averaged over the image's captions.

    Parameters
    ----------
    captions : mapping of stimulus -> list of captions
    stimuli : sequence of str
        Row order.
    vector : callable or mapping
        ``word -> vector`` (None or absent for unknown words, which are skipped).
    lower : bool
        Lower-case the words first (GloVe vocabularies are lower case).

    Returns
    -------
    ndarray, shape (n_stimuli, dim), float32
        A caption with no known word contributes a zero vector.
    """
    lookup = vector.get if isinstance(vector, Mapping) else vector
    cache: dict[str, np.ndarray | None] = {}
    dim = None
    per_caption, owner = [], []
    for i, stim in enumerate(stimuli):
        for caption in captions[stim]:
            vecs = []
            for word in caption_words(caption, lower):
                if word not in cache:
                    cache[word] = lookup(word)
                if cache[word] is not None:
                    vecs.append(cache[word])
            per_caption.append(np.mean(vecs, axis=0) if vecs else None)
            owner.append(i)
            if vecs:
                dim = len(vecs[0])
    if dim is None:
        if isinstance(vector, Mapping) and "" in vector:
            dim = len(vector[""])
        else:
            raise ValueError("no caption word has a vector")
    rows = np.stack([np.zeros(dim) if v is None else v for v in per_caption])
    return average_over_captions(rows, owner, len(stimuli))


def category_features(categories: Mapping[str, str], stimuli: Sequence[str]) -> np.ndarray:
    """One-hot category labels, columns in sorted category order: (n_stimuli, n_categories)."""
    names = sorted({categories[s] for s in stimuli})
    index = {c: k for k, c in enumerate(names)}
    out = np.zeros((len(stimuli), len(names)), dtype=np.float32)
    out[np.arange(len(stimuli)), [index[categories[s]] for s in stimuli]] = 1.0
    return out


def random_features(stimuli: Sequence[str], dim: int, seed: int) -> np.ndarray:
    """Standard-normal embeddings, one fixed vector per stimulus id (seeded by id and seed).

    A stimulus gets the same vector whatever the other stimuli are, so subsets agree.
    """
    rows = [
        np.random.default_rng([int(seed), zlib.crc32(str(s).encode("utf-8"))]).standard_normal(dim)
        for s in stimuli
    ]
    return np.asarray(rows, dtype=np.float32).reshape(len(stimuli), dim)


# --------------------------------------------------------------------------- controls
#
# Doerig et al. (2025, Methods, "Control analyses"; authors' code github.com/adriendoerig/
# visuo_llm, src/nsd_visuo_semantics/get_embeddings/nsd_embeddings_utils.py and
# get_nsd_{noun,verb}_embeddings_simple.py): captions are POS-tagged with NLTK's tagger
# (Penn Treebank tags); nouns are the words tagged NN/NNS, verbs VB/VBD/VBG/VBN/VBP/VBZ.
# Each noun (verb) is embedded on its own by the sentence model and an image's vector is the
# mean over every noun (verb) of all its captions; an image with none gets the embedding of
# "something" (nouns) or "is" (verbs). Scrambled captions are each caption's words in a random
# order (unseeded ``random.shuffle`` there; seeded here), embedded like the full captions.

CONTROL_KINDS = ("nouns", "verbs", "scrambled")
POS_TAGS = {
    "nouns": frozenset({"NN", "NNS"}),
    "verbs": frozenset({"VB", "VBD", "VBG", "VBN", "VBP", "VBZ"}),
}
POS_FALLBACK = {"nouns": "something", "verbs": "is"}


def read_tagged_captions(path: str | Path, stimuli: Sequence[str]) -> dict[str, list[tuple]]:
    """POS-tagged captions from a TSV ``stimulus <TAB> tagged`` (header row required).

    ``tagged`` is a caption as ``word/TAG`` tokens separated by spaces (Penn Treebank tags,
    e.g. ``A/DT dog/NN runs/VBZ``); a stimulus may have several rows (one per caption).

    Returns
    -------
    dict of str -> list of (word, tag)
        Every tagged word of each stimulus' captions, in file order.

    Raises
    ------
    InputError
        Missing file or columns, a token without ``/TAG``, a stimulus of ``stimuli`` with no row.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "tagged-captions file not found")
    out: dict[str, list[tuple]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not {"stimulus", "tagged"} <= set(reader.fieldnames or []):
            raise InputError(path, "needs the columns 'stimulus' and 'tagged'")
        for n, row in enumerate(reader, start=2):
            words = out.setdefault(str(row["stimulus"]), [])
            for token in (row["tagged"] or "").split():
                word, sep, tag = token.rpartition("/")
                if not sep or not word or not tag:
                    raise InputError(path, f"line {n}: token {token!r} is not word/TAG")
                words.append((word, tag))
    missing = [s for s in stimuli if s not in out]
    if missing:
        raise InputError(
            path, f"no tagged caption for stimuli {missing[:5]} ({len(missing)} in all)"
        )
    return out


def nltk_tagged_captions(
    captions: Mapping[str, Sequence[str]], stimuli: Sequence[str]
) -> dict[str, list[tuple]]:
    """Tag :func:`caption_words` with NLTK's ``pos_tag`` (its tagger data must be installed).

    lmbrain never downloads tagger data; without NLTK or its ``averaged_perceptron_tagger_eng``
    data this raises ``ConfigError`` saying what is missing.
    """
    from lmbrain.errors import ConfigError

    key = "datasets.<name>.trials.baselines.<i>.pos"
    try:
        import nltk
    except ImportError:
        raise ConfigError(
            key,
            "nouns/verbs controls need POS tags: give a tagged-captions file (pos:) or "
            "install nltk and its tagger data (python -m nltk.downloader "
            "averaged_perceptron_tagger_eng)",
        ) from None
    out = {}
    try:
        for stim in stimuli:
            out[stim] = [wt for c in captions[stim] for wt in nltk.pos_tag(caption_words(c))]
    except LookupError as exc:
        raise ConfigError(
            key,
            "nltk is installed but its tagger data is not (lmbrain downloads nothing): run "
            "python -m nltk.downloader averaged_perceptron_tagger_eng, or give a "
            f"tagged-captions file (pos:). nltk said: {str(exc).strip().splitlines()[0]}",
        ) from None
    return out


def pos_words(tagged: Sequence[tuple], kind: str) -> list[str]:
    """Words of ``tagged`` (``(word, tag)`` pairs) whose tag is a noun or verb tag."""
    tags = POS_TAGS[kind]
    return [word for word, tag in tagged if tag in tags]


def scramble_caption(caption: str, seed: int, stimulus: str, index: int) -> str:
    """The caption's words (:func:`caption_words`) in a seeded random order, space-joined.

    The permutation is drawn from ``default_rng([seed, crc32(stimulus), index])``, so a
    caption is scrambled the same way whatever the other captions are.
    """
    words = caption_words(caption)
    rng = np.random.default_rng([int(seed), zlib.crc32(str(stimulus).encode("utf-8")), int(index)])
    return " ".join(words[k] for k in rng.permutation(len(words)))


def scrambled_captions(
    captions: Mapping[str, Sequence[str]], stimuli: Sequence[str], seed: int
) -> dict[str, list[str]]:
    """Every caption of ``stimuli`` word-scrambled by :func:`scramble_caption`."""
    return {
        s: [scramble_caption(c, seed, s, k) for k, c in enumerate(captions[s])] for s in stimuli
    }


def pos_features(
    tagged: Mapping[str, Sequence[tuple]],
    stimuli: Sequence[str],
    kind: str,
    embed: Callable[[list[str]], np.ndarray],
) -> np.ndarray:
    """Mean embedding of the nouns (or verbs) of each stimulus' captions.

    Parameters
    ----------
    tagged : mapping stimulus -> list of (word, tag)
    stimuli : sequence of str
    kind : {"nouns", "verbs"}
    embed : callable
        ``list of texts -> (n_texts, dim)``; each word is embedded on its own.

    Returns
    -------
    ndarray, shape (n_stimuli, dim), float32
        A stimulus with no such word gets the embedding of :data:`POS_FALLBACK` [kind].
    """
    words = {s: pos_words(tagged[s], kind) for s in stimuli}
    vocab = sorted({w for ws in words.values() for w in ws} | {POS_FALLBACK[kind]})
    table = np.asarray(embed(vocab), dtype=np.float64)
    row = {w: i for i, w in enumerate(vocab)}
    out = np.stack(
        [table[[row[w] for w in (words[s] or [POS_FALLBACK[kind]])]].mean(axis=0) for s in stimuli]
    )
    return out.astype(np.float32)


def control_features(
    dataset, spec: Mapping, cache_dir: str | Path, pooling: str = "auto"
) -> np.ndarray:
    """Features of a nouns / verbs / scrambled control: the spec's model, last hidden state.

    Parameters
    ----------
    dataset : :class:`lmbrain.datasets.trials.TrialDataset`
    spec : mapping
        ``kind`` (nouns, verbs, scrambled), ``model``, optional ``pos`` (tagged-captions file,
        :func:`read_tagged_captions`; else NLTK) and ``seed`` (scrambled).
    cache_dir : str or Path
    pooling : {"auto", "mean", "last"}

    Returns
    -------
    ndarray, shape (n_stimuli, hidden), rows in ``dataset.stimuli`` order
    """
    from lmbrain.models import load_model, n_layers_from_config

    kind = spec["kind"]
    if kind in POS_TAGS:  # tags first: a missing tagger fails before the model loads
        if spec.get("pos"):
            tagged = read_tagged_captions(spec["pos"], dataset.stimuli)
        else:
            tagged = nltk_tagged_captions(dataset.captions, dataset.stimuli)
    model, tokenizer, _ = load_model({"model": spec["model"]}, cache_dir)
    last = n_layers_from_config(model.config.to_dict())
    if last is None:
        raise ValueError(f"cannot tell the number of layers of {spec['model']}")
    if kind == "scrambled":
        texts = scrambled_captions(dataset.captions, dataset.stimuli, int(spec.get("seed", 0)))
        return stimulus_embeddings(model, tokenizer, texts, dataset.stimuli, [last], pooling)[last]

    def embed(texts: list[str]) -> np.ndarray:
        return caption_embeddings(model, tokenizer, texts, [last], pooling)[last]

    return pos_features(tagged, dataset.stimuli, kind, embed)


# --------------------------------------------------------------------------- storage


def write_stimulus_features(
    path: str | Path,
    stimuli: Sequence[str],
    per_layer: Mapping[int, np.ndarray],
    info: Mapping,
    storage_dtype: str = "float32",
) -> None:
    """Write ``{layer: (n_stimuli, n_features)}`` and the stimulus ids to HDF5, atomically."""
    import h5py

    from lmbrain.io import _json_default, atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        for key, value in info.items():
            fh.attrs[key] = json.dumps(value, default=_json_default)
        fh.attrs["kind"] = json.dumps("stimuli")
        fh.create_dataset(
            "stimuli", data=np.asarray(list(stimuli), dtype=object), dtype=h5py.string_dtype()
        )
        for layer, array in per_layer.items():
            array = np.asarray(array)
            if array.shape[0] != len(stimuli):
                raise ValueError(f"layer {layer}: {array.shape[0]} rows for {len(stimuli)} stimuli")
            fh.create_dataset(f"layer_{int(layer)}", data=array.astype(storage_dtype))


def read_stimulus_features(
    path: str | Path, layer: int, stimuli: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Features of one layer, optionally re-ordered to ``stimuli``.

    Returns
    -------
    ids : list of str
    features : ndarray, shape (len(ids), n_features), float32

    Raises
    ------
    InputError
        Missing file or layer, or requested stimuli the file lacks.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "feature file not found")
    with h5py.File(path, "r") as fh:
        key = f"layer_{int(layer)}"
        if key not in fh or "stimuli" not in fh:
            have = sorted(k for k in fh if k.startswith("layer_"))
            raise InputError(path, f"no layer {layer} of stimulus features ({have})")
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in fh["stimuli"][()]]
        feats = fh[key][()].astype(np.float32)
    if stimuli is None:
        return ids, feats
    row = {s: i for i, s in enumerate(ids)}
    missing = [s for s in stimuli if s not in row]
    if missing:
        raise InputError(path, f"no features for stimuli {missing[:5]} ({len(missing)} in all)")
    return list(stimuli), feats[[row[s] for s in stimuli]]


# --------------------------------------------------------------------------- workflow helpers


def check_baselines(baselines: Sequence[Mapping], model_ids: Sequence[str], key: str) -> None:
    """Configuration checks the schema cannot express (unique ids, bow sources).

    Raises
    ------
    ConfigError
        A baseline id equal to a model id or another baseline's, a bow baseline without
        exactly one of ``model`` / ``glove``.
    """
    from lmbrain.errors import ConfigError

    seen = set(model_ids)
    for i, spec in enumerate(baselines):
        if spec["name"] in seen:
            raise ConfigError(f"{key}.{i}.name", f"id '{spec['name']}' is already used")
        seen.add(spec["name"])
        if spec["kind"] == "bow" and ("model" in spec) == ("glove" in spec):
            raise ConfigError(f"{key}.{i}", "a bow baseline needs exactly one of model, glove")
        if spec["kind"] in CONTROL_KINDS and "model" not in spec:
            raise ConfigError(f"{key}.{i}", f"a {spec['kind']} control needs model")


def baseline_features(
    dataset, spec: Mapping, cache_dir: str | Path, pooling: str = "auto"
) -> tuple[np.ndarray, dict]:
    """Features of a baseline for every stimulus of a trial dataset, and its facts.

    Parameters
    ----------
    dataset : :class:`lmbrain.datasets.trials.TrialDataset`
    spec : mapping
        A ``trials.baselines`` entry of the config (``name``, ``kind``, ``model`` / ``glove``,
        ``dim``, ``seed``).
    cache_dir : str or Path
        Model cache (bow from a model's input embeddings, controls).
    pooling : {"auto", "mean", "last"}
        Token pooling of the nouns / verbs / scrambled controls (the dataset's).

    Returns
    -------
    features : ndarray, shape (n_stimuli, n_features), rows in ``dataset.stimuli`` order
    info : dict
        ``n_params`` (= the number of features), ``n_layers`` (1), ``kind``, ``baseline``.
    """
    kind = spec["kind"]
    if kind == "category":
        if dataset.categories is None:
            raise InputError(dataset.categories_path, "the category baseline needs this file")
        feats = category_features(dataset.categories, dataset.stimuli)
    elif kind == "random":
        feats = random_features(dataset.stimuli, int(spec.get("dim", 64)), int(spec.get("seed", 0)))
    elif kind == "bow" and spec.get("glove"):
        vocab = {
            w for caps in dataset.captions.values() for c in caps for w in caption_words(c, True)
        }
        feats = bow_features(
            dataset.captions, dataset.stimuli, read_glove(spec["glove"], vocab), True
        )
    elif kind in CONTROL_KINDS:
        feats = control_features(dataset, spec, cache_dir, pooling)
    elif kind == "bow":
        from lmbrain.models import load_model

        model, tokenizer, _ = load_model({"model": spec["model"]}, cache_dir)
        vector = model_word_vectors(model, tokenizer)
        feats = bow_features(dataset.captions, dataset.stimuli, vector)
    else:
        raise ValueError(f"unknown baseline kind {kind!r}")
    info = {
        "model_id": spec["name"],
        "baseline": True,
        "kind": kind,
        "n_params": int(feats.shape[1]),
        "n_params_nonembedding": int(feats.shape[1]),
        "n_layers": 1,
        "hidden_size": int(feats.shape[1]),
        "source": spec.get("model") or spec.get("glove") or kind,
    }
    return feats, info
