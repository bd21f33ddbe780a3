"""Tests for the synthetic source-filter speech synthesizer (tfvae.synth)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tfvae.synth import (
    EMOTION_STYLES,
    EMOTIONS,
    SAMPLE_RATE,
    EmotionStyle,
    Voice,
    make_voice,
    synthesize,
)


def _f0_median(y: np.ndarray, fs: int = SAMPLE_RATE) -> float:
    """Median F0 (Hz) from normalised autocorrelation over voiced 40 ms frames."""
    x = y.astype(np.float64)
    # crude low-pass (moving average) keeps the low harmonics, weakens formant peaks
    x = np.convolve(x, np.ones(8) / 8.0, mode="same")
    fl, hop = 640, 160
    frames = np.lib.stride_tricks.sliding_window_view(x, fl)[::hop]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    lmin, lmax = int(fs / 450), int(fs / 60)
    bias = 1.0 - np.arange(fl) / fl
    f0s = []
    for fr, e in zip(frames, rms):
        if e < 0.1 * rms.max():
            continue
        fr = fr - fr.mean()
        spec = np.fft.rfft(fr, 2 * fl)
        ac = np.fft.irfft(np.abs(spec) ** 2)[:fl]
        ac = ac / (ac[0] + 1e-12) / bias
        lag = lmin + int(np.argmax(ac[lmin:lmax]))
        if ac[lag] < 0.5:
            continue
        f0s.append(fs / lag)
    assert len(f0s) >= 10, "too few voiced frames found"
    return float(np.median(f0s))


def _centroid(y: np.ndarray, fs: int = SAMPLE_RATE) -> float:
    p = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1.0 / fs)
    return float(np.sum(p * f) / np.sum(p))


def _rms_db(y: np.ndarray) -> float:
    return float(20.0 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)) + 1e-12))


def test_constants_and_styles():
    assert SAMPLE_RATE == 16000
    assert EMOTIONS == ("neutral", "angry", "sad", "happy", "disgust")
    assert set(EMOTION_STYLES) == set(EMOTIONS)
    assert all(isinstance(s, EmotionStyle) for s in EMOTION_STYLES.values())
    st = EMOTION_STYLES
    # literature-typical directions relative to neutral
    assert st["angry"].pitch_scale > st["neutral"].pitch_scale > st["sad"].pitch_scale
    assert st["happy"].pitch_range_st > st["neutral"].pitch_range_st > st["sad"].pitch_range_st
    assert st["angry"].tempo > st["neutral"].tempo > st["sad"].tempo
    assert st["angry"].gain_db > st["neutral"].gain_db > st["sad"].gain_db
    assert st["angry"].tilt_delta < 0 < st["sad"].tilt_delta


def test_deterministic_and_distinct():
    v = make_voice(3)
    a = synthesize(v, "angry", 2)
    b = synthesize(v, "angry", 2)
    np.testing.assert_array_equal(a, b)
    c = synthesize(v, "angry", 3)
    assert a.shape != c.shape or not np.array_equal(a, c)
    d = synthesize(v, "angry", 2, seed=1)
    assert a.shape != d.shape or not np.array_equal(a, d)
    e = synthesize(v, "sad", 2)
    assert a.shape != e.shape or not np.array_equal(a, e)
    assert make_voice(5, seed=2) == make_voice(5, seed=2)
    assert make_voice(5, seed=2) != make_voice(5, seed=3)


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_format(emotion):
    for idx in (0, 1):
        for utt in (0, 1):
            y = synthesize(make_voice(idx), emotion, utt)
            assert isinstance(y, np.ndarray)
            assert y.dtype == np.float32
            assert y.ndim == 1
            assert 1.5 * SAMPLE_RATE <= y.shape[0] <= 3.0 * SAMPLE_RATE
            assert np.all(np.isfinite(y))
            peak = float(np.max(np.abs(y)))
            assert 0.005 < peak <= 0.99
            assert _rms_db(y) > -60.0


def test_unknown_emotion_raises():
    with pytest.raises(ValueError, match="bored"):
        synthesize(make_voice(0), "bored", 0)


def test_make_voice_traits():
    voices = [make_voice(i) for i in range(16)]
    assert [v.speaker_id for v in voices] == [f"spk{i:02d}" for i in range(16)]
    assert len(set(voices)) == 16
    for i, v in enumerate(voices):
        assert isinstance(v, Voice)
        if i % 2 == 0:
            assert v.sex == "female"
            assert 160.0 <= v.f0_hz <= 260.0
            assert 1.0 <= v.vtl_scale <= 1.2
        else:
            assert v.sex == "male"
            assert 85.0 <= v.f0_hz <= 155.0
            assert 0.86 <= v.vtl_scale <= 1.0
        assert v.rate_sps > 0 and v.jitter > 0 and v.shimmer > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        voices[0].f0_hz = 100.0  # type: ignore[misc]
    # speakers are genuinely different, not copies with a new id
    f0s = np.array([v.f0_hz for v in voices])
    assert len(np.unique(np.round(f0s, 1))) == 16
    # even the same-index speaker differs between corpus seeds
    assert make_voice(4, seed=1).f0_hz != make_voice(4, seed=0).f0_hz


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_f0_follows_voice_and_emotion(index):
    v = make_voice(index)
    for emotion in ("neutral", "angry", "sad", "happy"):
        target = v.f0_hz * EMOTION_STYLES[emotion].pitch_scale
        measured = np.median([_f0_median(synthesize(v, emotion, u)) for u in range(3)])
        assert abs(measured / target - 1.0) < 0.10, (v.speaker_id, emotion, measured, target)


def test_energy_ordering():
    rms = {e: [] for e in ("angry", "neutral", "sad")}
    for idx in range(4):
        v = make_voice(idx)
        for e in rms:
            rms[e].extend(_rms_db(synthesize(v, e, u)) for u in range(4))
    mean = {e: float(np.mean(r)) for e, r in rms.items()}
    assert mean["angry"] > mean["neutral"] + 2.0
    assert mean["neutral"] > mean["sad"] + 2.0


def test_emotions_overlap_per_utterance():
    # emotion is not trivially separable: per-utterance loudness of neighbouring classes overlaps
    v = make_voice(6)
    neutral = [_rms_db(synthesize(v, "neutral", u)) for u in range(8)]
    angry = [_rms_db(synthesize(v, "angry", u)) for u in range(8)]
    disgust = [_rms_db(synthesize(v, "disgust", u)) for u in range(8)]
    assert min(disgust) < max(neutral) and min(neutral) < max(disgust)
    assert np.std(angry) > 1.0


def test_female_voices_brighter_than_male():
    cent = {"female": [], "male": []}
    for idx in range(8):
        v = make_voice(idx)
        for u in range(2):
            cent[v.sex].append(_centroid(synthesize(v, "neutral", u)))
    assert np.mean(cent["female"]) > 1.1 * np.mean(cent["male"])
