"""CLUB, a contrastive log-ratio upper bound of mutual information (Cheng et al., ICML 2020), between
the attributes' bands of the latent: an independence term of eq. 4 beyond the paper (``club_weight``),
the non-linear, learned counterpart of the HSIC penalty (:func:`tfvae.terms.band_independence`).

For two bands ``a`` and ``b`` a variational net ``q(b|a) = N(mu(a), diag exp(logvar(a)))`` is fitted
by maximum likelihood, and ``I(a; b) <= E_p(a,b)[log q(b|a)] - E_p(a)E_p(b)[log q(b|a)]`` (up to how
well q fits) is minimised by the encoder.
"""

from __future__ import annotations

import keras
from keras import ops

from tfvae.terms import band_bounds


def band_pairs(z, k: int):
    """Every pair ``(z[:, band i], z[:, band j])``, i < j, of the K nominal bands (equal node ranges in
    latent order; two attributes: the two halves)."""
    bounds = band_bounds(int(z.shape[-1]), k)
    return [(z[:, bounds[i]:bounds[i + 1]], z[:, bounds[j]:bounds[j + 1]]) for i in range(k) for j in range(i + 1, k)]


def _standardise(x):
    """Each column of ``x`` to zero batch mean and unit batch variance: the encoder cannot lower the
    bound by rescaling the latent faster than q follows."""
    x = ops.cast(x, "float32")
    x = x - ops.mean(x, axis=0, keepdims=True)
    return x * ops.rsqrt(ops.mean(ops.square(x), axis=0, keepdims=True) + 1e-6)


@keras.saving.register_keras_serializable(package="tfvae")
class ClubEstimator(keras.layers.Layer):
    """The variational net ``q(b|a)`` of CLUB for one pair of bands (one ReLU hidden layer of ``units``).

    ``call(a, b)`` returns ``(fit, bound)``, each a scalar over the batch:

    - ``fit``: ``-mean_i log q(b_i|a_i) / dim(b)`` on ``a`` and ``b`` with stopped gradients, so only q
      learns from it (maximum likelihood);
    - ``bound``: CLUB, ``mean_i [log q(b_i|a_i) - mean_j log q(b_j|a_i)]`` (nats, floored at 0 like the
      information it bounds: a q that fits badly gives no reward), with q's weights held fixed, so only
      the encoder (through ``a`` and ``b``) learns from it.

    Both bands are standardised per batch first.
    """

    def __init__(self, b_dim: int, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.b_dim, self.units = int(b_dim), int(units)

    def build(self, a_shape):
        a_dim = int(a_shape[-1])
        shapes = {"hidden_kernel": (a_dim, self.units), "hidden_bias": (self.units,),
                  "mean_kernel": (self.units, self.b_dim), "mean_bias": (self.b_dim,),
                  "log_var_kernel": (self.units, self.b_dim), "log_var_bias": (self.b_dim,)}
        self._params = [self.add_weight(name=name, shape=shape, dtype="float32",
                                        initializer="glorot_uniform" if "kernel" in name else "zeros")
                        for name, shape in shapes.items()]

    def _moments(self, a, frozen: bool):
        w1, b1, wm, bm, wv, bv = (ops.stop_gradient(p) if frozen else p for p in self._params)
        h = ops.relu(ops.matmul(a, w1) + b1)
        return ops.matmul(h, wm) + bm, 3.0 * ops.tanh(ops.matmul(h, wv) + bv)  # log-variance in (-3, 3)

    def call(self, a, b):
        a, b = _standardise(a), _standardise(b)
        n = ops.maximum(ops.cast(ops.shape(a)[0], "float32"), 1.0)
        mean, log_var = self._moments(ops.stop_gradient(a), frozen=False)
        nll = 0.5 * (ops.square(ops.stop_gradient(b) - mean) * ops.exp(-log_var) + log_var)
        fit = ops.sum(nll) / (n * self.b_dim)
        mean, log_var = self._moments(a, frozen=True)
        inv_var = ops.exp(-log_var)
        positive = ops.sum(ops.square(b - mean) * inv_var, axis=1)
        # mean_j (b_j - mu_i)^2 = mean_j b_j^2 - 2 mu_i mean_j b_j + mu_i^2, without the n x n x d tensor
        b_mean = ops.sum(b, axis=0, keepdims=True) / n
        b_sq = ops.sum(ops.square(b), axis=0, keepdims=True) / n
        negative = ops.sum((b_sq - 2.0 * mean * b_mean + ops.square(mean)) * inv_var, axis=1)
        return fit, ops.maximum(0.5 * ops.sum(negative - positive) / n, 0.0)

    def get_config(self):
        return {**super().get_config(), "b_dim": self.b_dim, "units": self.units}
