"""Adam with TensorFlow's fused kernel: the paper's optimizer (section 3.1), one pass per variable.

Keras 3's ``Adam.update_step`` updates each variable with about ten separate element-wise ops, each
a full pass over the variable; at batch 128 that memory-bound update takes about a third of an
LR-VAE train step on a CPU. :class:`FusedAdam` computes the same update (``m = b1 m + (1-b1) g``,
``v = b2 v + (1-b2) g^2``, ``w -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)``) with
``ResourceApplyAdam``, TensorFlow's fused kernel, in one pass. Under a ``tf.distribute`` strategy
with several replicas, and for AMSGrad, it falls back to Keras' own update.

``lr_multipliers`` (``{path substring: factor}``) scales the learning rate of the variables whose
path contains the substring, e.g. ``{"discriminator": 5.0}``: the adversarial discriminators then
learn faster than the encoder they fight (Adam normalises gradient scale, so a loss weight cannot
do this).

:func:`ema_momentum` turns a weight-averaging horizon in epochs into the per-step momentum of Keras'
optimizer EMA (``use_ema``), so one default carries across corpora of any size.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="tfvae")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose update is TensorFlow's fused ``ResourceApplyAdam`` kernel."""

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}

    def update_step(self, gradient, variable, learning_rate):
        path = getattr(variable, "path", None) or variable.name  # the backend variable carries the path as name
        for key, factor in self.lr_multipliers.items():
            if key in path:
                learning_rate = learning_rate * factor
                break
        if self.amsgrad or tf.distribute.has_strategy() and \
                tf.distribute.get_strategy().num_replicas_in_sync > 1 or not hasattr(variable, "handle"):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.value.handle, v=v.value.handle,
            beta1_power=ops.power(ops.cast(self.beta_1, dtype), step),
            beta2_power=ops.power(ops.cast(self.beta_2, dtype), step),
            lr=ops.cast(learning_rate, dtype), beta1=ops.cast(self.beta_1, dtype),
            beta2=ops.cast(self.beta_2, dtype), epsilon=ops.cast(self.epsilon, dtype),
            grad=ops.cast(gradient, dtype), use_locking=False)


def ema_momentum(epochs: float, steps_per_epoch: int) -> float:
    """Per-step momentum of an exponential moving average of the weights whose horizon (mean age of
    the averaged steps) is about ``epochs`` epochs: ``1 - 1 / (epochs * steps_per_epoch)``, at least 0."""
    return max(0.0, 1.0 - 1.0 / (float(epochs) * max(1, int(steps_per_epoch))))
