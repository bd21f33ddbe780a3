"""tfvae.club: the CLUB bound between latent bands (Cheng et al. 2020) and its place in eq. 4."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.club import ClubEstimator, band_pairs
from tfvae.model import LRVAE


def _draw(rng, dependent: bool, n: int):
    a = rng.normal(size=(n, 4)).astype("float32")
    b = a[:, :2] + 0.3 * rng.normal(size=(n, 2)) if dependent else rng.normal(size=(n, 2))
    return tf.constant(a), tf.constant(b.astype("float32"))


@pytest.mark.parametrize("dependent", [True, False])
def test_bound_sees_dependence_and_each_part_trains_only_its_side(dependent):
    rng = np.random.default_rng(0)
    est = ClubEstimator(2, units=16, name="club_0")
    est.build((None, 4))
    opt = keras.optimizers.Adam(1e-2)
    for _ in range(200):  # q fitted by maximum likelihood on fresh batches
        a, b = _draw(rng, dependent, 128)
        with tf.GradientTape() as tape:
            fit, _ = est(a, b)
        opt.apply_gradients(zip(tape.gradient(fit, est.trainable_variables), est.trainable_variables))
    a, b = _draw(rng, dependent, 512)  # held-out pairs
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        fit, bound = est(a, b)
    if dependent:  # I(a; b) = 2 x 0.5 log(1 + 1 / 0.09) = 2.5 nats; CLUB bounds it from above
        assert float(bound) > 2.5 and float(fit) < 0.0
    else:  # standardised independent b: q learns the marginal (nll 0.5 a dimension) and the bound is about 0
        assert 0.0 <= float(bound) < 0.05 and float(fit) == pytest.approx(0.5, abs=0.05)
    assert tape.gradient(fit, [a, b]) == [None, None]  # the fit trains q only
    assert all(g is None for g in tape.gradient(bound, est.trainable_variables))  # the bound the encoder only
    assert ClubEstimator.from_config(est.get_config()).b_dim == 2


def test_band_pairs_split_the_latent_into_nominal_bands():
    z = np.arange(12, dtype="float32").reshape(1, 12)
    assert [(a.tolist(), b.tolist()) for a, b in band_pairs(z, 2)] == [([list(range(6))], [list(range(6, 12))])]
    pairs = band_pairs(z, 3)
    assert [(a[0, 0], b[0, 0]) for a, b in pairs] == [(0, 4), (0, 8), (4, 8)]


def test_club_term_enters_the_objective_and_its_nets_are_critics(small_corpus):
    from tests.test_model import _batch, _model

    m = _model(small_corpus, club_weight=2.0)
    assert len(m.club_estimators) == 1 and {"club", "club_fit"} <= set(m.trackers)
    batch = _batch(small_corpus)
    loss, terms = m.compute_losses(batch, training=True)
    assert float(terms["club"]) >= 0.0 and np.isfinite(float(terms["club_fit"]))
    off, off_terms = _model(small_corpus).compute_losses(batch, training=True)
    assert "club" not in off_terms
    club_vars = {id(v) for v in m.club_estimators[0].trainable_variables}
    assert club_vars <= {id(v) for v in m.discriminator_variables}  # --disc_steps updates them too
    assert LRVAE.from_config(m.get_config()).club_weight == 2.0
    assert not hasattr(_model(small_corpus, method="vae", club_weight=2.0), "club_estimators")
