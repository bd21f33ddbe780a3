"""Batched embedding extraction with an exported speaker encoder (``--feature_set <arch>@<encoder dir>``).

Utterances are sorted by length and zero-padded per batch (little padding, few traced shapes); an
utterance the encoder cannot take (shorter than its minimum, silent, non-finite) is reported with
the reason instead of an embedding, and nothing else is lost.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfvae.features import SILENCE_PEAK
from tfvae.speaker.export import encoder_fingerprint, load_speaker_encoder


def padded_batches(audio: Sequence[np.ndarray], batch_size: int):
    """``(waveform float32 [B, T], lengths int32 [B], indices)`` over ``audio``, shortest first."""
    order = np.argsort([len(a) for a in audio], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        lengths = np.array([len(audio[i]) for i in idx], np.int32)
        wave = np.zeros((len(idx), int(lengths.max())), np.float32)
        for r, i in enumerate(idx):
            wave[r, :lengths[r]] = audio[i]
        yield wave, lengths, idx


def problem(x: np.ndarray, min_samples: int, rate: int = 16000) -> str | None:
    """Why the encoder cannot embed ``x`` (None when it can)."""
    if x.ndim != 1:
        return f"expected mono audio, got shape {x.shape}"
    if len(x) < min_samples:
        return (f"audio shorter than the encoder's minimum ({len(x) / rate:.2f} s < {min_samples / rate:.2f} s)")
    if not np.all(np.isfinite(x)):
        return "audio contains NaN or infinite samples"
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        return f"silent audio (peak amplitude below {SILENCE_PEAK:g})"
    return None


class Extractor:
    """An exported speaker encoder as a feature extractor: ``extractor(list of waveforms)``."""

    def __init__(self, path: str, batch_size: int = 32):
        self.path = str(path)
        self.loaded, self.meta = load_speaker_encoder(path)
        self.fn = self.loaded.signatures["serving_default"]
        self.dim = int(self.meta["embedding_dim"])
        self.min_samples = int(self.meta["min_samples"])
        self.batch_size = int(batch_size)

    @property
    def fingerprint(self) -> str:
        return encoder_fingerprint(self.meta)

    def description(self) -> dict:
        """What a dataset records about the encoder that produced its features."""
        return {"path": self.path, "fingerprint": self.fingerprint, "weights_sha256": self.meta.get("weights_sha256"),
                "arch": self.meta.get("arch"), "embedding_dim": self.dim, "config": self.meta.get("config"),
                "training": {k: self.meta.get("training", {}).get(k) for k in ("dataset", "preset", "head", "test")}}

    def __call__(self, audio: Sequence[np.ndarray], progress=None) -> tuple[np.ndarray, dict[int, str]]:
        """Embeddings ``[n, E]`` (NaN rows for failures) and ``{index: reason}`` of the failures."""
        import tensorflow as tf

        out = np.full((len(audio), self.dim), np.nan, np.float32)
        errors = {i: r for i, a in enumerate(audio) if (r := problem(np.asarray(a), self.min_samples))}
        ok = [i for i in range(len(audio)) if i not in errors]
        for wave, lengths, idx in padded_batches([np.asarray(audio[i], np.float32) for i in ok], self.batch_size):
            emb = self.fn(waveform=tf.constant(wave), lengths=tf.constant(lengths))["embedding"].numpy()
            out[np.asarray(ok)[idx]] = emb
            if progress is not None:
                progress.update(len(idx))
        return out, errors
