"""Hidden states of speech models (HuBERT, WavLM, wav2vec 2.0, Whisper's encoder) over time.

A speech model sees the waveform, not words, so its features are a time series: the feature
at time ``t`` is the model's output at the **last frame** of a causal window of audio
``[t - context_s, t]`` (Antonello et al. 2023 used 16 s windows with a 0.1 s stride), for
``t = stride_s, 2 stride_s, ...`` up to the end of the story. A self-attention model
would otherwise let a frame see the sound after it. Each time ``t`` is stored with the
features, and the temporal model Lanczos-downsamples them to TRs exactly as it does word
features (:func:`lmbrain.temporal.build_design` takes any event times).

Whisper's encoder always takes 30 s of log-mel input, zero-padded after the audio; the frame
kept is the last one actually driven by audio (mel frames are 10 ms, encoder frames 20 ms):
``ceil(n_samples / hop_length) // 2 - 1``, so ``context_s`` must be at most 30 s.

Windows shorter than ``context_s`` (near the story start) are run on their own length; the
full-length windows are batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmbrain.errors import InputError

#: ``model_type`` values of the speech encoders this module runs.
AUDIO_MODEL_TYPES = frozenset(
    {
        "hubert",
        "wavlm",
        "wav2vec2",
        "wav2vec2-conformer",
        "data2vec-audio",
        "unispeech",
        "unispeech-sat",
        "sew",
        "sew-d",
        "whisper",
    }
)


def is_audio_config(config) -> bool:
    """Whether a transformers config (or its dict) belongs to a speech encoder."""
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    return model_type in AUDIO_MODEL_TYPES


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A WAV file as a mono float32 waveform in [-1, 1] and its sampling rate.

    Integer PCM is scaled by its type's range; several channels are averaged.

    Raises
    ------
    InputError
        Missing or unreadable file, or an empty recording.
    """
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "audio file not found (stimuli/<story>.wav)")
    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as exc:
        raise InputError(path, f"not a readable WAV file ({exc})") from exc
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        data = (data.astype(np.float64) - (info.max + info.min + 1) / 2) / (
            (info.max - info.min + 1) / 2
        )
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.size == 0:
        raise InputError(path, "the recording is empty")
    return data, int(rate)


def resample(waveform: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``) from ``rate_in`` to ``rate_out`` Hz."""
    if rate_in == rate_out:
        return np.asarray(waveform, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(waveform, rate_out // g, rate_in // g).astype(np.float32)


def window_times(duration_s: float, stride_s: float) -> np.ndarray:
    """End times ``stride_s, 2 stride_s, ...`` (<= ``duration_s``) of the causal windows."""
    if stride_s <= 0:
        raise ValueError(f"stride_s must be positive, got {stride_s}")
    n = int(np.floor(duration_s / stride_s + 1e-9))
    return stride_s * np.arange(1, n + 1, dtype=np.float64)


def window_bounds(times: np.ndarray, rate: int, context_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample ranges ``[start, stop)`` of the windows ending at ``times``."""
    stop = np.round(np.asarray(times) * rate).astype(np.int64)
    start = np.maximum(0, stop - int(round(context_s * rate)))
    return start, stop


def _is_whisper(model) -> bool:
    return getattr(model.config, "model_type", None) == "whisper"


def _last_frame_hidden(model, feature_extractor, chunks, layers, device):
    """Hidden states at the last audio-driven frame of each chunk (all of one length)."""
    import torch

    rate = feature_extractor.sampling_rate
    if _is_whisper(model):
        inputs = feature_extractor(
            [np.asarray(c) for c in chunks], sampling_rate=rate, return_tensors="pt"
        )
        n_mel = int(np.ceil(len(chunks[0]) / feature_extractor.hop_length))
        frame = max(0, n_mel // 2 - 1)
        encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
        dtype = next(model.parameters()).dtype
        with torch.inference_mode():
            out = encoder(
                inputs["input_features"].to(device=device, dtype=dtype), output_hidden_states=True
            )
    else:
        values = torch.as_tensor(np.stack(chunks), dtype=next(model.parameters()).dtype)
        if getattr(feature_extractor, "do_normalize", False):
            values = (values - values.mean(1, keepdim=True)) / torch.sqrt(
                values.var(1, keepdim=True, unbiased=False) + 1e-7
            )
        with torch.inference_mode():
            out = model(values.to(device), output_hidden_states=True)
        frame = -1
    hidden = out.hidden_states
    return {layer: hidden[layer][:, frame].float().cpu().numpy() for layer in layers}


def extract_audio_features(
    model,
    feature_extractor,
    waveform: np.ndarray,
    rate: int,
    layers: Sequence[int],
    *,
    context_s: float = 16.0,
    stride_s: float = 0.1,
    batch_size: int = 8,
    device: str = "cpu",
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Causal sliding-window hidden states of a speech model over one recording.

    Parameters
    ----------
    model : transformers speech model
        HuBERT / WavLM / wav2vec 2.0-style encoder, or Whisper (its encoder is used).
    feature_extractor : transformers feature extractor
        The model's (gives the sampling rate, normalisation, Whisper's log-mel).
    waveform : numpy.ndarray of shape (n_samples,)
        Mono audio.
    rate : int
        Sampling rate of ``waveform`` (resampled to the model's when different).
    layers : sequence of int
        Hidden-state indices (0 = the input projection / convolutional features).
    context_s, stride_s : float
        Window length and spacing in seconds.
    batch_size : int
        Full-length windows per forward pass.
    device : str

    Returns
    -------
    times : numpy.ndarray of shape (n_windows,)
        End time of each window in seconds from the start of the recording.
    features : dict
        ``layer -> (n_windows, hidden)`` float32 arrays.
    """
    model_rate = int(feature_extractor.sampling_rate)
    if _is_whisper(model):
        limit = feature_extractor.n_samples / model_rate
        if context_s > limit + 1e-9:
            raise ValueError(f"Whisper takes at most {limit:g} s of audio; context_s={context_s}")
    audio = resample(np.asarray(waveform, dtype=np.float32), rate, model_rate)
    times = window_times(len(audio) / model_rate, stride_s)
    start, stop = window_bounds(times, model_rate, context_s)
    # the convolutional front end needs a minimum length (400 samples for HuBERT's)
    min_len = int(getattr(feature_extractor, "n_fft", 400))
    lengths = stop - start
    out = {layer: [None] * len(times) for layer in layers}
    order: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        order.setdefault(int(n), []).append(i)
    for n, idx in order.items():
        for k in range(0, len(idx), batch_size):
            batch = idx[k : k + batch_size]
            chunks = [audio[start[i] : stop[i]] for i in batch]
            if n < min_len:  # a window shorter than the front end: zero-pad on the left
                chunks = [np.pad(c, (min_len - len(c), 0)) for c in chunks]
            hidden = _last_frame_hidden(model, feature_extractor, chunks, layers, device)
            for layer, rows in hidden.items():
                for i, row in zip(batch, rows, strict=True):
                    out[layer][i] = row
    return times, {layer: np.stack(rows).astype(np.float32) for layer, rows in out.items()}


def synthesize_speechlike(
    onsets: np.ndarray,
    offsets: np.ndarray,
    words: Sequence[str],
    duration_s: float,
    rate: int = 16000,
) -> np.ndarray:
    """A deterministic speech-like signal aligned to word timings (for the demo dataset).

    Each word is a voiced sound between its onset and offset: a sawtooth "glottal" source on
    a fundamental between 100 and 220 Hz set by the word's letters, through two formant
    resonators (second-order filters, also set by the word), under a raised-cosine
    envelope; silence elsewhere.

    Returns
    -------
    numpy.ndarray of shape (round(duration_s * rate),), float32 in [-0.8, 0.8]
    """
    from scipy.signal import lfilter

    n = int(round(duration_s * rate))
    signal = np.zeros(n, dtype=np.float64)
    for onset, offset, word in zip(onsets, offsets, words, strict=True):
        a, b = int(round(onset * rate)), min(n, int(round(offset * rate)))
        if b <= a:
            continue
        code = sum((i + 1) * ord(c) for i, c in enumerate(str(word).lower()))
        f0 = 100.0 + (code % 120)
        source = 2.0 * ((f0 * np.arange(b - a) / rate) % 1.0) - 1.0
        wave = np.zeros(b - a)
        for formant in (300.0 + (code * 7) % 600, 900.0 + (code * 13) % 1500):
            radius = np.exp(-np.pi * 100.0 / rate)  # 100 Hz bandwidth
            theta = 2 * np.pi * formant / rate
            wave += lfilter([1 - radius], [1, -2 * radius * np.cos(theta), radius**2], source)
        wave *= 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(b - a) / max(1, b - a - 1))
        signal[a:b] += wave
    peak = np.abs(signal).max()
    return (0.8 * signal / peak if peak > 0 else signal).astype(np.float32)


def write_wav(path: str | Path, waveform: np.ndarray, rate: int) -> None:
    """Write a mono 16-bit PCM WAV file atomically."""
    from scipy.io import wavfile

    from lmbrain.io import atomic_path

    pcm = np.clip(np.round(np.asarray(waveform) * 32767), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        wavfile.write(tmp, int(rate), pcm)
