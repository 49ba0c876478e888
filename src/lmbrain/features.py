"""Per-word hidden states of a language model, each word seeing only the words before it.

A word's vector at layer ``L`` is ``hidden_states[L]`` (0 = token embeddings, ``n_layers`` =
last block, as transformers returns them) at the word's **last token**, computed from a
context made of the preceding words only.

How the story is cut (``extract_word_features``)
-------------------------------------------------
The words are joined with single spaces and tokenized once; each word is mapped to its last
token through the tokenizer's character offsets (this handles BPE leading-space tokens such as
GPT-2's ``"Ġword"`` / Llama's ``"▁word"`` and WordPiece continuations ``"##piece"`` alike).
The special tokens the tokenizer adds at the start of a sequence (BOS for Llama/Gemma, CLS for
BERT; none for GPT-2 or SmolLM2) are prepended to every window, so each window looks like an
ordinary input to the model; an encoder's trailing SEP is appended after the word.

*Causal models* (GPT, Llama, Gemma...) run overlapping windows: the first covers tokens
``[0, C + S)`` and provides every word whose last token lies in it; window ``k >= 1`` covers
``[e_k - C + 1, e_k + S)`` and provides the words whose last token lies in its final ``S``
tokens ``[e_k, e_k + S)``. Causal attention means a token never sees later tokens of its
window, so every word is conditioned on between ``C`` and ``C + S`` tokens ending at its last
token (``C = context_tokens``, ``S = stride_tokens``), fewer only near the story start.
The stride trades speed for uniformity: each token is computed about ``(C + S) / S`` times
(3x for the default ``S = C // 2``) instead of ``C`` times for one window per word, while the
context a word sees varies between ``C`` and ``C + S`` tokens. ``S = C`` halves the work again;
small ``S`` approaches the exact per-word context.

*Encoder models* (BERT, MiniLM) attend in both directions, so a shared window would let a word
see the words after it. They get one window per word, ``C`` tokens ending at the word (the
input is causal even though the model is not); this is exactly the naive baseline, batched.

Absolute position embeddings (GPT-2, BERT) make a vector depend on where the window starts:
windowed and per-word vectors are equal only when both windows start at the same token (e.g.
when the whole story fits in ``C`` tokens). Rotary models (Llama, Gemma) depend only on
relative positions, up to float rounding.

Memory
------
A forward pass returns no hidden states: a forward hook copies the emitted words' rows of each
requested hidden state as soon as its layer has produced it (:class:`_HiddenStateTaps`, which
finds those layers once per story and checks them against ``output_hidden_states``), no
key/value cache is built, and with ``out`` (HDF5 datasets, see :meth:`FeatureWriter.empty`) the
rows go to disk window batch by window batch. An extraction thus holds the model, the
activations of the layers in flight and the batch's picked rows, not every layer of the batch
nor the story's output (BENCHMARKS.md, *Feature extraction memory*).

On a GPU
--------
A pass that runs out of GPU memory is retried with half the windows (:func:`_smaller_batch`);
rows reach the host in the model's dtype through a reused page-locked buffer (:func:`_fetch`)
and are widened to float32 there; :func:`extract_stories_features` fills each pass with the
windows of consecutive stories (a ~1,000-word story is one pass, and small models otherwise
spend most of their time between passes). Measured on an H200: BENCHMARKS.md, *GPU*.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmbrain.errors import InputError


@dataclass(frozen=True)
class TokenizedStory:
    """A story as one token sequence.

    Attributes
    ----------
    ids : ndarray, shape (n_tokens,), int64
        Token ids of the words joined with single spaces, without special tokens.
    word_last : ndarray, shape (n_words,), int64
        Index into ``ids`` of each word's last token; an empty word (left out of the text)
        gets the previous word's token, or -1 before any token.
    prefix, suffix : tuple of int
        Special tokens the tokenizer puts before / after a sequence.
    """

    ids: np.ndarray
    word_last: np.ndarray
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


def special_tokens(tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Special tokens the tokenizer adds before and after a text (BOS/CLS, EOS/SEP)."""
    probe = "hello world"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return tuple(full[:k]), tuple(full[k + len(plain) :])
    return (), ()


def tokenize_story(tokenizer, words: Sequence[str]) -> TokenizedStory:
    """Tokenize the words of a story once and find each word's last token.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        A fast tokenizer (character offsets); slow tokenizers fall back to tokenizing word
        by word with a leading space before every word but the first.
    words : sequence of str
        The words, in order; surrounding whitespace is stripped and empty words are left
        out of the text (they share the previous word's last token).

    Returns
    -------
    TokenizedStory
    """
    words = [str(w).strip() for w in words]
    kept = [i for i, w in enumerate(words) if w]
    try:
        ids, kept_last = _tokenize_with_offsets(tokenizer, [words[i] for i in kept])
    except (NotImplementedError, _UnorderedOffsets):
        ids, kept_last = _tokenize_word_by_word(tokenizer, [words[i] for i in kept])
    # an empty word is not in the text: it takes the last token before it (-1: none yet)
    word_last = np.full(len(words), -1, dtype=np.int64)
    word_last[kept] = kept_last
    word_last = np.maximum.accumulate(word_last) if len(words) else word_last
    prefix, suffix = special_tokens(tokenizer)
    return TokenizedStory(
        ids=np.asarray(ids, dtype=np.int64),
        word_last=np.asarray(word_last, dtype=np.int64),
        prefix=prefix,
        suffix=suffix,
    )


class _UnorderedOffsets(Exception):
    """Token offsets that do not increase along the text."""


def _word_spans(words: Sequence[str]) -> tuple[str, np.ndarray, np.ndarray]:
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]) if len(words) else lengths
    return " ".join(words), starts, starts + lengths


def _tokenize_with_offsets(tokenizer, words):
    text, w_start, w_end = _word_spans(words)
    enc = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False
    )
    ids = list(enc["input_ids"])
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    t_start, t_end = offsets[:, 0], offsets[:, 1]
    if np.any(np.diff(t_start) < 0):
        raise _UnorderedOffsets
    # last token starting before the word's end; tokens of the next word start at or after it
    word_last = np.searchsorted(t_start, w_end, side="left") - 1
    _warn_on_straddling(word_last, t_end, w_start)
    return ids, word_last


def _warn_on_straddling(word_last, t_end, w_start) -> None:
    """Warn when a word's last token runs into the next word (future-word leakage)."""
    if len(word_last) < 2:
        return
    last = word_last[:-1]
    valid = last >= 0
    leaks = int(np.sum(t_end[last[valid]] > w_start[1:][valid]))
    if leaks:
        warnings.warn(
            f"{leaks} word(s) share their last token with the next word; their vectors see "
            "the start of that word",
            stacklevel=3,
        )


def _tokenize_word_by_word(tokenizer, words):
    ids: list[int] = []
    word_last = []
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        word_last.append(len(ids) - 1)
    return ids, word_last


def is_causal(model) -> bool:
    """Whether a token's hidden state ignores later tokens (checked with a tiny probe).

    Two 4-token inputs differing only in the last token are run; the model is causal when
    the first three positions agree. The answer is kept per model object (:data:`_CAUSAL`).
    """
    import torch

    if model in _CAUSAL:
        return _CAUSAL[model]
    n_vocab = model.get_input_embeddings().weight.shape[0]
    device = next(model.parameters()).device
    base = [(7 * k + 3) % n_vocab for k in range(4)]
    other = base[:3] + [(base[3] + 1) % n_vocab]
    with torch.inference_mode():
        a = model(input_ids=torch.tensor([base], device=device)).last_hidden_state[0, :3]
        b = model(input_ids=torch.tensor([other], device=device)).last_hidden_state[0, :3]
    a, b = a.float(), b.float()
    causal = bool(torch.allclose(a, b, rtol=1e-3, atol=1e-5 * float(a.abs().max()) + 1e-7))
    _CAUSAL[model] = causal
    return causal


#: :func:`is_causal` per model object, asked once (an extraction job asks once per story; on
#: a GPU each probe is two passes over every weight).
_CAUSAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plan_windows(n_tokens: int, context_tokens: int, stride_tokens: int) -> list[tuple]:
    """Overlapping windows of a causal pass (see the module docstring).

    Parameters
    ----------
    n_tokens : int
        Length of the story in tokens.
    context_tokens, stride_tokens : int
        ``C`` and ``S``.

    Returns
    -------
    list of (start, emit_from, end)
        Window ``[start, end)`` provides the tokens in ``[emit_from, end)``; the emitted
        ranges tile ``[0, n_tokens)``.
    """
    if context_tokens < 1 or stride_tokens < 1:
        raise ValueError("context_tokens and stride_tokens must be positive")
    windows = []
    emit_from, end = 0, min(n_tokens, context_tokens + stride_tokens)
    while emit_from < n_tokens:
        windows.append((max(0, emit_from - context_tokens + 1), emit_from, end))
        emit_from, end = end, min(n_tokens, end + stride_tokens)
    return windows


def per_word_windows(word_last: np.ndarray, context_tokens: int) -> list[tuple]:
    """One window of ``context_tokens`` tokens ending at each distinct word end."""
    ends = np.unique(word_last[word_last >= 0])
    return [(max(0, int(t) - context_tokens + 1), int(t), int(t) + 1) for t in ends]


def extract_word_features(
    model,
    tokenizer,
    words: Sequence[str],
    layers: Sequence[int],
    context_tokens: int = 256,
    stride_tokens: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    causal: bool | None = None,
    out: Mapping[int, np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Hidden states at each word's last token, from overlapping causal windows.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Base model in eval mode (:func:`lmbrain.models.load_model`).
    tokenizer : transformers tokenizer
        Its tokenizer.
    words : sequence of str
        The story's words in order.
    layers : sequence of int
        Hidden-state indices, ``0`` (embeddings) to ``n_layers`` (last block).
    context_tokens : int
        ``C``: minimum number of tokens (ending at the word's last token) a word is
        conditioned on, fewer only near the story start.
    stride_tokens : int, optional
        ``S``: new words per window, in tokens (default ``C // 2``); see the module
        docstring for the trade-off. Shrunk if the model's position table is too short.
    batch_size : int
        Windows per forward pass.
    device : str, optional
        Where the inputs go; default the model's device.
    progress : bool
        Show a tqdm bar over batches.
    causal : bool, optional
        Override the causality probe (:func:`is_causal`); non-causal models get one window
        per word.
    out : mapping of int -> array-like, optional
        Zero-filled ``(n_words, hidden_size)`` arrays, one per layer, to write each window
        batch's rows into as they are computed, e.g. HDF5 datasets from
        :meth:`FeatureWriter.empty`, so that a story's features never sit in memory whatever
        its length. Default: new float32 arrays.

    Returns
    -------
    dict of int -> ndarray, shape (n_words, hidden_size), float32
        Words before the first token (empty words at the story start) are zero. ``out``
        when given.
    """
    if stride_tokens is not None and stride_tokens < 1:
        raise ValueError(f"stride_tokens must be positive, got {stride_tokens}")
    story = tokenize_story(tokenizer, words)
    if causal is None:
        causal = is_causal(model)
    if causal:
        stride = _fit_stride(model, story, context_tokens, stride_tokens)
        windows = plan_windows(len(story.ids), context_tokens, stride)
    else:
        _fit_stride(model, story, context_tokens, 0)
        windows = per_word_windows(story.word_last, context_tokens)
    return _run_windows(
        model, story, windows, layers, batch_size, device, not causal, progress, "features", out
    )


def extract_story_features(
    dataset,
    story: str,
    model,
    processor,
    layers: Sequence[int],
    *,
    context_tokens: int,
    stride_tokens: int | None = None,
    batch_size: int = 16,
    audio_context_s: float = 16.0,
    audio_stride_s: float = 0.1,
    device: str = "cpu",
    writer: FeatureWriter | None = None,
) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
    """Features of one story: per word for a language model, per time window for speech.

    Parameters
    ----------
    dataset : dataset adapter
        Gives the story's words (``words``) or recording (``audio_path``).
    story : str
    model, processor
        From :func:`lmbrain.models.load_model` (a tokenizer, or a speech model's feature
        extractor).
    layers : sequence of int
    context_tokens, stride_tokens, batch_size
        See :func:`extract_word_features`.
    audio_context_s, audio_stride_s : float
        See :func:`lmbrain.audio.extract_audio_features`.
    device : str
    writer : FeatureWriter, optional
        Where to write the story (``/<story>/layer_<L>``, and ``times`` for speech). Word
        features are written window batch by window batch as they are computed, so they never
        sit in memory whatever the story's length; speech features once computed.

    Returns
    -------
    times : numpy.ndarray or None
        Window end times for speech models (seconds from the run's start: plus the
        adapter's ``stimulus_onset(story)`` where it has one); None for word features.
    features : dict
        ``layer -> (n_rows, hidden)``: arrays, or with a ``writer`` the word features' HDF5
        datasets (readable while the writer is open).
    """
    from lmbrain.audio import is_audio_config

    if not is_audio_config(model.config):
        words = dataset.words(story).words
        out = None
        if writer is not None:
            shape = (len(words), model.get_input_embeddings().weight.shape[1])
            out = {layer: writer.empty(story, layer, shape) for layer in layers}
        feats = extract_word_features(
            model,
            processor,
            words,
            layers,
            context_tokens=context_tokens,
            stride_tokens=stride_tokens,
            batch_size=batch_size,
            device=device,
            out=out,
        )
        return None, feats
    from lmbrain.audio import extract_audio_features, read_wav

    if not hasattr(dataset, "audio_path"):
        raise ValueError(f"the {type(dataset).__name__} format has no recordings for speech models")
    waveform, rate = read_wav(dataset.audio_path(story))
    times, feats = extract_audio_features(
        model,
        processor,
        waveform,
        rate,
        layers,
        context_s=audio_context_s,
        stride_s=audio_stride_s,
        batch_size=batch_size,
        device=device,
    )
    # the recording starts at the story's onset in the run (LeBel: 10 s after the first TR)
    onset = getattr(dataset, "stimulus_onset", None)
    if onset is not None:
        times = times + float(onset(story))
    if writer is not None:
        for layer, array in feats.items():
            writer.add(story, layer, array)
        writer.add_times(story, times)
    return times, feats


def extract_word_features_naive(
    model,
    tokenizer,
    words: Sequence[str],
    layers: Sequence[int],
    context_tokens: int = 256,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Baseline: one window per word, exactly ``context_tokens`` tokens ending at the word.

    Same parameters and output as :func:`extract_word_features` (without the stride). The
    trailing special tokens (SEP) are appended for non-causal models only.
    """
    story = tokenize_story(tokenizer, words)
    _fit_stride(model, story, context_tokens, 0)
    windows = per_word_windows(story.word_last, context_tokens)
    suffix = not is_causal(model)
    return _run_windows(
        model, story, windows, layers, batch_size, device, suffix, progress, "naive"
    )


def _max_positions(model) -> int | None:
    from lmbrain.models import _first_int

    return _first_int(model.config.to_dict(), ("max_position_embeddings", "n_positions"))


def _fit_stride(model, story: TokenizedStory, context: int, stride: int | None) -> int:
    """Default stride ``C // 2``, shrunk so that a window fits the model's position table.

    ``stride=0`` checks one-window-per-word inputs (``C`` tokens) without choosing a stride.
    """
    if context < 1:
        raise ValueError(f"context_tokens must be positive, got {context}")
    stride = max(1, context // 2) if stride is None else int(stride)
    limit = _max_positions(model)
    specials = len(story.prefix) + len(story.suffix)
    if limit is None or min(context + stride, len(story.ids)) + specials <= limit:
        return stride
    room = limit - specials - context
    if room < min(stride, 1):
        raise ValueError(
            f"context_tokens={context} plus {specials} special token(s) exceeds the model's "
            f"{limit} positions"
        )
    warnings.warn(
        f"stride_tokens={stride} does not fit the model's {limit} positions; using {room}",
        stacklevel=3,
    )
    return room


def _check_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    layers = [int(layer) for layer in layers]
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has hidden states 0..{n_layers}")
    return layers


def _run_windows(
    model, story, windows, layers, batch_size, device, add_suffix, progress, desc, out=None
):
    """Run the windows in batches and gather each emitted word's hidden states into ``out``.

    Each hidden state's rows are taken as the layer produces it (:class:`_HiddenStateTaps`), so
    a batch never holds more than the layers in flight; models whose hidden states cannot be
    located that way fall back to ``output_hidden_states=True`` (every layer of the batch held
    until the pass ends).
    """
    layers = _layers_of(model, layers)
    out = _outputs(model, story, layers, out)
    if not len(story.ids) or not layers:
        return out
    jobs = [(*_window_job(story, w, add_suffix), out) for w in windows]
    _run_jobs(model, jobs, layers, batch_size, device, _pad_id(model, story), progress, desc)
    return out


def _layers_of(model, layers) -> list[int]:
    from lmbrain.models import n_layers_from_config

    n_layers = n_layers_from_config(model.config.to_dict())
    return _check_layers(layers, n_layers if n_layers is not None else max(layers, default=0))


def _outputs(model, story, layers, out):
    """``out`` checked against the story's shape, or new zero float32 arrays."""
    hidden = model.get_input_embeddings().weight.shape[1]
    shape = (len(story.word_last), hidden)
    if out is None:
        return {layer: np.zeros(shape, dtype=np.float32) for layer in layers}
    if any(tuple(out[layer].shape) != shape for layer in layers):
        raise ValueError(f"out arrays must have shape {shape} for layers {layers}")
    return out


def _run_jobs(model, jobs, layers, batch_size, device, pad_id, progress, desc) -> None:
    """Run window jobs ``(tokens, words, positions, out)`` in batches of ``batch_size``.

    Jobs of different stories may share a batch: each job's rows go to its own ``out``.
    """
    import torch
    from tqdm.auto import tqdm

    device = torch.device(device) if device else next(model.parameters()).device
    kwargs = _forward_kwargs(model)
    probe = jobs[0][0]
    probe_ids, probe_mask = _pad_batch([probe[:8], probe[:5]], pad_id, device)
    size, done = max(1, int(batch_size)), 0
    with torch.inference_mode():
        taps = _HiddenStateTaps(model, layers, probe_ids, probe_mask, kwargs)
        with taps, tqdm(total=len(jobs), desc=desc, unit="window", disable=not progress) as bar:
            while done < len(jobs):
                batch = jobs[done : done + size]
                try:
                    _run_batch(model, taps, batch, layers, pad_id, device, kwargs)
                except torch.OutOfMemoryError:
                    if size == 1:
                        raise
                    size = _smaller_batch(size)
                    continue
                done += len(batch)
                bar.update(len(batch))


def _run_batch(model, taps, batch, layers, pad_id, device, kwargs) -> None:
    """One forward pass over a batch of window jobs, writing each emitted word's rows.

    Nothing is written unless the whole pass succeeds, so a batch that fails (out of memory)
    can be run again, whole or split, with the same result.
    """
    import torch

    input_ids, mask = _pad_batch([job[0] for job in batch], pad_id, device)
    rows = torch.cat([torch.full((len(j[2]),), b) for b, j in enumerate(batch)])
    cols = torch.cat([torch.as_tensor(j[2]) for j in batch])
    picked = taps.run(input_ids, mask, rows, cols)
    if picked is None:
        states = model(
            input_ids=input_ids, attention_mask=mask, output_hidden_states=True, **kwargs
        ).hidden_states
        index = _RowIndex(rows, cols)
        picked = {layer: index.take(states[layer]) for layer in layers}
        del states
    # consecutive jobs with the same destination (one story) are written as one block
    start = 0
    for _dest, group in itertools.groupby(batch, key=lambda job: id(job[3])):
        group = list(group)
        words = np.concatenate([j[1] for j in group])
        n = sum(len(j[2]) for j in group)
        for layer in layers:
            _write(group[0][3][layer], picked[layer][start : start + n], words)
        start += n


def extract_stories_features(
    model,
    tokenizer,
    stories: Mapping[str, Sequence[str]],
    layers: Sequence[int],
    context_tokens: int = 256,
    stride_tokens: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    causal: bool | None = None,
    outs: Mapping[str, Mapping[int, np.ndarray]] | None = None,
) -> dict[str, dict[int, np.ndarray]]:
    """:func:`extract_word_features` for several stories, their windows batched together.

    The same windows and the same vectors as one call per story (up to the batch's padding),
    but a forward pass is filled with windows of consecutive stories instead of ending with
    each story: on a GPU a ~1,000-word story is about one pass, and small models spend more
    time between passes than in them (BENCHMARKS.md, *GPU*).

    Parameters
    ----------
    stories : mapping of str -> sequence of str
        Story name to its words, in the order to run them.
    outs : mapping of str -> mapping of int -> array-like, optional
        Per story, as ``out`` of :func:`extract_word_features`.
    model, tokenizer, layers, context_tokens, stride_tokens, batch_size, device, progress,
    causal
        As :func:`extract_word_features`.

    Returns
    -------
    dict of str -> dict of int -> ndarray
        Per story, as :func:`extract_word_features` returns.
    """
    if stride_tokens is not None and stride_tokens < 1:
        raise ValueError(f"stride_tokens must be positive, got {stride_tokens}")
    layers = _layers_of(model, layers)
    if causal is None:
        causal = is_causal(model)
    result, jobs, pad_id = {}, [], None
    for name, words in stories.items():
        story = tokenize_story(tokenizer, words)
        out = result[name] = _outputs(model, story, layers, None if outs is None else outs[name])
        if causal:
            stride = _fit_stride(model, story, context_tokens, stride_tokens)
            windows = plan_windows(len(story.ids), context_tokens, stride)
        else:
            _fit_stride(model, story, context_tokens, 0)
            windows = per_word_windows(story.word_last, context_tokens)
        if len(story.ids):
            pad_id = _pad_id(model, story) if pad_id is None else pad_id
            jobs += [(*_window_job(story, w, not causal), out) for w in windows]
    if jobs and layers:
        _run_jobs(model, jobs, layers, batch_size, device, pad_id, progress, "features")
    return result


def _smaller_batch(size: int) -> int:
    """Half the windows per pass, after an out-of-memory error (re-raised at one window).

    The allocator's cached blocks are released first, so the retry starts from the memory the
    model itself holds. The smaller size is kept for the rest of the story: a batch that did
    not fit once would not fit next time either (the windows all have the same length).
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    warnings.warn(
        f"out of memory with {size} windows per pass; retrying with {size // 2} "
        "(lower features.batch_size to avoid the retries)",
        stacklevel=4,
    )
    return size // 2


class _RowIndex:
    """``state[rows, cols]`` with the indices copied once to each device that holds a layer."""

    def __init__(self, rows, cols):
        self._on = {rows.device: (rows, cols)}

    def take(self, state):
        """The rows of ``state`` (batch, tokens, hidden), on its device: a copy."""
        if state.device not in self._on:
            rows, cols = next(iter(self._on.values()))
            self._on[state.device] = (rows.to(state.device), cols.to(state.device))
        rows, cols = self._on[state.device]
        return state[rows, cols]


def _write(out, picked, words) -> None:
    """``out[words] = picked`` as float32, then ``out``'s dtype (float16 storage).

    ``words`` increase; a contiguous run (always, for a story's windows) is written as one
    slice, which an HDF5 dataset takes as one block. Rows on a GPU come over through
    :func:`_fetch` (in the model's dtype, through page-locked memory).
    """
    if not len(words):
        return
    import torch

    host = _fetch(picked)
    run = words[-1] - words[0] + 1 == len(words)
    if run and isinstance(out, np.ndarray) and out.dtype == np.float32:
        # widened straight into the destination: one pass over the host memory
        torch.from_numpy(out[int(words[0]) : int(words[-1]) + 1]).copy_(host)
        return
    rows = host.float().numpy().astype(out.dtype, copy=False)
    if run:
        out[int(words[0]) : int(words[-1]) + 1] = rows
    else:
        out[words] = rows


#: Page-locked host buffers that GPU rows are copied into, one per dtype, grown as needed.
_PINNED: dict = {}


def _fetch(picked):
    """``picked`` on the host, in its own dtype (a view of a reused buffer for GPU tensors).

    A bf16/fp16 model's rows travel in its dtype, half the bytes of float32, and are widened
    on the CPU; the copy goes through a page-locked buffer, which a GPU copies into several
    times faster than into pageable memory (BENCHMARKS.md, *GPU*). The view is valid until
    the next call.
    """
    import torch

    if picked.device.type != "cuda":
        return picked.cpu()
    n = picked.numel()
    buf = _PINNED.get(picked.dtype)
    if buf is None or buf.numel() < n:
        buf = _PINNED[picked.dtype] = torch.empty(
            max(n, 2 * (0 if buf is None else buf.numel())), dtype=picked.dtype, pin_memory=True
        )
    view = buf[:n].view(picked.shape)
    view.copy_(picked)  # synchronous: the buffer is reused by the next call
    return view


def _forward_kwargs(model) -> dict:
    """``use_cache=False`` where the model takes it.

    Otherwise a decoder builds a key/value cache of every layer during the pass (135 MiB for
    SmolLM2-135M at 8 windows of 384 tokens) that nothing reads.
    """
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"use_cache": False} if "use_cache" in parameters else {}


def _output_tensors(value) -> list[tuple]:
    """``(key, tensor)`` pairs of a module output: itself, a tuple's items or a dict's values."""
    import torch

    if isinstance(value, torch.Tensor):
        return [(None, value)]
    if isinstance(value, (tuple, list)):
        return [(i, v) for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    if isinstance(value, Mapping):
        return [(k, v) for k, v in value.items() if isinstance(v, torch.Tensor)]
    return []


def _input_tensors(args, kwargs) -> list[tuple]:
    """``(position or name, tensor)`` pairs of a module's positional and keyword inputs."""
    import torch

    pairs = list(enumerate(args)) + list(kwargs.items())
    return [(k, v) for k, v in pairs if isinstance(v, torch.Tensor)]


def _pick(kind: str, key, args, kwargs, output):
    if kind == "out":
        for k, v in _output_tensors(output):
            if k == key:
                return v
        return None
    return kwargs.get(key) if isinstance(key, str) else args[key] if key < len(args) else None


class _HiddenStateTaps:
    """Gather the requested hidden states' rows with forward hooks, as the layers produce them.

    ``output_hidden_states=True`` keeps every layer's hidden states of the whole batch until
    the pass ends (209 MiB for SmolLM2-135M at 8 x 384 tokens, 31 states). Instead, a probe
    pass on a tiny padded input finds, for each hidden state ``i``, the module call that
    produces that very tensor object (``hidden_states[i] is`` a module's output, or failing
    that a module's input: e.g. layer 0's input when the embeddings are scaled outside a
    module), and checks that its values at that moment equal the returned ones (nothing
    modifies it in place later). Which module that is depends on the architecture and the
    transformers version: the last hidden state is the final norm's output in Llama or GPT-2
    but the last block's in BERT; ALBERT runs one shared block repeatedly, hence the call count.

    A batch that does not call the tapped modules as the probe did is reported by
    :meth:`run` returning False; the caller then runs it with ``output_hidden_states``.
    Models where the probe fails use that path for every batch.
    """

    def __init__(self, model, layers, probe_ids, probe_mask, kwargs):
        self.model = model
        self.layers = list(layers)
        self.kwargs = kwargs
        self._batch = None
        self._handles = []
        self._warned = False
        self.taps = self._locate(probe_ids, probe_mask)
        if self.taps is None:
            self._warn("the hidden states of this model could not be located")

    def _locate(self, ids, mask) -> dict | None:
        """``{module name: [(call, kind, key, hidden-state index)]}`` and the calls per module."""
        import torch

        shape = tuple(ids.shape)
        seen, calls, handles = [], {}, []

        def hook(name):
            def record(module, args, kwargs, output):
                call = calls[name] = calls.get(name, -1) + 1
                for kind, pairs in (
                    ("out", _output_tensors(output)),
                    ("in", _input_tensors(args, kwargs)),
                ):
                    for key, t in pairs:
                        if t.dim() == 3 and tuple(t.shape[:2]) == shape:
                            seen.append((name, call, kind, key, t, t.detach().clone()))

            return record

        for name, module in self.model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook(name), with_kwargs=True))
        try:
            states = self.model(
                input_ids=ids, attention_mask=mask, output_hidden_states=True, **self.kwargs
            ).hidden_states
        finally:
            for handle in handles:
                handle.remove()
        if states is None or max(self.layers) >= len(states):
            return None
        taps = {}
        for layer in self.layers:
            state = states[layer]
            # the very tensor, else one with the same memory and layout (GPT-2 returns a view
            # of ln_f's output); outputs before inputs
            found = [r for r in seen if r[4] is state] or [r for r in seen if _same(r[4], state)]
            found = [r for r in found if r[2] == "out"] or found
            if not found or not torch.equal(found[0][5], state):
                return None
            name, call, kind, key = found[0][:4]
            taps.setdefault(name, []).append((call, kind, key, layer))
        self.n_calls = {name: calls[name] + 1 for name in taps}
        return taps

    def __enter__(self):
        for name, module in self.model.named_modules():
            if self.taps and name in self.taps:
                self._handles.append(
                    module.register_forward_hook(self._hook(name), with_kwargs=True)
                )
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    def _hook(self, name):
        def gather(module, args, kwargs, output):
            batch = self._batch
            if batch is None:
                return
            call = batch["calls"][name] = batch["calls"].get(name, -1) + 1
            for want, kind, key, layer in self.taps[name]:
                if want != call:
                    continue
                state = _pick(kind, key, args, kwargs, output)
                if state is None or state.dim() != 3 or tuple(state.shape[:2]) != batch["shape"]:
                    raise _TapMissed
                # the rows only, left on the device: no synchronisation inside the pass
                batch["picked"][layer] = batch["index"].take(state)

        return gather

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{why}; running with output_hidden_states instead (every layer of a batch "
                "held until the pass ends: more memory, same features)",
                stacklevel=4,
            )

    def run(self, input_ids, mask, rows, cols) -> dict | None:
        """Run one batch; ``{layer: rows}`` on the device, None if the taps did not all fire."""
        if not self.taps:
            return None
        batch = self._batch = {
            "calls": {},
            "picked": {},
            "shape": tuple(input_ids.shape),
            "index": _RowIndex(rows.to(input_ids.device), cols.to(input_ids.device)),
        }
        try:
            self.model(input_ids=input_ids, attention_mask=mask, **self.kwargs)
            ok = set(batch["picked"]) == set(self.layers) and all(
                batch["calls"].get(name) == n - 1 for name, n in self.n_calls.items()
            )
        except _TapMissed:
            ok = False
        finally:
            self._batch = None
        if not ok:
            self._warn("a batch did not call the modules that produce the hidden states")
            return None
        return batch["picked"]


def _same(a, b) -> bool:
    """Whether two tensors view the same memory with the same layout (hence the same values)."""
    return (
        a.device == b.device
        and a.dtype == b.dtype
        and a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
    )


class _TapMissed(Exception):
    """A tapped module call did not produce the expected hidden state."""


def _window_job(story: TokenizedStory, window: tuple, add_suffix: bool):
    """Token ids of a window, the words it provides and their positions in the window."""
    start, emit_from, end = window
    seq = list(story.prefix) + story.ids[start:end].tolist()
    if add_suffix:
        seq += list(story.suffix)
    lo, hi = np.searchsorted(story.word_last, [emit_from, end], side="left")
    words = np.arange(lo, hi)
    positions = story.word_last[lo:hi] - start + len(story.prefix)
    return seq, words, positions


def _pad_id(model, story: TokenizedStory) -> int:
    pad = getattr(model.config, "pad_token_id", None)
    if isinstance(pad, int) and pad >= 0:
        return pad
    return int(story.ids[0])


def _pad_batch(seqs: list[list[int]], pad_id: int, device):
    """Right-pad token sequences; returns (input_ids, attention_mask) on ``device``."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids.to(device), mask.to(device)


# ---------------------------------------------------------------------------------------------
# HDF5 storage


def _dataset_name(story: str, layer: int) -> str:
    story = str(story)
    if not story or "/" in story or story.startswith("."):
        raise ValueError(f"story name {story!r} cannot be an HDF5 group name")
    return f"{story}/layer_{int(layer)}"


class FeatureWriter:
    """Stream per-word features into one HDF5 file that appears only when complete.

    Datasets are ``/<story>/layer_<L>`` of shape (n_words, hidden); every key of ``info`` is
    stored JSON-encoded as a file attribute. The file is written to a temporary path and
    renamed onto ``path`` when the ``with`` block exits without error.

    Parameters
    ----------
    path : str or Path
        Output ``.h5`` file.
    info : mapping
        Model and extraction metadata (JSON-serialisable).
    storage_dtype : {"float32", "float16"}
        On-disk dtype; :func:`read_features` always returns float32.

    Examples
    --------
    >>> with FeatureWriter("feats.h5", info) as writer:  # doctest: +SKIP
    ...     writer.add("story1", 3, array)
    """

    def __init__(self, path: str | Path, info: Mapping, storage_dtype: str = "float32"):
        if np.dtype(storage_dtype) not in (np.float32, np.float16, np.float64):
            raise ValueError(f"storage_dtype must be a float dtype, got {storage_dtype!r}")
        from lmbrain.provenance import software_versions

        self.path = Path(path)
        self.info = {"provenance": software_versions(), **info}
        self.storage_dtype = np.dtype(storage_dtype)
        self._stack: contextlib.ExitStack | None = None
        self._file = None

    def __enter__(self) -> FeatureWriter:
        import h5py

        from lmbrain.io import atomic_path

        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(h5py.File(tmp, "w"))
            for key, value in self.info.items():
                self._file.attrs[key] = json.dumps(value, default=_json_default)
            self._file.attrs["storage_dtype"] = json.dumps(self.storage_dtype.name)
            self._stack = stack.pop_all()
        return self

    def add(self, story: str, layer: int, array: np.ndarray) -> None:
        """Write the (n_words, hidden) features of one story and layer."""
        if self._file is None:
            raise RuntimeError("FeatureWriter.add outside its `with` block")
        array = np.asarray(array)
        if array.ndim != 2:
            raise ValueError(f"features must be 2-D (n_words, hidden), got shape {array.shape}")
        self._file.create_dataset(
            _dataset_name(story, layer), data=array.astype(self.storage_dtype)
        )

    def empty(self, story: str, layer: int, shape: tuple[int, int]):
        """A zero-filled (n_words, hidden) dataset of one story and layer, to fill by rows.

        Returns the ``h5py.Dataset`` (``storage_dtype``); write float32 rows into it with
        slices or increasing indices (:func:`extract_word_features`'s ``out``).
        """
        if self._file is None:
            raise RuntimeError("FeatureWriter.empty outside its `with` block")
        if len(shape) != 2:
            raise ValueError(f"features must be 2-D (n_words, hidden), got shape {shape}")
        return self._file.create_dataset(
            _dataset_name(story, layer), shape=tuple(shape), dtype=self.storage_dtype, fillvalue=0
        )

    def add_times(self, story: str, times: np.ndarray) -> None:
        """Store the time (s) of each feature row of ``story``, for time-based features.

        Word features need none (their times are the words'); a speech model's rows are
        windows ending at ``times`` (see :mod:`lmbrain.audio`).
        """
        if self._file is None:
            raise RuntimeError("FeatureWriter.add_times outside its `with` block")
        self._file.create_dataset(f"{_dataset_name(story, 0).split('/')[0]}/times", data=times)

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack, self._file = self._stack, None, None
        return bool(stack.__exit__(exc_type, exc, tb))


def write_features(
    path: str | Path,
    story_features: Mapping[str, Mapping[int, np.ndarray]],
    info: Mapping,
    storage_dtype: str = "float32",
) -> None:
    """Write ``{story: {layer: array}}`` to an HDF5 file atomically (see :class:`FeatureWriter`)."""
    with FeatureWriter(path, info, storage_dtype) as writer:
        for story, per_layer in story_features.items():
            for layer, array in per_layer.items():
                writer.add(story, layer, array)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _open(path: str | Path):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "feature file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 feature file ({exc})") from exc


def read_features(path: str | Path, story: str, layer: int) -> np.ndarray:
    """Features of one story and layer as a float32 (n_words, hidden) array.

    Raises
    ------
    InputError
        Missing file, story or layer (the message lists what is there).
    """
    with _open(path) as fh:
        if story not in fh:
            raise InputError(path, f"no story '{story}' (stories: {sorted(fh.keys())})")
        key = f"layer_{int(layer)}"
        if key not in fh[story]:
            raise InputError(path, f"story '{story}' has no layer {layer} ({sorted(fh[story])})")
        return fh[story][key][()].astype(np.float32)


def read_feature_times(path: str | Path, story: str) -> np.ndarray | None:
    """Times (s) of the feature rows of ``story``, or None for word features."""
    with _open(path) as fh:
        if story in fh and "times" in fh[story]:
            return fh[story]["times"][()].astype(np.float64)
    return None


def read_feature_info(path: str | Path) -> dict:
    """The ``info`` mapping a feature file was written with."""
    with _open(path) as fh:
        return {key: json.loads(value) for key, value in fh.attrs.items()}


def read_feature_index(path: str | Path) -> dict[str, list[int]]:
    """``{story: sorted layers}`` stored in a feature file."""
    with _open(path) as fh:
        return {
            story: sorted(int(k.split("_", 1)[1]) for k in fh[story] if k.startswith("layer_"))
            for story in fh
        }


# ---------------------------------------------------------------------------------------------
# Feature-file ids: what determines a model's features, independent of its `name:`

#: Extraction settings (``features:`` config keys) that change the numbers in a feature file.
EXTRACTION_KEYS = ("context_tokens", "stride_tokens", "storage_dtype")
#: The settings that determine a speech model's features (:mod:`lmbrain.audio`).
AUDIO_EXTRACTION_KEYS = ("audio_context_s", "audio_stride_s", "storage_dtype")


def feature_spec(entry: Mapping, features: Mapping, modality: str = "text") -> dict:
    """Everything that determines a model's feature file, and nothing else.

    Two model entries with the same spec share one feature file even when their ``name``,
    ``family``, ``layers``, ``train_fractions`` or ``n_layers`` differ: every hidden state is
    stored, so the layer choice only affects the fits.

    Parameters
    ----------
    entry : mapping
        Model entry of the configuration (``model``, optional ``gguf_file``, ``revision``,
        ``untrained``, ``seed``).
    features : mapping
        The ``features:`` config section; the keys in :data:`EXTRACTION_KEYS` are kept
        (:data:`AUDIO_EXTRACTION_KEYS` for a speech model), unless the entry sets its own
        (``context_tokens``, ``stride_tokens``). Execution settings (``batch_size``,
        ``device``, ``dtype``, ``threads``) are not.
    modality : {"text", "audio"}
        From :func:`lmbrain.models.read_modality`: a speech model's features do not depend
        on token settings, nor a language model's on audio settings.

    Returns
    -------
    dict
        ``model`` (a local folder or file as an absolute path, so two spellings of one folder
        agree), ``gguf_file``, ``untrained``, ``seed`` (None unless untrained), ``revision``
        (only when the entry pins one) and the extraction settings. Usable as a model entry by :func:`lmbrain.models.load_model`.
    """
    from lmbrain.models import _check_entry, _looks_local

    _check_entry(entry)
    source = entry["model"].strip()
    path = Path(source).expanduser()
    if _looks_local(source) or path.exists():
        source = os.path.abspath(path)
    untrained = bool(entry.get("untrained", False))
    spec = {
        "model": source,
        "gguf_file": entry.get("gguf_file"),
        "untrained": untrained,
        "seed": int(entry.get("seed") or 0) if untrained else None,
    }
    if entry.get("revision") is not None:  # absent when unset: the ids of older files stand
        spec["revision"] = str(entry["revision"])
    # a model's own context_tokens / stride_tokens override the features: section
    keys = AUDIO_EXTRACTION_KEYS if modality == "audio" else EXTRACTION_KEYS
    spec.update({key: entry.get(key, features.get(key)) for key in keys})
    return spec


def feature_id(spec: Mapping) -> str:
    """Stable, filesystem-safe id of a feature file: a readable stem and a digest of ``spec``.

    Parameters
    ----------
    spec : mapping
        Output of :func:`feature_spec`.

    Returns
    -------
    str
        ``<stem>_<digest>``: the stem is the hub name (``/`` → ``--``), the package name or
        the local folder's name, then ``--<gguf stem>`` and ``-untrained-s<seed>`` where they
        apply; the digest is the first 10 hex digits of the SHA-256 of ``spec`` as sorted
        JSON, so any change of source, seed or extraction setting gives a new file.

    Examples
    --------
    >>> spec = {"model": "EleutherAI/pythia-70m", "gguf_file": None, "untrained": False,
    ...         "seed": None, "context_tokens": 256, "stride_tokens": None,
    ...         "storage_dtype": "float32"}
    >>> feature_id(spec).split("_")[0]
    'EleutherAI--pythia-70m'
    """
    from lmbrain.models import PACKAGE_PREFIX, sanitize

    source = str(spec["model"])
    if source.startswith(PACKAGE_PREFIX):
        stem = sanitize(source[len(PACKAGE_PREFIX) :])
    elif os.path.isabs(source):
        stem = sanitize(Path(source).name)
    else:
        stem = sanitize(source)
    if spec.get("gguf_file"):
        stem += "--" + sanitize(Path(str(spec["gguf_file"])).stem)
    if spec.get("untrained"):
        stem += f"-untrained-s{int(spec.get('seed') or 0)}"
    digest = hashlib.sha256(json.dumps(dict(spec), sort_keys=True).encode()).hexdigest()[:10]
    return f"{stem}_{digest}"
