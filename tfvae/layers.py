"""The two paper-specific layers: layered dropout (eq. 2-3) and gradient reversal (ref. [22])."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def _next_seed(seed_generator: keras.random.SeedGenerator):
    """The next seed of ``seed_generator``, drawn exactly as ``keras.random`` draws it (int32 for the
    stateless ops)."""
    seed = seed_generator.next()
    if seed.dtype == tf.int32:
        return seed
    return tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)


def random_normal(shape, seed_generator: keras.random.SeedGenerator, dtype="float32"):
    """``keras.random.normal(shape, seed=seed_generator, dtype=dtype)``: the same numbers, faster under XLA.

    Keras draws with the stateless ops' ``auto_select`` algorithm, which is Philox on CPUs and GPUs,
    with and without XLA; naming ``philox`` draws the same stream, but ``auto_select`` costs several
    milliseconds per call inside an XLA-compiled train step on a CPU (``bench/train_throughput.py``),
    more than the rest of the forward pass.
    """
    return tf.random.stateless_normal(shape, seed=_next_seed(seed_generator), mean=0.0, stddev=1.0, dtype=dtype,
                                      alg="philox")


def random_uniform(shape, seed_generator: keras.random.SeedGenerator, dtype="float32"):
    """``keras.random.uniform(shape, seed=seed_generator, dtype=dtype)``, Philox named (see :func:`random_normal`)."""
    return tf.random.stateless_uniform(shape, seed=_next_seed(seed_generator), minval=tf.cast(0.0, dtype),
                                       maxval=tf.cast(1.0, dtype), dtype=dtype, alg="philox")


@keras.saving.register_keras_serializable(package="tfvae")
class LayeredDropout(keras.layers.Layer):
    """Dropout with a different, fixed keep rate per node (paper eq. 2-3).

    Training: ``m_i ~ Bernoulli(p_i)`` independently for every example and node, output
    ``m * x`` (no rescaling). Inference: output ``p * x``, which is the paper's
    ``W_test = W * p^T`` rule applied to the input of the following layer.

    Args:
        keep_rates: the vector ``p`` (one rate in [0, 1] per input node), e.g. from
            :func:`tfvae.schedules.keep_rates`.
        seed: seed of the mask generator.
    """

    def __init__(self, keep_rates: Sequence[float], seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        p = np.asarray(keep_rates, dtype=np.float64).reshape(-1)
        if p.size == 0 or not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
            raise ValueError(f"keep_rates must be a non-empty vector of values in [0, 1], got {keep_rates!r}")
        self.keep_rates = [float(v) for v in p]
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != len(self.keep_rates):
            raise ValueError(
                f"LayeredDropout has {len(self.keep_rates)} keep rates but its input has "
                f"{input_shape[-1]} nodes")

    def call(self, inputs, training=False):
        p = ops.convert_to_tensor(self.keep_rates, dtype=inputs.dtype)
        if training:
            u = random_uniform(ops.shape(inputs), self.seed_generator, dtype="float32")
            return inputs * ops.cast(u < ops.cast(p, "float32"), inputs.dtype)
        return inputs * p

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "keep_rates": self.keep_rates, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfvae")
class GradientReversal(keras.layers.Layer):
    """Identity forward; multiplies the incoming gradient by ``-lambda`` backward.

    The gradient reversal layer of Ganin & Lempitsky (paper ref. [22]) used in front of
    the adversarial discriminators. ``lambda`` is a non-trainable variable so a schedule
    (:class:`tfvae.schedules.LambdaSchedule`) can move it during training; the model's
    train step assigns it.
    """

    def __init__(self, lambda_: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if lambda_ < 0:
            raise ValueError(f"GradientReversal lambda must be >= 0, got {lambda_}")
        self.initial_lambda = float(lambda_)

    def build(self, input_shape):
        self.lambda_ = self.add_weight(
            name="lambda", shape=(), initializer=keras.initializers.Constant(self.initial_lambda),
            trainable=False, aggregation="only_first_replica")

    def call(self, inputs):
        lam = ops.cast(ops.convert_to_tensor(self.lambda_), inputs.dtype)
        return _reverse_gradient(inputs, lam)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lambda_": self.initial_lambda}


@tf.custom_gradient
def _reverse_gradient(x, lam):
    def grad(dy):
        return -lam * dy, tf.zeros_like(lam)

    return tf.identity(x), grad


@keras.saving.register_keras_serializable(package="tfvae")
class CosineMarginClassifier(keras.layers.Layer):
    """Cosine classifier with additive angular margin (AAM-softmax / ArcFace, Deng et al. 2019).

    ``call(embedding, labels)`` returns ``s * cos(theta_j)`` for every class ``j`` and
    ``s * cos(theta_y + m)`` for the labelled class ``y`` (labels < 0 get no margin), where
    ``theta_j`` is the angle between the L2-normalised embedding and class centre ``j``. Without
    labels (inference) it returns the plain scaled cosines. Speaker-verification embeddings trained
    this way are compared by cosine, the scoring the attackers and the SV evaluation use.
    """

    def __init__(self, units: int, margin: float = 0.2, scale: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        if units < 2 or margin < 0 or scale <= 0:
            raise ValueError(f"CosineMarginClassifier needs units >= 2, margin >= 0, scale > 0; "
                             f"got {units}, {margin}, {scale}")
        self.units, self.margin, self.scale = int(units), float(margin), float(scale)

    def build(self, input_shape):
        self.centres = self.add_weight(name="centres", shape=(input_shape[-1], self.units),
                                       initializer="glorot_uniform")

    def call(self, inputs, labels=None):
        x = ops.normalize(ops.cast(inputs, "float32"), axis=-1)
        w = ops.normalize(ops.cast(self.centres, "float32"), axis=0)
        cos = ops.clip(ops.matmul(x, w), -1.0 + 1e-6, 1.0 - 1e-6)
        if labels is None or self.margin == 0:
            return self.scale * cos
        labels = ops.cast(labels, "int32")
        target = ops.one_hot(ops.maximum(labels, 0), self.units) * ops.cast(
            ops.expand_dims(labels >= 0, -1), "float32")
        sin = ops.sqrt(1.0 - ops.square(cos))
        cos_m = cos * float(np.cos(self.margin)) - sin * float(np.sin(self.margin))
        return self.scale * (target * cos_m + (1.0 - target) * cos)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "margin": self.margin, "scale": self.scale}


def dense_stack(units: Sequence[int], l2: float, name: str, out: int | None = None,
                dropout: float = 0.0, seed: int | None = None) -> keras.Sequential:
    """ReLU ``Dense`` layers of ``units`` (each followed by ``Dropout(dropout)`` in training when
    ``dropout`` > 0), then a linear ``Dense(out)``; L2 ``l2`` on kernels and biases: the encoder,
    decoder, classifiers and discriminators of :class:`tfvae.model.LRVAE`."""
    reg = keras.regularizers.L2(l2) if l2 else None
    layers = []
    for i, u in enumerate(units):
        layers.append(keras.layers.Dense(u, activation="relu", kernel_regularizer=reg, bias_regularizer=reg,
                                         name=f"{name}_dense{i}"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, seed=None if seed is None else seed + i,
                                               name=f"{name}_dropout{i}"))
    if out is not None:
        layers.append(keras.layers.Dense(out, kernel_regularizer=reg, bias_regularizer=reg, name=f"{name}_out"))
    return keras.Sequential(layers, name=name)
