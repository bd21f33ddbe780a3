"""Log-mel filterbank front end computed with TensorFlow ops, so it runs inside every graph.

The same layer turns waveforms into frames in training, in an exported SavedModel and in TF
Serving. Waveforms come padded with their lengths in samples: frames that reach past a
waveform's end are padding, masked out of the per-utterance mean normalisation (cepstral mean
normalisation, as x-vector recipes apply it) and set to zero.
"""

from __future__ import annotations

import keras
import tensorflow as tf

SAMPLE_RATE = 16000


@keras.saving.register_keras_serializable(package="tfvae")
class LogMelFrontend(keras.layers.Layer):
    """``(waveform float[B, T], lengths int[B]) -> (log-mel float[B, F, n_mels], frames int[B])``.

    Args:
        n_mels: mel bands. ``frame_ms`` / ``hop_ms``: analysis window and shift (25 / 10 ms).
        fmin / fmax: mel filterbank range in Hz. ``mean_norm``: subtract each utterance's mean over
        its valid frames. ``n_fft``: FFT size (the next power of two of the window by default).
    """

    def __init__(self, n_mels: int = 40, sample_rate: int = SAMPLE_RATE, frame_ms: float = 25.0,
                 hop_ms: float = 10.0, fmin: float = 20.0, fmax: float | None = None, n_fft: int | None = None,
                 mean_norm: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")  # features stay float32 under mixed precision
        super().__init__(**kwargs)
        self.n_mels, self.sample_rate = int(n_mels), int(sample_rate)
        self.frame_ms, self.hop_ms = float(frame_ms), float(hop_ms)
        self.frame_length = int(round(self.sample_rate * self.frame_ms / 1000))
        self.frame_step = int(round(self.sample_rate * self.hop_ms / 1000))
        self.n_fft = int(n_fft or 1 << (self.frame_length - 1).bit_length())
        self.fmin = float(fmin)
        self.fmax = float(fmax if fmax is not None else self.sample_rate / 2)
        self.mean_norm = bool(mean_norm)
        if self.n_mels < 1 or self.frame_step < 1 or self.n_fft < self.frame_length or not 0 <= self.fmin < self.fmax:
            raise ValueError(f"LogMelFrontend: invalid settings n_mels={n_mels}, frame_ms={frame_ms}, "
                             f"hop_ms={hop_ms}, n_fft={n_fft}, fmin={fmin}, fmax={fmax}")
        self._mel = tf.signal.linear_to_mel_weight_matrix(
            self.n_mels, self.n_fft // 2 + 1, self.sample_rate, self.fmin, self.fmax)

    def frames_of(self, lengths):
        """Number of whole analysis frames in ``lengths`` samples (0 when shorter than a window)."""
        lengths = tf.cast(lengths, tf.int32)
        return tf.maximum(0, (lengths - self.frame_length) // self.frame_step + 1)

    def samples_for(self, frames: int) -> int:
        """Samples needed for ``frames`` frames."""
        return self.frame_length + (int(frames) - 1) * self.frame_step

    def call(self, waveform, lengths):
        x = tf.cast(waveform, tf.float32)
        stft = tf.signal.stft(x, self.frame_length, self.frame_step, fft_length=self.n_fft,
                              window_fn=tf.signal.hamming_window, pad_end=False)
        power = tf.math.square(tf.abs(stft))
        feats = tf.math.log(tf.tensordot(power, self._mel, 1) + 1e-6)  # [B, F, n_mels]
        frames = self.frames_of(lengths)
        mask = tf.sequence_mask(frames, tf.shape(feats)[1], dtype=tf.float32)[..., None]
        if self.mean_norm:
            count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
            feats = feats - tf.reduce_sum(feats * mask, axis=1, keepdims=True) / count
        return feats * mask, frames

    def compute_output_shape(self, waveform_shape, lengths_shape=None):
        return (waveform_shape[0], None, self.n_mels), (waveform_shape[0],)

    def get_config(self):
        return {**super().get_config(), "n_mels": self.n_mels, "sample_rate": self.sample_rate,
                "frame_ms": self.frame_ms, "hop_ms": self.hop_ms, "fmin": self.fmin, "fmax": self.fmax,
                "n_fft": self.n_fft, "mean_norm": self.mean_norm}
