"""LEACE erasure (tfvae.erasure): class means equalised, nothing else moved, lifting to masked views."""

import numpy as np
import pytest

from tfvae.erasure import LinearEraser, fit_leace, load_erasers, save_erasers, view_erasers


def _data(n=600, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.normal(0, 3, (k, d))
    x = centres[y] + rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d))
    return x, y


def test_leace_equalises_class_means_and_removes_k_minus_1_dimensions():
    x, y = _data()
    e = fit_leace(x, y)
    xe = e(x)
    means = np.stack([xe[y == c].mean(0) for c in range(3)])
    assert np.abs(means - means.mean(0)).max() < 1e-4  # every class has the same mean after erasure
    assert e.rank == 2  # k - 1 directions for k classes
    # a linear classifier trained after erasure is at chance on the training data
    from sklearn.linear_model import LogisticRegression
    before = LogisticRegression(max_iter=2000).fit(x, y).score(x, y)
    after = LogisticRegression(max_iter=2000).fit(xe, y).score(xe, y)
    assert before > 0.9 and after < 0.5


def test_leace_is_least_squares_minimal_on_directions_without_the_attribute():
    x, y = _data()
    noise = np.random.default_rng(1).normal(size=(len(x), 2))  # independent of y: kept (nearly) as is
    e = fit_leace(np.hstack([x, noise]), y)
    moved = e(np.hstack([x, noise]))[:, 6:] - noise
    assert np.abs(moved).mean() < 0.1


def test_leace_rejects_bad_input():
    x, y = _data()
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_leace(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="n labels"):
        fit_leace(x, y[:-1])
    with pytest.raises(ValueError, match=r"\[n, 6\]"):
        fit_leace(x, y)(x[:, :3])


def test_view_erasers_keep_masked_nodes_zero_and_round_trip(tmp_path):
    x, y = _data(d=8)
    spk = np.arange(len(x)) % 5
    masks = {"identity_free": np.r_[np.ones(4), np.zeros(4)], "emotion_free": np.r_[np.zeros(3), np.ones(5)]}
    erasers = view_erasers(x, y, spk, masks)
    assert set(erasers) == {"identity_free_leace", "emotion_free_leace"}
    keep = masks["emotion_free"] > 0
    out = erasers["emotion_free_leace"](x * keep)
    assert np.all(out[:, ~keep] == 0)
    means = np.stack([out[y == c].mean(0) for c in range(3)])  # emotion erased from the emotion-free view
    assert np.abs(means - means.mean(0)).max() < 1e-4
    save_erasers(tmp_path / "e.npz", erasers)
    back = load_erasers(tmp_path / "e.npz")
    assert set(back) == set(erasers)
    np.testing.assert_allclose(back["identity_free_leace"].projection, erasers["identity_free_leace"].projection)
    assert load_erasers(tmp_path / "missing.npz") == {}
    assert isinstance(back["emotion_free_leace"], LinearEraser)


def test_max_rank_and_rank_chosen_on_validation():
    x, y = _data(n=900, d=12, k=6)
    assert fit_leace(x, y).rank == 5 and fit_leace(x, y, max_rank=2).rank == 2
    spk = np.arange(len(x)) % 10  # 10 "speakers": full LEACE of identity would remove 9 of 12 nodes
    masks = {"identity_free": np.r_[np.ones(12)], "emotion_free": np.r_[np.zeros(4), np.ones(8)]}
    xv, yv = _data(n=300, d=12, k=6, seed=5)
    chosen = view_erasers(x, y, spk, masks, validation=(xv, yv, 100 + np.arange(len(xv)) % 5))
    assert chosen["identity_free_leace"].rank in (9, 6, 3)  # full, half, a quarter of the kept nodes
    assert chosen["emotion_free_leace"].rank in (5, 4, 2)


def test_leace_of_several_attributes_equalises_each_ones_class_means_and_skips_unknown_labels():
    rng = np.random.default_rng(4)
    n, d = 800, 8
    a, b = rng.integers(0, 3, n), rng.integers(0, 2, n)
    x = rng.normal(0, 3, (3, d))[a] + rng.normal(0, 3, (2, d))[b] + rng.normal(size=(n, d))
    b_seen = np.where(np.arange(n) % 10 == 0, -1, b)  # every tenth row: unknown
    e = fit_leace(x, [a, b_seen])
    xe = e(x)
    assert e.rank == (3 - 1) + (3 - 1)  # b's unknown rows form a third state of its code (all zeros)
    for y in (a, b):
        means = np.stack([xe[y == c].mean(0) for c in np.unique(y)])
        assert np.abs(means - means.mean(0)).max() < 0.15  # b's unknown rows share its class means
    known = b_seen >= 0
    kmeans = np.stack([xe[known & (b == c)].mean(0) for c in (0, 1)])
    assert np.abs(kmeans[0] - kmeans[1]).max() < 1e-4  # equal (float32 output) over the rows it was fit on
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_leace(x, [a, np.full(n, -1)])


def test_view_erasers_over_three_attributes_erase_every_masked_attribute():
    from tfvae.attributes import parse_attributes

    rng = np.random.default_rng(5)
    n = 800
    emo, spk = rng.integers(0, 4, n), rng.integers(0, 4, n)
    gender = spk % 2
    z = np.concatenate([rng.normal(0, 3, (4, 8))[emo] + rng.normal(0, 2, (4, 8))[spk],
                        rng.normal(0, 3, (2, 2))[gender], rng.normal(0, 3, (4, 4))[spk]], axis=1)
    z = z + rng.normal(size=(n, 14))
    top = np.r_[np.ones(8), np.zeros(6)]  # the emotion band; gender and identity masked
    attrs = parse_attributes("emotion,gender,identity")
    out = view_erasers(z, emo, spk, {"keep_emotion_gender": np.r_[np.ones(10), np.zeros(4)], "keep_emotion": top},
                       attributes=attrs, labels={"gender": gender})
    assert set(out) == {"keep_emotion_gender_leace", "keep_emotion_leace"}
    assert out["keep_emotion_leace"].rank == 3  # the speakers' 3 directions (gender is a function of the speaker)
    ze = out["keep_emotion_leace"](z * top)
    for y in (gender, spk):  # keep_emotion hides gender and identity: both erased on its nodes
        means = np.stack([ze[y == c].mean(0) for c in np.unique(y)])
        assert np.abs(means - means.mean(0)).max() < 1e-6
    emo_means = np.stack([ze[emo == c, :8].mean(0) for c in range(4)])
    assert np.abs(emo_means - emo_means.mean(0)).max() > 1.0  # the kept attribute stays
