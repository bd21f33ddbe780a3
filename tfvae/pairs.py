"""A verification-style identity adversary (``--identity_adversary pairs``), beyond the paper.

The paper's speaker discriminator (eq. 4's L_id-adv) classifies the training speakers; the privacy
attackers of the evaluation verify *unseen* speakers by comparing two utterances.
:class:`PairDiscriminator` is trained like such an attacker: it embeds every utterance of a batch
and judges every pair "same speaker or not" from the cosine of the two embeddings; behind gradient
reversal the encoder then removes whatever makes two utterances of one speaker alike, for any
speaker, rather than what tells the training speakers apart. :func:`pair_bce` is its loss.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tfvae.layers import dense_stack


@keras.saving.register_keras_serializable(package="tfvae")
class PairDiscriminator(keras.layers.Layer):
    """``call(x)`` -> ``[batch, batch]`` logits ``s * cos(g(x_i), g(x_j)) + b`` that two rows share the
    label; ``g``: ReLU layers of ``units[:-1]``, then a linear embedding of ``units[-1]``."""

    def __init__(self, units: Sequence[int], l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.l2 = tuple(int(u) for u in units), float(l2)
        self.body = dense_stack(self.units[:-1], self.l2, f"{self.name}_embedding", out=self.units[-1])

    def build(self, input_shape):
        self.body.build(input_shape)
        self.scale = self.add_weight(name="scale", shape=(), initializer=keras.initializers.Constant(5.0))
        self.bias = self.add_weight(name="bias", shape=(), initializer=keras.initializers.Constant(-2.0))

    def call(self, x, training=False):
        e = ops.cast(self.body(x, training=training), "float32")
        e = e / ops.sqrt(ops.sum(ops.square(e), axis=1, keepdims=True) + 1e-12)
        return self.scale * ops.matmul(e, ops.transpose(e)) + self.bias

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "l2": self.l2}


def pair_targets(labels, mixed=None):
    """``(targets, mask)`` over the pairs of a batch: 1 where two rows share a known label (>= 0),
    under mixup (``mixed = (lam, partners' labels)``) the share of the two mixtures' weight that does;
    ``mask`` keeps the pairs of two distinct rows whose labels (and partners' labels) are known."""
    def same(a, b):
        a, b = ops.cast(a, "int32"), ops.cast(b, "int32")
        return ops.cast(ops.equal(a[:, None], b[None, :]), "float32")

    known = _known(labels)
    target = same(labels, labels)
    if mixed is not None:
        lam, partners = mixed
        known = known * _known(partners)
        target = lam * lam * target + lam * (1.0 - lam) * (same(labels, partners) + same(partners, labels)) \
            + (1.0 - lam) * (1.0 - lam) * same(partners, partners)
    mask = known[:, None] * known[None, :] * (1.0 - ops.eye(ops.shape(labels)[0], dtype="float32"))
    return target, mask


def _known(labels):
    return ops.cast(ops.cast(labels, "int32") >= 0, "float32")


def pair_bce(labels, logits, mixed=None):
    """Class-balanced binary cross-entropy of the pair logits: the mean over same-label pairs and the
    mean over different-label pairs, averaged (few pairs share a speaker); and the rows counted."""
    target, mask = pair_targets(labels, mixed)
    logits = ops.cast(logits, "float32")
    pos = ops.sum(target * mask)
    neg = ops.sum((1.0 - target) * mask)
    loss_pos = ops.sum(target * mask * ops.softplus(-logits))  # -log sigmoid
    loss_neg = ops.sum((1.0 - target) * mask * ops.softplus(logits))  # -log (1 - sigmoid)
    value = 0.5 * (ops.divide_no_nan(loss_pos, pos) + ops.divide_no_nan(loss_neg, neg))
    return value, ops.sum(_known(labels))
