import numpy as np
import pytest

from tfvae.terms import linear_leakage


def _manual(rep, labels, n_classes, w=None):
    keep = labels >= 0
    r, y = rep[keep], labels[keep]
    r = (r - r.mean(0)) / np.sqrt(r.var(0) + 1e-6)
    onehot = np.eye(n_classes)[y]
    c = r.T @ (onehot - onehot.mean(0)) / len(r)
    per_node = (c ** 2).sum(1)
    return per_node.mean() if w is None else (w ** 2 * per_node).sum() / (w ** 2).sum()


def test_linear_leakage_is_the_squared_class_correlation_of_each_node():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 4, 200)
    rep = rng.normal(size=(200, 6)).astype(np.float32)
    rep[:, 0] += 3.0 * (labels == 2)  # node 0 carries class 2
    w = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    got = float(linear_leakage(rep, labels, 4))
    assert got == pytest.approx(_manual(rep, labels, 4), rel=1e-4)
    assert float(linear_leakage(rep, labels, 4, w)) == pytest.approx(_manual(rep, labels, 4, w), rel=1e-4)
    # weights that ignore node 0 see almost nothing; the leaking node alone is a large share of its variance
    assert float(linear_leakage(rep, labels, 4, w)) < 0.05 < float(linear_leakage(rep, labels, 4, [1, 0, 0, 0, 0, 0]))


def test_linear_leakage_is_zero_when_every_class_has_the_same_mean():
    labels = np.repeat([0, 1, 2], 4)
    base = np.arange(4, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    rep = np.concatenate([base, base + 0.0, base[::-1]])  # each class: the same four rows, in any order
    assert float(linear_leakage(rep, labels, 3)) == pytest.approx(0.0, abs=1e-7)
    # unknown rows (-1) are left out, whatever they hold
    rep2 = np.concatenate([rep, np.full((3, 2), 100.0, np.float32)])
    assert float(linear_leakage(rep2, np.concatenate([labels, [-1, -1, -1]]), 3)) == pytest.approx(0.0, abs=1e-7)
    # and the scale of the representation does not matter (no shrinking out of the penalty)
    rep3 = rep.copy()
    rep3[:4, 0] += 5.0
    assert float(linear_leakage(10 * rep3, labels, 3)) == pytest.approx(float(linear_leakage(rep3, labels, 3)), rel=1e-4)
