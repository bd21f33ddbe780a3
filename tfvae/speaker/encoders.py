"""Speaker encoders in Keras 3: waveform (+ length) -> utterance embedding.

- **x-vector** (Snyder et al. 2018): TDNN layers (dilated 1-D convolutions over log-mel frames,
  each followed by ReLU and batch normalisation over the valid frames), statistics pooling, and an
  affine embedding layer (the x-vector is its output, before the nonlinearity).
- **thin ResNet-34 + NetVLAD/GhostVLAD** (Xie et al. 2019): a 2-D ResNet with bottleneck blocks
  over (time, mel) maps, a convolution that collapses the remaining frequency bins into a
  ``bottleneck_dim`` frame descriptor and into cluster-assignment logits, VLAD pooling over valid
  frames, and a ReLU embedding layer.

Every layer sees which frames are padding: they are zeroed after each layer, excluded from batch
statistics and from pooling, so an utterance gets the same embedding alone or padded in a batch
(up to the convolutions' receptive field at its end).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfvae.speaker.frontend import LogMelFrontend
from tfvae.speaker.pooling import StatisticsPooling, VLADPooling
from tfvae.speaker.presets import EncoderConfig


def _ceil_half(n):
    return (n + 1) // 2


@keras.saving.register_keras_serializable(package="tfvae")
class BottleneckBlock(keras.layers.Layer):
    """ResNet bottleneck: 1x1 reduce, 3x3, 1x1 expand (each with BN), projected shortcut when the shape
    changes; ``strides`` downsamples time and frequency."""

    def __init__(self, filters, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = tuple(int(f) for f in filters), int(strides)
        f1, f2, f3 = self.filters
        conv = dict(use_bias=False, kernel_initializer="he_normal")
        self.c1 = keras.layers.Conv2D(f1, 1, strides=self.strides, padding="same", **conv)
        self.c2 = keras.layers.Conv2D(f2, 3, padding="same", **conv)
        self.c3 = keras.layers.Conv2D(f3, 1, **conv)
        self.b1, self.b2, self.b3 = (keras.layers.BatchNormalization() for _ in range(3))
        self.proj = self.bproj = None

    def build(self, input_shape):
        if input_shape[-1] != self.filters[2] or self.strides != 1:
            self.proj = keras.layers.Conv2D(self.filters[2], 1, strides=self.strides, padding="same",
                                            use_bias=False, kernel_initializer="he_normal")
            self.bproj = keras.layers.BatchNormalization()

    def call(self, x, mask, training=False):
        y = tf.nn.relu(self.b1(self.c1(x), training=training, mask=mask))
        y = tf.nn.relu(self.b2(self.c2(y), training=training, mask=mask))
        y = self.b3(self.c3(y), training=training, mask=mask)
        short = self.bproj(self.proj(x), training=training, mask=mask) if self.proj is not None else x
        return tf.nn.relu(y + short) * tf.cast(mask, y.dtype)[..., None]

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters), "strides": self.strides}


@keras.saving.register_keras_serializable(package="tfvae")
class SpeakerEncoder(keras.Model):
    """``{"waveform": float[B, T] at 16 kHz, "lengths": int[B] samples} -> embedding float[B, E]``.

    ``config``: an :class:`~tfvae.speaker.presets.EncoderConfig` (or its dict).
    """

    def __init__(self, config: EncoderConfig | dict, **kwargs):
        kwargs.setdefault("name", "speaker_encoder")
        super().__init__(**kwargs)
        self.config = config if isinstance(config, EncoderConfig) else EncoderConfig.from_dict(config)
        c = self.config
        self.frontend = LogMelFrontend(n_mels=c.n_mels, name="frontend")
        if c.arch == "xvector":
            self.tdnn = [keras.layers.Conv1D(u, k, dilation_rate=d, padding="same", name=f"frame{i + 1}")
                         for i, (u, k, d) in enumerate(c.tdnn)]
            self.tdnn_bn = [keras.layers.BatchNormalization(name=f"frame{i + 1}_bn") for i in range(len(c.tdnn))]
            self.pool = StatisticsPooling(name="stats_pool")
            self.embed = keras.layers.Dense(c.embedding_dim, name="segment6")
        else:
            self.stem = keras.layers.Conv2D(c.stem_channels, 7, padding="same", use_bias=False,
                                            kernel_initializer="he_normal", name="stem")
            self.stem_bn = keras.layers.BatchNormalization(name="stem_bn")
            self.blocks = []
            for s, (filters, n) in enumerate(zip(c.stages, c.blocks)):
                for b in range(n):
                    stride = 2 if (b == 0 and s > 0) else 1
                    self.blocks.append(BottleneckBlock(filters, strides=stride, name=f"stage{s + 2}_{b}"))
            freq = -(-c.n_mels // 2)  # stem max-pool
            for s in range(1, len(c.stages)):
                freq = -(-freq // 2)
            self._freq_after_trunk = freq
            self._freq_pool = max(1, min(3, freq))
            freq = (freq - self._freq_pool) // 2 + 1 if freq >= 3 else freq
            self.fc = keras.layers.Conv2D(c.bottleneck_dim, (1, freq), activation="relu", name="x_fc")
            self.assign = keras.layers.Conv2D(c.clusters + c.ghost_clusters, (1, freq), name="vlad_assignment")
            self.pool = VLADPooling(c.clusters, c.ghost_clusters, name="vlad_pool")
            self.embed = keras.layers.Dense(c.embedding_dim, activation="relu", name="fc6")

    @property
    def min_samples(self) -> int:
        return int(round(self.config.min_seconds * self.frontend.sample_rate))

    def call(self, inputs, training=False):
        feats, frames = self.frontend(inputs["waveform"], inputs["lengths"])
        mask = tf.sequence_mask(frames, tf.shape(feats)[1])
        if self.config.arch == "xvector":
            x = feats
            m = tf.cast(mask, x.dtype)[..., None]
            for conv, bn in zip(self.tdnn, self.tdnn_bn):
                x = bn(tf.nn.relu(conv(x)), training=training, mask=mask)
                x = x * tf.cast(m, x.dtype)
            return self.embed(self.pool(x, mask))
        x = feats[..., None]  # [B, T, F, 1]
        x = tf.nn.relu(self.stem_bn(self.stem(x), training=training, mask=self._grid(mask, x)))
        x = tf.nn.max_pool2d(x, 2, 2, "SAME")
        frames = _ceil_half(frames)
        for block in self.blocks:
            if block.strides > 1:
                frames = _ceil_half(frames)
            mask = tf.sequence_mask(frames, _ceil_half(tf.shape(x)[1]) if block.strides > 1 else tf.shape(x)[1])
            x = block(x, self._grid(mask, x, block.strides), training=training)
        if self._freq_after_trunk >= 3:
            x = tf.nn.max_pool2d(x, (1, self._freq_pool), (1, 2), "VALID")
        mask = tf.sequence_mask(frames, tf.shape(x)[1])
        desc, logits = self.fc(x)[:, :, 0], self.assign(x)[:, :, 0]  # [B, T', D], [B, T', K+G]
        return self.embed(self.pool(desc, logits, mask))

    @staticmethod
    def _grid(mask, x, strides: int = 1):
        """Time mask [B, T] broadcast over the frequency axis of ``x`` (after ``strides``)."""
        freq = tf.shape(x)[2] if strides == 1 else _ceil_half(tf.shape(x)[2])
        return tf.tile(mask[:, :, None], [1, 1, freq])

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_encoder(config: EncoderConfig) -> SpeakerEncoder:
    """A built :class:`SpeakerEncoder` (weights created by a call on one second of silence)."""
    enc = SpeakerEncoder(config)
    enc({"waveform": tf.zeros([1, 16000]), "lengths": tf.constant([16000])})
    return enc
