"""tfvae.pairs: the verification-style identity adversary (--identity_adversary pairs)."""

import numpy as np
import pytest

from tfvae.pairs import PairDiscriminator, pair_bce, pair_targets


def _np_bce(labels, logits):
    same = labels[:, None] == labels[None, :]
    known = labels >= 0
    mask = known[:, None] & known[None, :] & ~np.eye(len(labels), dtype=bool)
    lp, ln = np.logaddexp(0, -logits), np.logaddexp(0, logits)
    return 0.5 * (lp[mask & same].mean() + ln[mask & ~same].mean())


def test_pair_bce_is_the_balanced_cross_entropy_of_known_distinct_pairs():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1, 2, -1, 2, 0])
    logits = rng.normal(size=(8, 8)).astype("float32")
    value, count = pair_bce(labels, logits)
    assert float(value) == pytest.approx(_np_bce(labels, logits), rel=1e-5) and float(count) == 7
    # a judge that is sure and right costs nothing; sure and wrong costs a lot
    same = (labels[:, None] == labels[None, :]).astype("float32")
    assert float(pair_bce(labels, 50 * (2 * same - 1))[0]) < 1e-6
    assert float(pair_bce(labels, -50 * (2 * same - 1))[0]) > 40


def test_pair_targets_under_mixup_share_the_weight_of_matching_voices():
    labels, partners = np.array([0, 1, 0]), np.array([1, 0, 0])
    target, mask = pair_targets(labels, (0.75, partners))
    t = np.asarray(target)
    # rows 0 = .75 A + .25 B and 1 = .75 B + .25 A: same-speaker weight .75 * .25 twice
    assert t[0, 1] == pytest.approx(2 * 0.75 * 0.25)
    # rows 0 and 2 = .75 A + .25 A: .75 * .75 (A, A) + .25 * .75 (B, A)
    assert t[0, 2] == pytest.approx(0.75 * 0.75 + 0.25 * 0.75)
    np.testing.assert_array_equal(np.diag(np.asarray(mask)), 0.0)
    _, mask = pair_targets(labels, (0.75, np.array([1, -1, 0])))  # a partner unknown: its row leaves
    assert np.asarray(mask)[1].sum() == 0 and np.asarray(mask)[0, 2] == 1


def test_discriminator_logits_are_symmetric_scaled_cosines():
    d = PairDiscriminator((16, 8), name="speaker_discriminator")
    x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
    d.build(x.shape)
    logits = np.asarray(d(x))
    assert logits.shape == (5, 5)
    np.testing.assert_allclose(logits, logits.T, atol=1e-5)
    np.testing.assert_allclose(np.diag(logits), 5.0 - 2.0, atol=1e-4)  # cos = 1 at init scale 5, bias -2
    assert PairDiscriminator.from_config(d.get_config()).units == (16, 8)


def test_model_with_pair_adversary_trains_it_behind_the_reversal(small_corpus):
    from tests.test_model import _batch, _model
    from tfvae.model import LRVAE

    m = _model(small_corpus, identity_adversary="pairs")
    assert isinstance(m.id_adv_head, PairDiscriminator) and m.pairs_adversary("identity")
    assert not m.pairs_adversary("emotion") and not isinstance(m.emo_adv_head, PairDiscriminator)
    batch = _batch(small_corpus)
    _, terms = m.compute_losses(batch, training=True)
    assert 0.3 < float(terms["id_adv"]) < 3.0 and float(terms["_counts"]["id_adv"]) == 64
    assert {id(v) for v in m.id_adv_head.trainable_variables} <= {id(v) for v in m.discriminator_variables}
    assert LRVAE.from_config(m.get_config()).identity_adversary == "pairs"
    with pytest.raises(ValueError, match="identity_adversary 'triplets' is unknown"):
        _model(small_corpus, identity_adversary="triplets")
