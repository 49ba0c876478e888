"""Speech-model features: causal windows, last driven frame, WAV I/O, synthetic speech."""

import numpy as np
import pytest

from lmbrain import audio
from lmbrain.errors import InputError
from lmbrain.models import load_model
from lmbrain.testing import make_tiny_audio_model


@pytest.fixture(scope="module")
def tiny_speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    out = {}
    for arch in ("hubert", "whisper"):
        folder = make_tiny_audio_model(root / arch, arch=arch, seed=1)
        out[arch] = load_model({"model": str(folder)}, root / "cache")
    return out


def test_window_times_and_bounds_closed_form():
    np.testing.assert_allclose(audio.window_times(1.05, 0.25), [0.25, 0.5, 0.75, 1.0])
    start, stop = audio.window_bounds(np.array([0.25, 1.0, 3.0]), 100, context_s=1.5)
    np.testing.assert_array_equal(stop, [25, 100, 300])
    np.testing.assert_array_equal(start, [0, 0, 150])
    with pytest.raises(ValueError, match="stride"):
        audio.window_times(1.0, 0.0)


def test_wav_round_trip_resample_and_errors(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    audio.write_wav(tmp_path / "a.wav", tone, rate)
    back, r = audio.read_wav(tmp_path / "a.wav")
    assert r == rate and np.abs(back - tone).max() < 1e-4
    down = audio.resample(back, rate, 8000)
    spectrum = np.abs(np.fft.rfft(down))
    assert np.argmax(spectrum) * 8000 / len(down) == pytest.approx(440, abs=2)
    from scipy.io import wavfile

    wavfile.write(tmp_path / "stereo.wav", rate, np.stack([tone, -tone], 1).astype(np.float32))
    np.testing.assert_allclose(audio.read_wav(tmp_path / "stereo.wav")[0], 0, atol=1e-7)
    with pytest.raises(InputError, match="not found"):
        audio.read_wav(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(InputError, match="bad.wav"):
        audio.read_wav(tmp_path / "bad.wav")


def test_hubert_windows_match_direct_calls_and_never_see_the_future(tiny_speech):
    import torch

    model, extractor, info = tiny_speech["hubert"]
    assert info["modality"] == "audio" and info["n_layers"] == 2
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.normal(size=16000 * 2)).astype(np.float32)
    times, feats = audio.extract_audio_features(
        model, extractor, wave, 16000, [0, 2], context_s=0.75, stride_s=0.25, batch_size=3
    )
    np.testing.assert_allclose(times, 0.25 * np.arange(1, 9))
    for k, t in enumerate(times):  # brute force: the extractor's own normalisation, one call
        chunk = wave[max(0, int(round((t - 0.75) * 16000))) : int(round(t * 16000))]
        inputs = extractor(chunk, sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(inputs["input_values"], output_hidden_states=True).hidden_states
        for layer in (0, 2):
            np.testing.assert_allclose(feats[layer][k], hidden[layer][0, -1], rtol=1e-4, atol=1e-5)
    future = wave.copy()
    future[int(1.0 * 16000) :] = rng.normal(size=future.size - 16000)
    _, changed = audio.extract_audio_features(
        model, extractor, future, 16000, [2], context_s=0.75, stride_s=0.25
    )
    np.testing.assert_allclose(changed[2][:4], feats[2][:4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed[2][4:], feats[2][4:])


def test_whisper_keeps_the_last_frame_driven_by_audio(tiny_speech):
    model, extractor, info = tiny_speech["whisper"]
    assert info["n_layers"] == 2
    rng = np.random.default_rng(2)
    wave = (0.1 * rng.normal(size=16000)).astype(np.float32)
    _, feats = audio.extract_audio_features(
        model, extractor, wave, 16000, [2], context_s=1.0, stride_s=1.0
    )
    louder = wave.copy()
    louder[-160:] *= 5  # only the last 10 ms differ
    _, moved = audio.extract_audio_features(
        model, extractor, louder, 16000, [2], context_s=1.0, stride_s=1.0
    )
    assert not np.allclose(moved[2], feats[2])  # the kept frame hears the end of the window
    with pytest.raises(ValueError, match="at most 30"):
        audio.extract_audio_features(model, extractor, wave, 16000, [2], context_s=31.0)


def test_synthetic_speech_is_silent_between_words_and_deterministic():
    onsets, offsets = np.array([0.5, 1.5]), np.array([1.0, 2.2])
    a = audio.synthesize_speechlike(onsets, offsets, ["fox", "river"], 3.0, rate=8000)
    b = audio.synthesize_speechlike(onsets, offsets, ["fox", "river"], 3.0, rate=8000)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24000,) and np.abs(a).max() <= 0.8 + 1e-6
    assert np.all(a[:3990] == 0) and np.all(a[8010:11990] == 0) and np.all(a[17610:] == 0)
    assert np.abs(a[4000:8000]).max() > 0.1 and np.abs(a[12000:17600]).max() > 0.1
