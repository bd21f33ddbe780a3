"""Deterministic source-filter speech synthesizer for a *synthetic* emotional-speech corpus.

Nothing here is recorded speech: every utterance is generated from a small parametric model
of a talker (``Voice``) and an emotional speaking style (``EmotionStyle``).  The model follows
the classic source-filter view of speech production:

* **Text.**  Each utterance draws a short random "text": 2-4 words of CV(C) syllables built
  from a vowel inventory, sonorants (m, n, l), fricatives (s, sh, f, h) and plosives (p, t, k).
* **Prosody.**  Syllable durations follow the speaker's rate times the emotion's tempo, with
  stress and phrase-final lengthening and optional inter-word pauses.  The F0 contour in
  semitones is declination + per-word pitch accents (rising / falling shapes depending on the
  emotion) + a phrase-final boundary tone + slow random drift; it is then centred so that its
  median over voiced samples equals ``voice.f0_hz * style.pitch_scale`` (times a small random
  per-utterance factor).
* **Source.**  Rosenberg glottal-flow pulses computed from a vectorised phase accumulator,
  with per-period jitter and shimmer, open quotient / closing phase / one-pole low-pass set by
  the spectral-tilt parameter, pulse-synchronous aspiration noise (breathiness) and optional
  creak (sub-harmonic amplitude alternation, extra jitter, lowered F0).
* **Filter.**  A cascade of formant resonators (F1..F4 speaker- and vowel-dependent, scaled by
  the vocal-tract-length factor, plus a fixed F5) and a nasal pole/zero pair.  F1..F4 follow
  linearly interpolated formant tracks and are updated every 10 ms block (one 8th-order
  ``scipy.signal.lfilter`` call per block with carried state), so there are real formant
  transitions between segments.  Fricatives and bursts are band-pass noise whose level is set
  relative to the vowel level.
* **Radiation / channel.**  First-difference lip radiation, vocal effort gain, a small noise
  floor, and a peak limit of 0.99.

Every emotion parameter is perturbed per utterance (plus a per-utterance expression
intensity and a per-speaker expressiveness), so emotion classes overlap with each other and
with speaker differences, as in real acted corpora.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter, sosfilt

SAMPLE_RATE = 16000
EMOTIONS = ("neutral", "angry", "sad", "happy", "disgust")

_MIN_DUR = 1.5
_MAX_DUR = 3.0
_BLOCK = 160  # samples per formant-update block (10 ms)


# --------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voice:
    """Stable traits of one synthetic speaker."""

    speaker_id: str
    sex: str  # "female" or "male"
    f0_hz: float  # neutral median pitch
    vtl_scale: float  # formant scale factor (shorter vocal tract -> larger)
    breathiness: float  # aspiration noise mix (0..~0.5)
    jitter: float  # relative period perturbation (e.g. 0.005 = 0.5 %)
    shimmer: float  # relative amplitude perturbation
    tilt: float  # glottal spectral tilt, 0 = tense/flat .. 1 = lax/steep
    rate_sps: float  # neutral speaking rate, syllables per second
    bw_scale: float = 1.0  # formant bandwidth factor
    nasality: float = 0.2  # nasal zero strength (0..1)
    formant_offsets: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # per-formant
    pitch_range_scale: float = 1.0  # how lively this speaker's intonation is
    level_db: float = 0.0  # habitual loudness
    expressiveness: float = 1.0  # how strongly this speaker shows emotion
    creak: float = 0.0  # habitual vocal fry at phrase ends (0..1)


def make_voice(index: int, seed: int = 0) -> Voice:
    """Deterministic speaker ``index`` (even -> female, odd -> male) of corpus ``seed``."""
    index = int(index)
    seed = int(seed)
    if index < 0:
        raise ValueError(f"speaker index must be >= 0, got {index}")
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, 0x5EED])
    female = index % 2 == 0
    if female:
        f0 = float(np.exp(rng.uniform(np.log(160.0), np.log(260.0))))
        vtl = float(rng.uniform(1.0, 1.2))
        tilt = float(rng.uniform(0.3, 0.8))
        breath = float(rng.uniform(0.08, 0.3))
    else:
        f0 = float(np.exp(rng.uniform(np.log(85.0), np.log(155.0))))
        vtl = float(rng.uniform(0.86, 1.0))
        tilt = float(rng.uniform(0.15, 0.65))
        breath = float(rng.uniform(0.03, 0.2))
    offs = np.exp(rng.normal(0.0, [0.04, 0.05, 0.04, 0.04]))
    return Voice(
        speaker_id=f"spk{index:02d}",
        sex="female" if female else "male",
        f0_hz=round(f0, 3),
        vtl_scale=round(vtl, 4),
        breathiness=round(breath, 4),
        jitter=round(float(rng.uniform(0.003, 0.012)), 5),
        shimmer=round(float(rng.uniform(0.02, 0.08)), 4),
        tilt=round(tilt, 4),
        rate_sps=round(float(rng.uniform(3.6, 5.4)), 3),
        bw_scale=round(float(rng.uniform(0.75, 1.2)), 4),
        nasality=round(float(rng.uniform(0.0, 0.5)), 4),
        formant_offsets=tuple(round(float(v), 4) for v in offs),
        pitch_range_scale=round(float(rng.uniform(0.7, 1.3)), 4),
        level_db=round(float(rng.uniform(-3.0, 3.0)), 3),
        expressiveness=round(float(rng.uniform(0.7, 1.25)), 4),
        creak=round(float(rng.uniform(0.0, 0.5)) if rng.random() < 0.5 else 0.0, 4),
    )


# --------------------------------------------------------------------------------------------
# Emotions
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmotionStyle:
    """Prototype acoustic settings of one emotion (relative to the speaker's neutral voice)."""

    pitch_scale: float  # multiplies voice.f0_hz
    pitch_range_st: float  # intonation excursion in semitones
    tempo: float  # multiplies voice.rate_sps
    gain_db: float  # vocal effort
    tilt_delta: float  # + steeper / laxer, - flatter / tenser
    breathiness_delta: float = 0.0
    jitter_scale: float = 1.0
    creak: float = 0.0  # probability-like amount of phrase-final creak
    accent_shape: float = 0.0  # -1 falling (early peak) .. +1 rising (late peak)
    final_rise: float = 0.0  # probability of a rising boundary tone
    f1_scale: float = 1.0  # articulation: mouth opening
    f2_scale: float = 1.0  # articulation: lip spreading (smile) / rounding
    pause_scale: float = 1.0  # longer / more pauses when > 1
    articulation: float = 1.0  # vowel-space expansion (hyper-/hypo-articulation)


EMOTION_STYLES: dict[str, EmotionStyle] = {
    "neutral": EmotionStyle(
        pitch_scale=1.0, pitch_range_st=4.0, tempo=1.0, gain_db=0.0, tilt_delta=0.0,
    ),
    "angry": EmotionStyle(
        pitch_scale=1.2, pitch_range_st=7.0, tempo=1.12, gain_db=6.0, tilt_delta=-0.25,
        breathiness_delta=-0.04, jitter_scale=1.2, accent_shape=-0.3, final_rise=0.05,
        f1_scale=1.08, f2_scale=1.0, pause_scale=0.8, articulation=1.12,
    ),
    "sad": EmotionStyle(
        pitch_scale=0.9, pitch_range_st=2.2, tempo=0.8, gain_db=-5.0, tilt_delta=0.25,
        breathiness_delta=0.12, jitter_scale=1.4, creak=0.15, accent_shape=-0.2,
        final_rise=0.0, f1_scale=0.95, f2_scale=0.98, pause_scale=1.6, articulation=0.85,
    ),
    "happy": EmotionStyle(
        pitch_scale=1.15, pitch_range_st=9.0, tempo=1.06, gain_db=3.0, tilt_delta=-0.12,
        breathiness_delta=0.02, jitter_scale=0.9, accent_shape=0.8, final_rise=0.45,
        f1_scale=1.04, f2_scale=1.05, pause_scale=0.9, articulation=1.05,
    ),
    "disgust": EmotionStyle(
        pitch_scale=0.95, pitch_range_st=5.0, tempo=0.88, gain_db=0.0, tilt_delta=0.08,
        breathiness_delta=0.04, jitter_scale=1.8, creak=0.55, accent_shape=-0.9,
        final_rise=0.0, f1_scale=0.98, f2_scale=0.96, pause_scale=1.3, articulation=0.95,
    ),
}


# --------------------------------------------------------------------------------------------
# Phone inventory
# --------------------------------------------------------------------------------------------
# Formants (F1..F4, Hz) for vtl_scale == 1, roughly Peterson & Barney / Hillenbrand values
# halfway between adult male and female talkers.
_VOWELS = np.array(
    [
        [290, 2450, 3200, 3850],  # i
        [420, 2100, 2750, 3800],  # I
        [570, 1960, 2650, 3750],  # E
        [710, 1850, 2600, 3750],  # ae
        [790, 1200, 2650, 3750],  # a
        [620, 920, 2600, 3600],  # O
        [330, 950, 2400, 3600],  # u
        [475, 1100, 2400, 3600],  # U
        [690, 1280, 2550, 3700],  # V
        [540, 1600, 2650, 3800],  # schwa
    ],
    dtype=np.float64,
)
_VOWEL_CENTRE = np.array([540.0, 1600.0, 2650.0, 3750.0])
_VOWEL_BW = np.array([70.0, 95.0, 140.0, 220.0])
_F5 = 4500.0
_B5 = 300.0

# Sonorant consonants: formants and relative amplitude.
_SONORANTS = {
    "m": (np.array([270.0, 1100.0, 2300.0, 3400.0]), 0.30),
    "n": (np.array([270.0, 1600.0, 2600.0, 3500.0]), 0.30),
    "l": (np.array([360.0, 1150.0, 2800.0, 3600.0]), 0.45),
}
# Fricatives / bursts: (centre Hz at vtl 1, bandwidth Hz, level in dB re. the vowel level)
_FRICATIVES = {
    "s": (5600.0, 2200.0, -12.0),
    "sh": (3000.0, 1600.0, -10.0),
    "f": (4000.0, 5000.0, -22.0),
}
_STOPS = {"p": (1100.0, 1500.0, -10.0), "t": (4200.0, 2500.0, -6.0), "k": (2300.0, 1200.0, -7.0)}
_ONSETS = ("m", "n", "l", "s", "sh", "f", "h", "p", "t", "k")
_ONSET_P = np.array([0.12, 0.12, 0.12, 0.1, 0.06, 0.07, 0.07, 0.1, 0.14, 0.1])
_CODAS = ("m", "n", "l", "s", "t", "k")


def _resonator_sos(freq, bw, fs=SAMPLE_RATE):
    """Unity-DC-gain 2-pole resonators as sos rows; ``freq``/``bw`` broadcast arrays."""
    freq = np.minimum(np.asarray(freq, dtype=np.float64), 0.45 * fs)
    r = np.exp(-np.pi * np.asarray(bw, dtype=np.float64) / fs)
    c = -2.0 * r * np.cos(2.0 * np.pi * freq / fs)
    a2 = r * r
    b0 = 1.0 + c + a2
    shape = np.broadcast(c, a2).shape
    sos = np.zeros(shape + (6,))
    sos[..., 0] = b0
    sos[..., 3] = 1.0
    sos[..., 4] = c
    sos[..., 5] = a2
    return sos


def _bandpass_sos(freq, bw, fs=SAMPLE_RATE):
    """2-pole resonators normalised to unity gain at their centre frequency."""
    sos = _resonator_sos(freq, bw, fs)
    w = 2.0 * np.pi * np.minimum(np.asarray(freq, dtype=np.float64), 0.45 * fs) / fs
    z1 = np.exp(-1j * w)
    sos[..., 0] = np.abs(1.0 + sos[..., 4] * z1 + sos[..., 5] * z1 * z1)
    return sos


def _antiresonator_sos(freq, bw, fs=SAMPLE_RATE):
    """Unity-DC-gain 2-zero antiresonator sos row."""
    r = np.exp(-np.pi * bw / fs)
    c = -2.0 * r * np.cos(2.0 * np.pi * freq / fs)
    a2 = r * r
    g = 1.0 + c + a2
    return np.array([1.0 / g, c / g, a2 / g, 1.0, 0.0, 0.0])


def _smooth_noise(rng, n_samples, n_knots):
    """Smooth random curve (zero-mean, unit-ish sd) by interpolating random knots."""
    knots = rng.standard_normal(n_knots)
    xk = np.linspace(0.0, n_samples - 1, n_knots)
    return np.interp(np.arange(n_samples), xk, knots)


def _envelope(n, starts, ends, levels, ramp):
    """Piecewise-constant amplitude envelope with linear ramps of ``ramp`` samples."""
    env = np.zeros(n)
    for s, e, lv in zip(starts, ends, levels):
        if e <= s:
            continue
        r = int(min(ramp, (e - s) // 2))
        seg = np.full(e - s, lv)
        if r > 0:
            w = np.linspace(0.0, 1.0, r + 1, endpoint=False)[1:]
            seg[:r] *= w
            seg[-r:] *= w[::-1]
        env[s:e] = np.maximum(env[s:e], seg)
    return env


def _utterance_rng(voice: Voice, emo_idx: int, utterance: int, seed: int):
    ident = [ord(ch) for ch in voice.speaker_id]
    traits = [
        int(round(voice.f0_hz * 1000)) & 0xFFFFFFFF,
        int(round(voice.vtl_scale * 1e6)) & 0xFFFFFFFF,
        int(round(voice.rate_sps * 1e5)) & 0xFFFFFFFF,
        int(round(voice.tilt * 1e6)) & 0xFFFFFFFF,
    ]
    return np.random.default_rng(
        [int(seed) & 0xFFFFFFFF, int(utterance) & 0xFFFFFFFF, emo_idx, 0xA0D10] + ident + traits
    )


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------
def synthesize(voice: Voice, emotion: str, utterance: int, seed: int = 0) -> np.ndarray:
    """Synthesize one utterance; float32 mono at SAMPLE_RATE, 1.5-3.0 s, peak <= 0.99."""
    if emotion not in EMOTION_STYLES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    fs = SAMPLE_RATE
    style = EMOTION_STYLES[emotion]
    base = EMOTION_STYLES["neutral"]
    rng = _utterance_rng(voice, EMOTIONS.index(emotion), utterance, seed)

    # ---- per-utterance emotion realisation (intensity + independent jitter of every knob) ----
    k = voice.expressiveness * float(np.clip(rng.normal(0.9, 0.3), 0.3, 1.6))

    def lerp(attr):
        b = getattr(base, attr)
        return b + k * (getattr(style, attr) - b)

    pitch_scale = style.pitch_scale * float(np.exp(np.clip(rng.normal(0.0, 0.03), -0.06, 0.06)))
    prange = lerp("pitch_range_st") * voice.pitch_range_scale * np.exp(rng.normal(0, 0.2))
    prange = float(np.clip(prange, 0.8, 12.0))
    tempo = max(0.6, lerp("tempo") * float(np.exp(rng.normal(0.0, 0.07))))
    gain_db = lerp("gain_db") + voice.level_db + float(rng.normal(0.0, 2.0))
    tilt = float(np.clip(voice.tilt + lerp("tilt_delta") + rng.normal(0.0, 0.08), 0.0, 1.0))
    breath = voice.breathiness + lerp("breathiness_delta") + rng.normal(0.0, 0.03)
    breath = float(np.clip(breath, 0.0, 0.7))
    jitter = voice.jitter * max(0.3, lerp("jitter_scale")) * float(np.exp(rng.normal(0.0, 0.2)))
    shimmer = voice.shimmer * max(0.3, 0.5 + 0.5 * lerp("jitter_scale"))
    shimmer *= float(np.exp(rng.normal(0.0, 0.2)))
    creak_amt = float(np.clip(voice.creak * 0.6 + lerp("creak") + rng.normal(0.0, 0.1), 0.0, 1.0))
    accent_shape = float(np.clip(lerp("accent_shape") + rng.normal(0.0, 0.3), -1.0, 1.0))
    final_rise = float(np.clip(lerp("final_rise"), 0.0, 1.0))
    f1s = lerp("f1_scale") * float(np.exp(rng.normal(0.0, 0.02)))
    f2s = lerp("f2_scale") * float(np.exp(rng.normal(0.0, 0.015)))
    artic = max(0.5, lerp("articulation") * float(np.exp(rng.normal(0.0, 0.04))))
    pause_scale = max(0.3, lerp("pause_scale"))

    # ---- random "text" and segment timing ------------------------------------------------
    syl_dur = 1.0 / (voice.rate_sps * tempo)
    target_speech = rng.uniform(1.25, 2.35)
    n_syl = int(np.clip(round(target_speech / syl_dur), 4, 14))
    # split syllables into 2-4 words
    n_words = int(min(n_syl, rng.integers(2, 5)))
    cuts = np.sort(rng.choice(np.arange(1, n_syl), size=n_words - 1, replace=False))
    word_sizes = np.diff(np.concatenate([[0], cuts, [n_syl]])).astype(int)

    fmt_scale = voice.vtl_scale * np.asarray(voice.formant_offsets)
    # segments: (kind, dur_s, payload)
    segs = []
    accents = []  # segment indices of the stressed (pitch-accented) vowels
    for w, size in enumerate(word_sizes):
        stress = int(rng.integers(0, size))
        for s in range(size):
            d = syl_dur * float(np.exp(rng.normal(0.0, 0.12)))
            if s == stress:
                d *= 1.25
            else:
                d *= 0.85
            if w == len(word_sizes) - 1 and s == size - 1:
                d *= 1.3 + 0.2 * (pause_scale - 1.0)
            rem = d
            if rng.random() < 0.8:
                c = _ONSETS[int(rng.choice(len(_ONSETS), p=_ONSET_P))]
                if c in _STOPS:
                    clo, bur = 0.16 * d, min(0.02, 0.06 * d)
                    segs.append(("closure", clo, None))
                    segs.append(("burst", bur, c))
                    segs.append(("asp", min(0.035, 0.1 * d), None))
                    rem -= clo + bur + min(0.035, 0.1 * d)
                elif c in _FRICATIVES:
                    segs.append(("fric", 0.28 * d, c))
                    rem -= 0.28 * d
                elif c == "h":
                    segs.append(("asp", 0.18 * d, None))
                    rem -= 0.18 * d
                else:
                    segs.append(("son", 0.22 * d, c))
                    rem -= 0.22 * d
            coda = None
            if rng.random() < 0.25:
                coda = _CODAS[int(rng.integers(0, len(_CODAS)))]
                rem -= 0.18 * d
            v = int(rng.integers(0, len(_VOWELS)))
            amp = 1.15 if s == stress else 0.8
            segs.append(("vowel", max(0.04, rem), (v, amp)))
            if s == stress:
                accents.append(len(segs) - 1)
            if coda is not None:
                if coda in _STOPS:
                    segs.append(("closure", 0.1 * d, None))
                    segs.append(("burst", min(0.02, 0.08 * d), coda))
                elif coda in _FRICATIVES:
                    segs.append(("fric", 0.18 * d, coda))
                else:
                    segs.append(("son", 0.18 * d, coda))
        if w < len(word_sizes) - 1 and rng.random() < 0.35 * pause_scale:
            segs.append(("pause", rng.uniform(0.05, 0.18) * pause_scale, None))

    durs = np.array([sd[1] for sd in segs])
    lead = rng.uniform(0.08, 0.18)
    trail = rng.uniform(0.1, 0.22)
    total = durs.sum() + lead + trail
    lo, hi = _MIN_DUR + 0.03, _MAX_DUR - 0.03
    if total < lo or total > hi:
        target = float(np.clip(total, lo, hi))
        durs *= (target - lead - trail) / durs.sum()
    bounds = np.round(np.concatenate([[lead], lead + np.cumsum(durs)]) * fs).astype(int)
    n = int(round((bounds[-1] / fs + trail) * fs))
    n = int(np.clip(n, int(_MIN_DUR * fs) + 8, int(_MAX_DUR * fs) - 8))
    starts, ends = bounds[:-1], np.minimum(bounds[1:], n)

    # ---- voiced envelope and formant targets -----------------------------------------------
    v_st, v_en, v_lv = [], [], []
    f_t, f_val, f_bw = [], [], []
    asp_st, asp_en = [], []
    noise_items = []  # (start, end, centre, bw, level, decaying)
    bw_base = _VOWEL_BW * voice.bw_scale
    for (kind, _, payload), s0, e0 in zip(segs, starts, ends):
        if kind == "vowel":
            vi, amp = payload
            fv = _VOWEL_CENTRE + artic * (_VOWELS[vi] - _VOWEL_CENTRE)
            fv = fv * fmt_scale * np.array([f1s, f2s, 1.0, 1.0])
            v_st.append(s0)
            v_en.append(e0)
            v_lv.append(amp)
            f_t.append(0.5 * (s0 + e0))
            f_val.append(fv)
            f_bw.append(bw_base)
        elif kind == "son":
            fv, amp = _SONORANTS[payload]
            v_st.append(s0)
            v_en.append(e0)
            v_lv.append(amp)
            f_t.append(0.5 * (s0 + e0))
            f_val.append(fv * fmt_scale)
            f_bw.append(bw_base * 1.6)
        elif kind == "asp":
            asp_st.append(s0)
            asp_en.append(e0)
        elif kind == "fric":
            fc, bw, lv = _FRICATIVES[payload]
            noise_items.append((s0, e0, fc * voice.vtl_scale, bw, lv, False))
        elif kind == "burst":
            fc, bw, lv = _STOPS[payload]
            noise_items.append((s0, e0, fc * voice.vtl_scale, bw, lv, True))

    ramp = int(0.012 * fs)
    env_v = _envelope(n, v_st, v_en, v_lv, ramp)
    # phrase-final decay of vocal effort
    tt = np.arange(n) / n
    env_v *= 1.0 - 0.25 * tt
    voiced = env_v > 0.05
    if not voiced.any():  # pragma: no cover - cannot happen with >= 4 syllables
        voiced[:] = True

    # ---- F0 contour (on a 2 ms grid, then interpolated) -------------------------------------
    hop = 32
    xg = np.arange(0, n + hop, hop, dtype=np.float64)
    tg = xg / fs
    t_on, t_off = starts[0] / fs, ends[-1] / fs
    pos = np.clip((tg - t_on) / max(1e-3, t_off - t_on), 0.0, 1.0)
    st = prange * 0.35 * (0.5 - pos)  # declination
    for ai in accents:
        c = 0.5 * (starts[ai] + ends[ai]) / fs
        width = max(0.06, 0.5 * (ends[ai] - starts[ai]) / fs)
        centre = c + 0.6 * accent_shape * width
        amp_a = prange * rng.uniform(0.45, 1.0)
        st += amp_a * np.exp(-0.5 * ((tg - centre) / width) ** 2)
        if accent_shape < 0:  # falling accents undershoot after the peak
            z = np.clip(-(tg - centre - width) / (0.4 * width), -50.0, 50.0)
            st -= (-accent_shape) * 0.35 * amp_a / (1.0 + np.exp(z))
    last_v = v_en[-1] / fs
    tail = 1.0 / (1.0 + np.exp(np.clip(-(tg - (last_v - 0.18)) / 0.05, -50.0, 50.0)))
    if rng.random() < final_rise:
        st += prange * rng.uniform(0.4, 0.9) * tail
    else:
        st -= prange * rng.uniform(0.15, 0.4) * tail
    st += 0.35 * _smooth_noise(rng, len(tg), max(4, int(n / fs * 6)))
    # creak (vocal fry) region near the phrase end
    creak_g = None
    if creak_amt > 0.05 and rng.random() < min(1.0, 0.3 + creak_amt):
        c0 = last_v - rng.uniform(0.12, 0.3) * (0.5 + creak_amt)
        creak_g = np.clip((tg - c0) / 0.05, 0.0, 1.0) * creak_amt
        st -= 2.0 * creak_g  # fry lowers pitch
    voiced_g = voiced[np.minimum(xg.astype(np.int64), n - 1)]
    st -= np.median(st[voiced_g])
    f0_target = voice.f0_hz * pitch_scale
    xs = np.arange(n, dtype=np.float64)
    f0 = np.interp(xs, xg, f0_target * 2.0 ** (st / 12.0))

    # ---- glottal source (vectorised phase accumulator) --------------------------------------
    phase0 = np.cumsum(f0) / fs
    n_per = int(phase0[-1]) + 3
    per_noise = rng.standard_normal(n_per)
    amp_noise = rng.standard_normal(n_per + 8)
    k0 = phase0.astype(np.int64)
    if creak_g is None:
        creak_mask = None
        f0j = f0 / (1.0 + np.clip(jitter * per_noise, -0.3, 0.3))[k0]
    else:
        creak_mask = np.interp(xs, xg, creak_g)
        jit = jitter * (1.0 + 4.0 * creak_mask)
        f0j = f0 / (1.0 + np.clip(jit * per_noise[k0], -0.3, 0.3))
    phase = np.cumsum(f0j) / fs
    vidx = np.flatnonzero(env_v > 0.0)  # the glottis only works where voicing is on
    ph = phase[vidx]
    kk = ph.astype(np.int64)
    frac = (ph - kk).astype(np.float32)
    pulse_amp = np.clip(1.0 + shimmer * amp_noise, 0.2, None)[kk]
    oq = min(0.3 + 0.3 * tilt + 0.15 * breath, 0.9)  # open quotient
    if creak_mask is None:
        tn = oq * (0.2 + 0.2 * tilt)  # closing phase (shorter = flatter spectrum)
        tp = oq - tn
    else:
        cm = creak_mask[vidx]
        pulse_amp = pulse_amp * (1.0 - 0.6 * cm * (kk % 2))  # period-doubling creak
        oq = (oq * (1.0 - 0.4 * cm)).astype(np.float32)
        tn = oq * (0.2 + 0.2 * tilt)
        tp = oq - tn
    opening = frac < tp
    closing = 0.5 * np.pi * np.minimum((frac - tp) / tn, 1.0)
    g = np.cos(np.where(opening, np.pi * frac / tp, closing))
    g = np.where(opening, 0.5 - 0.5 * g, g)
    # partly compensate the f0-proportional strength of the radiated (differentiated) pulses
    flow = g * pulse_amp * np.sqrt(150.0 / f0j[vidx])
    env_vv = env_v[vidx]
    flow *= env_vv
    # noise levels are set relative to the strength of the flow derivative (the actual
    # excitation), so that breathiness means the same for low and high voices
    d_rms = float(np.sqrt(np.mean(np.diff(flow) ** 2))) if len(flow) > 1 else 1e-3
    noise = rng.standard_normal(2 * n, dtype=np.float32)
    aspn = noise[:n] - 0.5 * np.concatenate([[0.0], noise[: n - 1]])
    asp_gain = 0.5 * breath * d_rms
    src = np.zeros(n)
    src[vidx] = flow + aspn[vidx] * ((0.3 + g) * env_vv * asp_gain)
    # aspiration consonants ([h], post-stop aspiration) excite the tract too
    if asp_st:
        env_h = _envelope(n, asp_st, asp_en, [0.4 * d_rms] * len(asp_st), int(0.008 * fs))
        src += aspn * env_h
    a_tilt = 0.1 + 0.45 * tilt
    src = lfilter([1.0 - a_tilt], [1.0, -a_tilt], src)

    # ---- vocal tract: block-wise time-varying resonator cascade -----------------------------
    f_t = np.asarray(f_t)
    f_val = np.asarray(f_val)
    f_bw = np.asarray(f_bw)
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    bc = (np.arange(n_blocks) + 0.5) * _BLOCK
    fb = np.stack([np.interp(bc, f_t, f_val[:, i]) for i in range(4)], axis=1)
    bb = np.stack([np.interp(bc, f_t, f_bw[:, i]) for i in range(4)], axis=1)
    # keep formants ordered and apart
    for i in range(1, 4):
        fb[:, i] = np.maximum(fb[:, i], fb[:, i - 1] + 200.0)
    # F1..F4 move: one 8th-order all-pole section per block (coefficients vectorised over
    # blocks, state carried across blocks); F5 and the nasal pole/zero pair are fixed.
    res = _resonator_sos(fb, bb)  # (n_blocks, 4, 6)
    a_poly = np.ones((n_blocks, 1))
    for i in range(4):
        q = res[:, i, 3:]
        m = a_poly.shape[1]
        nxt = np.zeros((n_blocks, m + 2))
        for j in range(3):
            nxt[:, j : j + m] += a_poly * q[:, j : j + 1]
        a_poly = nxt
    b_gain = np.prod(res[:, :, 0], axis=1)
    zi = np.zeros(8)
    out = np.empty(n)
    b_one = np.ones(1)
    for b in range(n_blocks):
        lo_i = b * _BLOCK
        hi_i = min(n, lo_i + _BLOCK)
        out[lo_i:hi_i], zi = lfilter(b_one, a_poly[b], src[lo_i:hi_i] * b_gain[b], zi=zi)
    fixed = np.empty((2, 6))
    fixed[0] = _resonator_sos(_F5 * voice.vtl_scale, _B5 * voice.bw_scale)
    nasal_pole = _resonator_sos(260.0 + 80.0 * voice.nasality, 110.0)
    fixed[1] = _antiresonator_sos(260.0 + 400.0 * voice.nasality, 120.0)
    fixed[1, :3] *= nasal_pole[0]
    fixed[1, 3:] = nasal_pole[3:]
    out = sosfilt(fixed, out)

    # ---- lip radiation ------------------------------------------------------------------------
    y = lfilter([1.0, -0.97], [1.0], out)
    strong = env_v > 0.5
    ref = float(np.sqrt(np.mean(y[strong] ** 2))) if strong.any() else float(np.sqrt(np.mean(y**2)))

    # ---- frication / bursts (levels relative to the radiated vowel level) ---------------------
    fric_noise = noise[n:]
    for s0, e0, fc, bw, lv_db, decaying in noise_items:
        m = e0 - s0
        if m < 8:
            continue
        sos = _bandpass_sos(np.array([fc, fc * 1.35]), np.array([bw, bw * 1.5]))
        seg = sosfilt(sos, fric_noise[s0:e0])
        seg *= ref * 10.0 ** (lv_db / 20.0) / (float(np.sqrt(np.mean(seg**2))) + 1e-12)
        if decaying:
            shape = np.exp(-np.arange(m) / (0.3 * m))
        else:
            r = max(1, int(0.3 * m))
            shape = np.ones(m)
            shape[:r] = np.linspace(0.0, 1.0, r)
            shape[-r:] = np.linspace(1.0, 0.0, r)
        y[s0:e0] += seg * shape

    # ---- vocal effort, channel ----------------------------------------------------------------
    y *= 0.7 * 10.0 ** (gain_db / 20.0)
    y += noise[::-1][:n] * 10.0 ** (rng.uniform(-68.0, -58.0) / 20.0)
    y -= y.mean()
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)
