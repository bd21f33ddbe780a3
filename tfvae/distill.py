"""Distillation of linear class spaces of the raw features into the attributes' branches
(``--lda_target``, ``--lda_attributes``), a term of eq. 4 beyond the paper.

On small corpora the raw features verify unseen speakers better than any learned latent
(``reports/ravdess/quality.md``): a PCA + LDA projection fitted on a handful of training speakers
generalises, an MLP encoder trained on them does not. :func:`fit_class_projection` fits that
projection on the training split (PCA, then LDA on an attribute's labels, on standardised input) and
folds it into one affine map; :class:`ProjectionTarget` holds the map fixed and a linear read-out of
the attribute's branch, and returns the fraction of the target's variance the read-out misses. LDA
keeps what separates the classes relative to what varies within a class, so the speaker projection
carries little of the emotion each speaker acts (on RAVDESS the emotion projection still carries who
acts it: ``reports/ravdess/quality.md`` runs AN-AQ).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

#: PCA components before LDA (capped by the training rows and the feature dimension).
PCA_DIMS = 128


def fit_class_projection(x_std, labels, pca_dims: int = PCA_DIMS, max_rows: int = 50_000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel [D, r], bias [r])`` with ``x_std @ kernel + bias`` the PCA + LDA projection of
    standardised features for class ``labels`` (speakers, emotions; integer labels < 0 are unknown and
    left out), centred on the training rows and scaled by one factor to a mean variance of 1
    (r = min(classes - 1, PCA components)); at most ``max_rows`` seeded rows are used."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x_std = np.asarray(x_std, np.float64)
    labels = np.asarray(labels)
    if x_std.ndim != 2 or len(x_std) != len(labels):
        raise ValueError(f"need one label per feature row, got {x_std.shape} rows and {labels.shape} labels")
    if labels.dtype.kind in "iu":
        x_std, labels = x_std[labels >= 0], labels[labels >= 0]
    if len(np.unique(labels)) < 2:
        raise ValueError("a class projection needs at least 2 known classes in the training split")
    if len(x_std) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x_std), max_rows, replace=False))
        x_std, labels = x_std[keep], labels[keep]
    pca = PCA(min(pca_dims, x_std.shape[1], len(x_std) - 1), random_state=seed).fit(x_std)
    lda = LinearDiscriminantAnalysis().fit(pca.transform(x_std), labels)

    def project(x):
        return lda.transform(pca.transform(x))

    # the composition is affine: read it off the images of 0 and of the unit vectors
    bias = project(np.zeros((1, x_std.shape[1])))[0]
    kernel = project(np.eye(x_std.shape[1])) - bias
    out = x_std @ kernel + bias
    # one scale for all outputs: LDA's own scaling (unit within-speaker variance) keeps the directions that
    # separate speakers large and the rest small; the outputs' mean variance becomes 1
    mean, scale = out.mean(axis=0), max(float(np.sqrt(out.var(axis=0).mean())), 1e-8)
    return (kernel / scale).astype(np.float32), ((bias - mean) / scale).astype(np.float32)


def projection_dim(rows: int, dim: int, classes: int, pca_dims: int = PCA_DIMS) -> int:
    """Outputs of :func:`fit_class_projection` for ``rows`` training rows of ``dim`` features and
    ``classes`` classes (LDA gives at most classes - 1 directions)."""
    return max(1, min(int(classes) - 1, pca_dims, int(dim), int(rows) - 1))


def standardised_sample(features, normalizer, max_rows: int = 50_000, seed: int = 0):
    """``(rows, x_std)``: at most ``max_rows`` seeded rows of in-memory or streamed ``features``,
    standardised by the model's adapted ``keras.layers.Normalization``."""
    from tfvae.stream import rows as read_rows

    n = len(features)
    keep = np.arange(n) if n <= max_rows else np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    return keep, np.asarray(normalizer(read_rows(features, keep)), np.float32)


@keras.saving.register_keras_serializable(package="tfvae")
class ProjectionTarget(keras.layers.Layer):
    """A fixed affine class projection of the standardised input and a trainable linear read-out of
    an attribute's branch; ``call(branch, x_std)`` is the read-out's mean squared error over the
    projection's ``units`` outputs (their mean variance is 1: the fraction of the target's variance
    the read-out misses)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.readout = keras.layers.Dense(self.units, name="readout")

    def build(self, branch_shape, input_dim: int):
        self.kernel = self.add_weight(name="projection_kernel", shape=(int(input_dim), self.units),
                                      initializer="zeros", trainable=False)
        self.bias = self.add_weight(name="projection_bias", shape=(self.units,), initializer="zeros",
                                    trainable=False)
        self.readout.build(branch_shape)

    def set_projection(self, kernel, bias) -> None:
        """The map of :func:`fit_class_projection`."""
        kernel, bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
        if kernel.shape != tuple(self.kernel.shape) or bias.shape != tuple(self.bias.shape):
            raise ValueError(f"projection of shape {kernel.shape} + {bias.shape}; this target holds "
                             f"{tuple(self.kernel.shape)} + {tuple(self.bias.shape)}")
        self.kernel.assign(kernel)
        self.bias.assign(bias)

    def call(self, branch, x_std):
        target = ops.matmul(ops.cast(x_std, "float32"), self.kernel) + self.bias
        error = ops.square(ops.cast(self.readout(branch), "float32") - target)
        return ops.sum(error) / ops.maximum(ops.cast(ops.shape(error)[0] * self.units, "float32"), 1.0)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
