"""Utterance-level pooling of frame sequences with a validity mask (padded frames never count).

- :class:`StatisticsPooling`: mean and standard deviation over frames (x-vector, Snyder et al. 2018).
- :class:`VLADPooling`: NetVLAD (Arandjelovic et al. 2016) with optional ghost clusters
  (GhostVLAD, Zhong et al. 2018), as Xie et al. 2019 aggregate a thin ResNet-34 for speakers.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _weights(mask, dtype):
    """``mask [B, T]`` -> ``[B, T, 1]`` in ``dtype`` and the valid-frame count ``[B, 1]`` (at least 1)."""
    m = tf.cast(mask, dtype)[..., None]
    return m, tf.maximum(tf.reduce_sum(m, axis=1), tf.cast(1.0, dtype))


@keras.saving.register_keras_serializable(package="tfvae")
class StatisticsPooling(keras.layers.Layer):
    """``(frames [B, T, D], mask [B, T]) -> [B, 2D]``: per-utterance mean and standard deviation."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, frames, mask):
        x = tf.cast(frames, tf.float32)
        m, n = _weights(mask, tf.float32)
        mean = tf.reduce_sum(x * m, axis=1) / n
        var = tf.reduce_sum(tf.square(x - mean[:, None]) * m, axis=1) / n
        return tf.concat([mean, tf.sqrt(var + self.epsilon)], axis=-1)

    def compute_output_shape(self, frames_shape, mask_shape=None):
        return (frames_shape[0], 2 * frames_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfvae")
class VLADPooling(keras.layers.Layer):
    """``(frames [B, T, D], assignment logits [B, T, K + G], mask [B, T]) -> [B, K * D]``.

    Soft-assigns every valid frame to ``clusters + ghost_clusters`` learned centres, sums the
    residuals to each centre, drops the ghost clusters (they absorb uninformative frames),
    L2-normalises each cluster's residual and concatenates them.
    """

    def __init__(self, clusters: int = 8, ghost_clusters: int = 0, **kwargs):
        super().__init__(**kwargs)
        if clusters < 1 or ghost_clusters < 0:
            raise ValueError(f"VLADPooling needs clusters >= 1 and ghost_clusters >= 0, got {clusters}, {ghost_clusters}")
        self.clusters, self.ghost_clusters = int(clusters), int(ghost_clusters)

    def build(self, frames_shape, logits_shape=None, mask_shape=None):
        self.centres = self.add_weight(name="centres", shape=(self.clusters + self.ghost_clusters, frames_shape[-1]),
                                       initializer="orthogonal")

    def call(self, frames, logits, mask):
        x = tf.cast(frames, tf.float32)
        m, _ = _weights(mask, tf.float32)
        a = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1) * m  # [B, T, K+G], padded frames weigh 0
        # sum_t a_tk (x_t - c_k) = (A^T X)_k - (sum_t a_tk) c_k
        res = tf.einsum("btk,btd->bkd", a, x) - tf.reduce_sum(a, axis=1)[..., None] * tf.cast(self.centres, tf.float32)
        res = tf.math.l2_normalize(res[:, :self.clusters], axis=-1)
        return tf.reshape(res, [-1, self.clusters * x.shape[-1]])

    def compute_output_shape(self, frames_shape, logits_shape=None, mask_shape=None):
        return (frames_shape[0], self.clusters * frames_shape[-1])

    def get_config(self):
        return {**super().get_config(), "clusters": self.clusters, "ghost_clusters": self.ghost_clusters}
