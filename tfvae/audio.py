"""Waveforms for tfvae's audio configs (``audio16k``): read, check, mix down, resample, int16.

TensorFlow-free, like :mod:`tfvae.features`, so that :func:`tfvae.features.parallel_map` /
:func:`tfvae.features.parallel_imap` workers stay light. The TFDS builders store waveforms as
int16 (:func:`to_int16`); :func:`from_int16` maps them back to float32 in [-1, 1).

A file that yields no usable waveform raises :class:`tfvae.features.FeatureError` stating why
(missing or unreadable file, no samples, NaN/infinite samples, silence), which the builders
turn into bad items exactly as for openSMILE features.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from tfvae.features import SILENCE_PEAK, FeatureError, read_audio

DEFAULT_RATE = 16000
#: int16 full scale: ``to_int16(x) = round(x * 32768)`` clipped to [-32768, 32767].
INT16_SCALE = 32768.0


def check_signal(x: np.ndarray) -> None:
    """Raise :class:`FeatureError` if ``x`` is empty, not finite, or silent (peak < SILENCE_PEAK)."""
    if x.size == 0:
        raise FeatureError("empty signal (0 samples)")
    if not np.all(np.isfinite(x)):
        raise FeatureError("signal contains NaN or infinite samples")
    peak = float(np.max(np.abs(x)))
    if peak < SILENCE_PEAK:
        raise FeatureError(f"silent signal (peak amplitude below {SILENCE_PEAK:g})")


def mixdown(x: np.ndarray) -> np.ndarray:
    """``(frames,)`` or ``(frames, channels)`` (as soundfile returns it) -> mono float32 ``(frames,)``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float64).astype(np.float32) if x.shape[1] > 1 else x[:, 0]
    elif x.ndim != 1:
        raise FeatureError(f"audio has shape {x.shape}; expected (frames,) or (frames, channels)")
    return x


def resample(x: np.ndarray, rate: int, target: int = DEFAULT_RATE) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) from ``rate`` to ``target`` Hz.

    The result has ``ceil(len(x) * target / rate)`` samples (0.5 s at 48 kHz -> 8000 at 16 kHz).
    """
    rate, target = int(rate), int(target)
    if rate <= 0 or target <= 0:
        raise FeatureError(f"sample rates must be positive, got {rate} -> {target}")
    if rate == target:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(np.asarray(x, dtype=np.float32), target // g, rate // g).astype(np.float32)


def load_audio(path: str, rate: int = DEFAULT_RATE) -> np.ndarray:
    """The mono float32 waveform of an audio file at ``rate`` Hz, or :class:`FeatureError`.

    Reads with soundfile (:func:`tfvae.features.read_audio`: WAV, FLAC, ...), checks the
    samples (empty, NaN/inf, silent), mixes channels down by their mean, and resamples with
    ``scipy.signal.resample_poly`` when the file's rate differs.
    """
    x, file_rate = read_audio(str(path))
    x = mixdown(x)
    check_signal(x)
    return resample(x, file_rate, rate)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float waveform in [-1, 1] -> int16 (``round(x * 32768)``, clipped to the int16 range)."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.rint(x * INT16_SCALE), -32768, 32767).astype(np.int16)


def from_int16(x: np.ndarray) -> np.ndarray:
    """int16 waveform -> float32 in [-1, 1) (``x / 32768``)."""
    return (np.asarray(x, dtype=np.float32) / np.float32(INT16_SCALE)).astype(np.float32)


# ---------------------------------------------------------------------------------- workers
def check_audio_file(task: tuple[str, int]) -> dict:
    """``(path, rate)`` -> ``{"duration": seconds, "samples": n}`` after loading and checking.

    The builders' first pass (over :func:`tfvae.features.parallel_map`): it finds the bad files
    before anything is written, and returns no waveform, so memory stays small.
    """
    path, rate = task
    x = load_audio(path, rate)
    return {"duration": np.float32(len(x) / rate), "samples": int(len(x))}


def load_audio_file(task: tuple[str, int]) -> dict:
    """``(path, rate)`` -> ``{"audio": int16[n], "duration": float32 seconds}`` (one example's fields).

    A top-level, TensorFlow-free function for :func:`tfvae.features.parallel_imap` workers and
    the Beam path.
    """
    path, rate = task
    x = load_audio(path, rate)
    return {"audio": to_int16(x), "duration": np.float32(len(x) / rate)}
