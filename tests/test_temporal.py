"""Tests of the temporal model against independent computations."""

import math

import numpy as np
import pytest

from lmbrain import temporal


def _lanczos_scalar(t, cutoff, window):
    """The Huth-lab formula, evaluated one point at a time."""
    u = t * cutoff
    if u == 0:
        return 1.0
    if abs(u) > window:
        return 0.0
    return window * math.sin(math.pi * u) * math.sin(math.pi * u / window) / (math.pi**2 * u**2)


def _gamma_pdf(t, shape, scale):
    """Gamma density written out, independent of scipy."""
    if t <= 0:
        return 0.0
    return t ** (shape - 1) * math.exp(-t / scale) / (math.gamma(shape) * scale**shape)


def _glover_scalar(t):
    """Glover (1999) as nilearn >= 0.11 parametrises it (undershoot ratio 0.48), unit area."""
    return (_gamma_pdf(t, 6 / 0.9, 0.9) - 0.48 * _gamma_pdf(t, 12 / 0.9, 0.9)) / 0.52


# --------------------------------------------------------------------------- Lanczos
@pytest.mark.parametrize("window", [2, 3])
def test_lanczos_kernel_matches_formula(window):
    cutoff = 0.5
    ts = np.array([0.0, 0.3, -0.3, 1.0, 2.0, 2.7, -4.1, 5.9, 6.0, 6.1, -7.0, 20.0])
    got = temporal.lanczos_kernel(ts, cutoff, window)
    want = [_lanczos_scalar(t, cutoff, window) for t in ts]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert got[0] == 1.0
    assert np.all(got[np.abs(ts * cutoff) > window] == 0.0)
    # zeros at non-zero integer u inside the window
    u_int = np.arange(1, window + 1) / cutoff
    np.testing.assert_allclose(temporal.lanczos_kernel(u_int, cutoff, window), 0.0, atol=1e-12)


def test_lanczos_matrix_entries_brute_force():
    rng = np.random.default_rng(0)
    old = np.sort(rng.uniform(0, 20, size=37))
    new = temporal.tr_times(10, 2.0)
    mat = temporal.lanczos_matrix(old, new, window=3, cutoff_mult=0.8)
    assert mat.shape == (10, 37)
    cutoff = 0.8 / 2.0
    for i in range(10):
        for j in range(37):
            assert mat[i, j] == pytest.approx(
                _lanczos_scalar(new[i] - old[j], cutoff, 3), abs=1e-12
            )


def _irregular_word_times(rng, duration):
    gaps = rng.uniform(0.1, 0.5, size=int(duration / 0.1) + 10)
    times = np.cumsum(gaps)
    return times[times < duration]


def test_downsample_slow_sinusoid_is_reproduced_up_to_scale():
    rng = np.random.default_rng(1)
    tr, n_trs = 2.0, 150
    words = _irregular_word_times(rng, n_trs * tr)
    trs = temporal.tr_times(n_trs, tr)
    f = 0.03  # Hz, far below the Nyquist frequency 0.25 Hz
    out = temporal.lanczos_downsample(np.sin(2 * np.pi * f * words), words, trs)
    assert out.shape == (n_trs, 1) and out.dtype == np.float32
    inner = slice(5, n_trs - 5)  # away from the story edges
    ref = np.sin(2 * np.pi * f * trs[inner])
    got = out[inner, 0]
    assert np.corrcoef(got, ref)[0, 1] > 0.98
    # the scale is the number of words per TR (sum, no normalisation)
    scale = got @ ref / (ref @ ref)
    assert scale == pytest.approx(tr / np.mean(np.diff(words)), rel=0.1)


def test_downsample_attenuates_above_nyquist():
    rng = np.random.default_rng(2)
    tr, n_trs = 2.0, 150
    words = _irregular_word_times(rng, n_trs * tr)
    trs = temporal.tr_times(n_trs, tr)
    inner = slice(5, n_trs - 5)
    amp = {}
    for f in (0.03, 0.4):
        out = temporal.lanczos_downsample(np.sin(2 * np.pi * f * words), words, trs)
        amp[f] = out[inner, 0].std()
    assert amp[0.4] < 0.25 * amp[0.03]


def test_downsample_rejects_mismatched_rows():
    with pytest.raises(ValueError):
        temporal.lanczos_downsample(np.zeros((3, 2)), [0.0, 1.0], [0.0, 2.0])


def test_tr_times_convention():
    np.testing.assert_allclose(temporal.tr_times(4, 1.5), [0.75, 2.25, 3.75, 5.25])


# --------------------------------------------------------------------------- trim/zscore/delay
def test_trim():
    x = np.arange(10)[:, None]
    np.testing.assert_array_equal(temporal.trim(x, 2, 3)[:, 0], [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(temporal.trim(x, 1, 0)[:, 0], np.arange(1, 10))
    with pytest.raises(ValueError):
        temporal.trim(x, 5, 5)
    with pytest.raises(ValueError):
        temporal.trim(x, -1, 0)


def test_zscore_matches_manual_and_constant_columns_are_zero():
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    x[:, 1] = 0.1  # constant, with round-off in its mean
    x[:, 2] = 0.0
    z = temporal.zscore(x)
    assert z.dtype == np.float32
    assert np.all(np.isfinite(z))
    np.testing.assert_array_equal(z[:, 1:3], 0.0)
    for j in (0, 3):
        col = x[:, j].astype(np.float64)
        np.testing.assert_allclose(z[:, j], (col - col.mean()) / col.std(), rtol=1e-5, atol=1e-6)
    zt = temporal.zscore(x.T, axis=1)
    np.testing.assert_allclose(zt.T, z, atol=1e-6)


def _delayed_brute_force(x, delays):
    n, d = x.shape
    out = np.zeros((n, d * len(delays)))
    for i, k in enumerate(delays):
        for t in range(n):
            if 0 <= t - k < n:
                out[t, i * d : (i + 1) * d] = x[t - k]
    return out


def test_make_delayed_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(9, 3))
    delays = [1, 2, 0, -2, 4, 12]
    got = temporal.make_delayed(x, delays)
    assert got.shape == (9, 3 * len(delays))
    np.testing.assert_array_equal(got, _delayed_brute_force(x, delays))


# --------------------------------------------------------------------------- HRF
def test_glover_hrf_matches_formula_and_shape():
    tr, ov = 2.0, 20
    h = temporal.glover_hrf(tr, oversampling=ov, time_length=32.0)
    dt = tr / ov
    assert h.shape == (int(round(32.0 / dt)),)
    # nilearn evaluates the gammas one step late (loc=dt) on linspace(0, 32, n)
    grid = np.linspace(0, 32.0, h.size) - dt
    want = np.array([_glover_scalar(t) for t in grid])
    np.testing.assert_allclose(h, want / (want.sum() * dt), rtol=1e-9, atol=1e-12)
    t = np.arange(h.size) * dt
    assert 4.5 < t[np.argmax(h)] < 5.6  # peak ~5 s
    assert 11.0 < t[np.argmin(h)] < 14.0  # undershoot ~12 s
    assert h.sum() * dt == pytest.approx(1.0, abs=1e-9)  # unit integral
    # undershoot depth relative to the peak: Glover 1999 / nilearn >= 0.11, not the old 0.35
    depth = -h.min() / h.max()
    old = np.array([_gamma_pdf(x, 6 / 0.9, 0.9) - 0.35 * _gamma_pdf(x, 12 / 0.9, 0.9) for x in t])
    assert depth == pytest.approx(-old.min() / old.max() * 1.45, rel=0.05)
    shifted = temporal.glover_hrf(tr, oversampling=ov, onset=1.0)
    late = np.array([_glover_scalar(t - 1.0) for t in grid])
    np.testing.assert_allclose(shifted, late / (late.sum() * dt), rtol=1e-9, atol=1e-12)


def test_glover_hrf_is_nilearns():
    from nilearn.glm.first_level.hemodynamic_models import glover_hrf

    for tr, ov in [(2.0, 50), (1.5, 10)]:
        np.testing.assert_allclose(
            temporal.glover_hrf(tr, ov) * (tr / ov), glover_hrf(tr, ov), rtol=1e-12
        )
    t = np.arange(0, 32, 0.04)
    np.testing.assert_allclose(
        temporal.glover_hrf_at(t), [_glover_scalar(x) for x in t], rtol=1e-9, atol=1e-12
    )


def test_boxcar_regressors_match_nilearn_compute_regressor():
    """Duration-weighted words (hrf_events: boxcar) are what nilearn's compute_regressor makes
    of (onsets, durations, amplitudes), as in Bonnasse-Gahot & Pallier (2024)."""
    from nilearn.glm.first_level import compute_regressor

    tr, n_trs = 2.0, 60
    rng = np.random.default_rng(3)
    onsets = np.sort(rng.uniform(2.0, 100.0, size=120))
    durations = rng.uniform(0.1, 0.9, size=onsets.size)
    amplitudes = rng.normal(size=onsets.size)
    # nilearn reads the TR off frame_times.max() / (n - 1), which TR-centred times (i * tr +
    # tr / 2) would stretch: give it i * tr and the onsets tr / 2 earlier, the same thing. Both
    # sides round times to their own fine grid: compare on a fine one (oversampling 500).
    ov = 500
    want, _ = compute_regressor(
        np.vstack([onsets - tr / 2, durations, amplitudes]),
        "glover",
        np.arange(n_trs) * tr,
        oversampling=ov,
    )
    got = temporal.hrf_regressors(
        amplitudes, onsets, n_trs, tr, durations=durations, oversampling=ov
    )[:, 0]
    np.testing.assert_allclose(got, want[:, 0], atol=0.01 * np.abs(want).max())
    assert np.corrcoef(got, want[:, 0])[0, 1] > 0.9999
    # a boxcar weighs by duration: a word twice as long gives about twice the response
    short = temporal.hrf_regressors([1.0], [10.0], n_trs, tr, durations=[0.2])
    long = temporal.hrf_regressors([1.0], [10.0], n_trs, tr, durations=[0.4])
    assert long.max() / short.max() == pytest.approx(2.0, rel=0.02)


def test_boxcar_regressors_vs_brute_force_integral():
    tr, n_trs = 2.0, 40
    feats, times = _word_inputs(11, n_trs, tr)
    durations = np.full(times.size, 0.3)
    ov = 500  # boxcar ends fall on a tr / ov grid: fine enough for the exact integral
    got = temporal.hrf_regressors(feats, times, n_trs, tr, durations=durations, oversampling=ov)
    want = np.zeros((n_trs, 3))
    fine = np.linspace(0.0, 0.3, 61)
    for i, t_tr in enumerate(temporal.tr_times(n_trs, tr)):
        for w in range(times.size):
            # nilearn's kernel is the curve one fine step (tr / ov) late
            values = [_glover_scalar(t_tr - times[w] - u - tr / ov) for u in fine]
            want[i] += np.trapezoid(values, fine) * feats[w]
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9999
    np.testing.assert_allclose(got, want, atol=0.01 * np.abs(want).max())


def _word_inputs(seed, n_trs, tr, n_feat=3):
    rng = np.random.default_rng(seed)
    times = _irregular_word_times(rng, n_trs * tr - 5.0)
    feats = rng.normal(size=(times.size, n_feat))
    return feats, times


def test_hrf_regressors_vs_brute_force_sum():
    tr, n_trs = 2.0, 40
    feats, times = _word_inputs(5, n_trs, tr)
    got = temporal.hrf_regressors(feats, times, n_trs, tr)
    assert got.shape == (n_trs, 3) and got.dtype == np.float32
    want = np.zeros((n_trs, 3))
    for i, t_tr in enumerate(temporal.tr_times(n_trs, tr)):
        for w in range(times.size):
            lag = t_tr - times[w]
            if 0 <= lag < 32.0:
                want[i] += _glover_scalar(lag) * feats[w]
    # only the rounding of word times to the 0.04 s grid differs
    np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max())
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999


def test_hrf_regressors_equals_fine_grid_convolution():
    tr, n_trs, ov = 2.0, 30, 10
    feats, times = _word_inputs(6, n_trs, tr, n_feat=2)
    dt = tr / ov
    n_fine = n_trs * ov + 1
    impulses = np.zeros((n_fine, 2))
    for t, f in zip(times, feats, strict=True):
        impulses[int(np.rint(t / dt))] += f
    hrf = temporal.glover_hrf(tr, oversampling=ov)
    conv = np.stack([np.convolve(impulses[:, j], hrf)[:n_fine] for j in range(2)], axis=1)
    idx = np.rint(temporal.tr_times(n_trs, tr) / dt).astype(int)
    got = temporal.hrf_regressors(feats, times, n_trs, tr, oversampling=ov)
    np.testing.assert_allclose(got, conv[idx], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- one story
def test_build_design_lanczos_chain_and_shape():
    tr, n_trs = 2.0, 60
    feats, times = _word_inputs(7, n_trs, tr, n_feat=4)
    x = temporal.build_design(feats, times, n_trs, tr, 5, 3, delays=(1, 2, 3, 4))
    assert x.shape == (52, 16) and x.dtype == np.float32
    manual = temporal.lanczos_downsample(feats, times, temporal.tr_times(n_trs, tr))
    manual = temporal.zscore(manual[5:57].astype(np.float64))
    np.testing.assert_allclose(x, _delayed_brute_force(manual, (1, 2, 3, 4)), atol=1e-5)


def test_build_design_hrf_shape_and_zscored():
    tr, n_trs = 2.0, 60
    feats, times = _word_inputs(8, n_trs, tr, n_feat=4)
    x = temporal.build_design(feats, times, n_trs, tr, 5, 0, method="hrf")
    assert x.shape == (55, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        temporal.build_design(feats, times, n_trs, tr, 5, 0, method="nope")


def test_prepare_responses():
    rng = np.random.default_rng(9)
    y = rng.normal(2.0, 3.0, size=(30, 5))
    y[:, 4] = 7.0
    out = temporal.prepare_responses(y, 4, 2)
    assert out.shape == (24, 5) and out.dtype == np.float32
    ref = y[4:28, :4]
    np.testing.assert_allclose(out[:, :4], (ref - ref.mean(0)) / ref.std(0), atol=1e-5)
    np.testing.assert_array_equal(out[:, 4], 0.0)


def test_word_events_follow_hrf_events():
    from lmbrain.config import validate_config
    from lmbrain.encoding import word_events
    from lmbrain.stimulus import Words

    words = Words(words=["a", "b"], onsets=np.array([1.0, 2.0]), offsets=np.array([1.5, 2.2]))
    times, durations = word_events(words, {"method": "hrf", "hrf_events": "boxcar"})
    np.testing.assert_allclose(times, [1.0, 2.0])
    np.testing.assert_allclose(durations, [0.5, 0.2])
    for temporal_cfg in [{"method": "hrf", "hrf_events": "impulse"}, {"method": "lanczos"}]:
        times, durations = word_events(words, temporal_cfg)
        np.testing.assert_allclose(times, [1.25, 2.1])
        assert durations is None
    minimal = {"datasets": {"demo": {"simulate": {}}}, "models": [{"model": "gpt2"}]}
    assert validate_config(minimal)["temporal"]["hrf_events"] == "impulse"
