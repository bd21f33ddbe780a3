"""Building blocks of the objective (paper eq. 4) and its metric: masked cross-entropy and accuracy
(speakers unknown to the classifier have label -1), batch means that survive empty replica batches,
the Gaussian reconstruction and per-node KL of eq. 1, the independence penalties between the
attributes' bands (linear cross-correlation, RBF HSIC), the L2 sum under XLA, and :class:`TermMeans`,
every loss term's running mean in two variables.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import ops

tfd = tfp.distributions


def masked_ce(labels, logits):
    """Mean sparse cross-entropy over examples with label >= 0, and how many there were."""
    labels = ops.cast(labels, "int32")
    known = ops.cast(labels >= 0, "float32")
    ce = keras.losses.sparse_categorical_crossentropy(
        ops.maximum(labels, 0), ops.cast(logits, "float32"), from_logits=True)
    n = ops.sum(known)
    return ops.divide_no_nan(ops.sum(ce * known), n), n


def batch_mean(values):
    """Mean over the batch, 0 for an empty batch (a replica can get none at the end of an epoch)."""
    n = ops.cast(ops.shape(values)[0], "float32")
    return ops.sum(values) / ops.maximum(n, 1.0)


def cross_correlation(z, split: int):
    """Linear-kernel HSIC between ``z[:, :split]`` and ``z[:, split:]``: the mean squared batch
    cross-correlation of the two halves (0 when they are linearly independent)."""
    z = z - ops.mean(z, axis=0, keepdims=True)
    z = z / ops.sqrt(ops.mean(ops.square(z), axis=0, keepdims=True) + 1e-6)
    n = ops.maximum(ops.cast(ops.shape(z)[0], "float32"), 1.0)
    cross = ops.matmul(ops.transpose(z[:, :split]), z[:, split:]) / n
    return ops.mean(ops.square(cross))


def rbf_hsic(z, split: int):
    """Biased HSIC estimate (Gretton et al. 2005) between ``z[:, :split]`` and ``z[:, split:]`` with
    Gaussian kernels whose bandwidth is the batch's median pairwise distance (not differentiated)."""
    n = ops.cast(ops.shape(z)[0], "float32")

    def centred_gram(x):
        sq = ops.sum(ops.square(x), axis=1, keepdims=True)
        d2 = ops.maximum(sq + ops.transpose(sq) - 2.0 * ops.matmul(x, ops.transpose(x)), 0.0)
        bandwidth = ops.stop_gradient(ops.maximum(ops.median(d2), 1e-6))
        k = ops.exp(-d2 / bandwidth)
        k = k - ops.mean(k, axis=0, keepdims=True)
        return k - ops.mean(k, axis=1, keepdims=True)

    kx, ky = centred_gram(z[:, :split]), centred_gram(z[:, split:])
    return ops.sum(kx * ky) / ops.maximum(ops.square(n - 1.0), 1.0)


def linear_leakage(rep, labels, n_classes: int, node_weights=None):
    """Linear guardedness penalty, the training-time form of LEACE's condition (Belrose et al. 2023):
    the mean over nodes (weighted by ``node_weights``, e.g. a branch's keep rates) of the summed squared
    correlation between a batch-standardised node of ``rep`` and the centred one-hot ``labels``
    (rows with label -1 left out). 0 exactly when every class has the same mean representation."""
    labels = ops.cast(labels, "int32")
    known = ops.cast(labels >= 0, "float32")[:, None]
    n = ops.maximum(ops.sum(known), 1.0)
    rep = ops.cast(rep, "float32")
    r = (rep - ops.sum(rep * known, axis=0, keepdims=True) / n) * known
    r = r / ops.sqrt(ops.sum(ops.square(r), axis=0, keepdims=True) / n + 1e-6)
    y = ops.one_hot(ops.maximum(labels, 0), n_classes) * known
    y = (y - ops.sum(y, axis=0, keepdims=True) / n) * known
    c = ops.matmul(ops.transpose(r), y) / n  # nodes x classes
    if node_weights is None:
        return ops.mean(ops.sum(ops.square(c), axis=1))
    w = ops.cast(ops.convert_to_tensor(node_weights), "float32")
    return ops.sum(ops.square(w) * ops.sum(ops.square(c), axis=1)) / ops.maximum(ops.sum(ops.square(w)), 1e-6)


def band_bounds(n: int, k: int) -> list[int]:
    """The K + 1 node boundaries of the K nominal bands of an N-node latent (equal ranges in latent
    order): band i is nodes ``bounds[i]:bounds[i + 1]``."""
    return [i * int(n) // int(k) for i in range(int(k) + 1)]


def band_independence(z, k: int, hsic=cross_correlation):
    """The mean of ``hsic`` over every pair of the K nominal bands of ``z`` (K equal node ranges in
    latent order); with two attributes, ``hsic(z, N // 2)`` between the two halves."""
    n = int(z.shape[-1])
    if k == 2:  # the paper's two halves, on ``z`` itself (no slices and concatenation in the gradient)
        return hsic(z, n // 2)
    bounds = band_bounds(n, k)
    vals = [hsic(ops.concatenate([z[:, bounds[i]:bounds[i + 1]], z[:, bounds[j]:bounds[j + 1]]], axis=1),
                 bounds[i + 1] - bounds[i]) for i in range(k) for j in range(i + 1, k)]
    return vals[0] if len(vals) == 1 else ops.mean(ops.stack(vals))


def reconstruction_nll(x_loc, x_std, variance: str = "unit", log_scale=None):
    """-log p(x|z) per feature (nats, batch mean) of a Gaussian decoder (paper eq. 1): ``unit`` variance,
    ``learned`` (per-feature ``log_scale``, clipped to [-4, 2]) or ``calibrated`` (sigma-VAE: the batch MSE
    as a shared variance, not differentiated)."""
    if variance == "learned":
        scale = ops.exp(ops.clip(ops.cast(log_scale, "float32"), -4.0, 2.0))
    elif variance == "calibrated":
        mse = ops.mean(ops.square(x_std - x_loc))
        scale = ops.sqrt(ops.maximum(ops.stop_gradient(mse), 1e-4))
    else:
        scale = 1.0
    likelihood = tfd.Independent(tfd.Normal(loc=x_loc, scale=scale), reinterpreted_batch_ndims=1)
    return -batch_mean(likelihood.log_prob(x_std)) / float(x_std.shape[-1])


def kl_per_node(q, z, free_bits: float = 0.0, node_weights=None):
    """KL(q(z|x) || N(0, I)) per latent node (batch mean; ``tfd.kl_divergence``); with ``free_bits``, the
    batch-mean KL of each node below that many nats costs nothing; with ``node_weights`` (one per node),
    node i's KL counts ``node_weights[i]`` times (a beta per node, e.g. :func:`kl_node_weights`)."""
    prior = tfd.MultivariateNormalDiag(loc=ops.zeros_like(z), scale_diag=ops.ones_like(z))
    if not free_bits and node_weights is None:
        return batch_mean(tfd.kl_divergence(q, prior)) / float(z.shape[-1])
    per_node = tfd.kl_divergence(tfd.Normal(q.mean(), q.stddev()), tfd.Normal(0.0, 1.0))
    per_node = ops.sum(per_node, axis=0) / ops.maximum(ops.cast(ops.shape(z)[0], "float32"), 1.0)
    if free_bits:
        per_node = ops.maximum(per_node, free_bits)
    if node_weights is not None:
        per_node = per_node * ops.cast(node_weights, per_node.dtype)
    return ops.mean(per_node)


def kl_node_weights(latent_dim: int, identity_weight: float):
    """KL weight of each latent node: 1 at node 0 (the emotion end), ramping linearly to
    ``identity_weight`` at node N-1 (the identity end); None when it is 1 (the paper's uniform KL)."""
    if identity_weight == 1.0:
        return None
    return np.linspace(1.0, identity_weight, latent_dim).astype("float32")


def in_xla() -> bool:
    """Whether the graph being traced will be compiled by XLA (inside ``tf.function(jit_compile=True)``)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # private module: without it, every graph counts as not compiled
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def sum_of_squares(w):
    """``sum(w ** 2)`` of a weight matrix as ``square(w) @ ones``, then a sum over its rows.

    XLA's CPU backend reduces a whole matrix to a scalar in one sequential loop; the
    matrix-vector product goes to a vectorised, multi-threaded GEMV kernel (5x faster for
    the LR-VAE's weights, ``bench/train_throughput.py``).
    """
    w = ops.convert_to_tensor(w)
    if len(w.shape) != 2 or w.shape[1] is None:
        return ops.sum(ops.square(w))
    return ops.sum(tf.linalg.matvec(ops.square(w), tf.ones([w.shape[1]], w.dtype)))


def masked_acc(labels, logits):
    labels = ops.cast(labels, "int32")
    known = ops.cast(labels >= 0, "float32")
    hit = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels), "float32")
    return ops.divide_no_nan(ops.sum(hit * known), ops.sum(known))


class TermMeans(keras.metrics.Metric):
    """Running weighted means of named scalars (the loss terms) in two vector variables.

    Element by element the same arithmetic as one ``keras.metrics.Mean`` per name updated with
    ``sample_weight`` (``total += value * weight``, ``count += weight``, result ``total / count``),
    so the values are identical; but a step updates 2 variables, not 2 per term (about 30 scalar
    variable writes cost a train step more than the metric arithmetic, most as outputs of an XLA
    cluster). ``result()`` is NaN where nothing was counted. Under a ``tf.distribute`` strategy the
    variables are sum-aggregated on read, as Keras' metrics are.
    """

    def __init__(self, names: Sequence[str], name: str = "loss_terms", **kwargs):
        super().__init__(name=name, **kwargs)
        self.names = tuple(names)
        self.total = self.add_variable(shape=(len(self.names),), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(len(self.names),), initializer="zeros", name="count")

    def update_state(self, values: dict, weights: dict):
        """Add ``values[name] * weights[name]`` to each total and ``weights[name]`` to each count."""
        values = ops.stack([ops.cast(values[k], self.dtype) for k in self.names])
        weights = ops.stack([ops.cast(weights[k], self.dtype) for k in self.names])
        self.total.assign_add(values * weights)
        self.count.assign_add(weights)

    def result(self):
        return ops.where(self.count > 0, ops.divide_no_nan(self.total, self.count), float("nan"))

    def get_config(self):
        return {**super().get_config(), "names": list(self.names)}
