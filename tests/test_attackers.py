import numpy as np
import pytest

from tfvae.attackers import (EMOTION_ATTACKERS, SPEAKER_ATTACKERS, fit_emotion_attacker, fit_speaker_attacker,
                             stratified_rows, stratified_subsample, top_speakers)
from tfvae.metrics import cosine_trials, eer


def _latent(n_spk, per, rng, emo_means, informative=True, first_speaker=0):
    spk = np.repeat(np.arange(first_speaker, first_speaker + n_spk), per)
    emo = np.tile(np.arange(4), n_spk * per // 4)
    spk_means = rng.normal(size=(n_spk, 6)) * 2
    z = rng.normal(size=(len(spk), 12)) * 0.6
    if informative:
        z[:, :6] += emo_means[emo]
        z[:, 6:] += spk_means[spk - first_speaker]
    return z, emo, spk


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 6)) * 2
    return {"info": [_latent(16, 16, rng, means), _latent(4, 16, rng, means, first_speaker=50),
                     _latent(6, 16, rng, means, first_speaker=100)],
            "noise": [_latent(16, 16, rng, means, False), _latent(4, 16, rng, means, False, 50),
                      _latent(6, 16, rng, means, False, 100)]}


def test_every_attacker_finds_information_that_is_there_and_not_what_is_not(data):
    from sklearn.metrics import f1_score

    for kind, lo, hi in (("info", 0.85, 1.01), ("noise", 0.0, 0.45)):
        (z_tr, e_tr, s_tr), (z_va, e_va, s_va), (z_te, e_te, s_te) = data[kind]
        for name in EMOTION_ATTACKERS:
            clf = fit_emotion_attacker(name, z_tr, e_tr, z_va, e_va)
            wf1 = f1_score(e_te, clf.predict(z_te), average="weighted")
            assert lo < wf1 < hi, (kind, name, wf1)
        for name in SPEAKER_ATTACKERS:
            emb = fit_speaker_attacker(name, z_tr, s_tr, z_va, s_va).embed(z_te)
            e = eer(*cosine_trials(emb, s_te))
            if kind == "noise":
                assert 0.35 < e < 0.65, (name, e)
            elif name != "cosine":  # raw cosine is confused by the emotion dimensions
                assert e < 0.2, (name, e)


def test_logreg_posteriors_are_finite_when_two_speakers_are_perfectly_separable():
    """Few training speakers: a separable logistic regression gives -inf log posteriors; the attacker
    must still give finite embeddings and an EER (the crash of the old suite)."""
    rng = np.random.default_rng(1)
    z = np.r_[rng.normal(size=(20, 4)) + 50, rng.normal(size=(20, 4)) - 50]
    s = np.repeat(["a", "b"], 20)
    emb = fit_speaker_attacker("logreg_posteriors", z, s).embed(z * 10)
    assert emb.shape == (40, 2) and np.isfinite(emb).all()
    z_te = rng.normal(size=(30, 4))
    e = eer(*cosine_trials(fit_speaker_attacker("logreg_posteriors", z, s).embed(z_te), np.repeat([1, 2, 3], 10)))
    assert 0 <= e <= 1


def test_stratified_subsample_keeps_every_class_and_its_share():
    y = np.r_[np.zeros(9000, int), np.ones(900, int), np.full(3, 2)]
    x = np.arange(len(y))[:, None]
    xs, ys = stratified_subsample(x, y, 1000, seed=0)
    counts = np.bincount(ys)
    assert abs(len(ys) - 1000) <= 3 and counts[2] >= 1
    assert counts[0] == pytest.approx(9000 / len(y) * 1000, abs=2)
    np.testing.assert_array_equal(y[xs[:, 0]], ys)  # rows and labels stay paired
    xs2, _ = stratified_subsample(x, y, 1000, seed=0)
    np.testing.assert_array_equal(xs, xs2)
    assert stratified_subsample(x, y, 10**6, seed=0)[0] is x


def test_subsample_by_speaker_keeps_every_speaker_and_label_pair():
    rng = np.random.default_rng(1)
    spk = np.repeat([f"s{i}" for i in range(3000)], rng.integers(2, 20, 3000))
    y = rng.integers(0, 5, spk.size)
    rows = stratified_rows(y, 5000, seed=0, groups=spk)
    # about 5000 rows; a speaker whose strata all rounded to none adds one (at most one per speaker)
    assert np.all(np.diff(rows) > 0) and 4800 <= rows.size <= 5000 + 3000
    assert set(spk[rows].tolist()) == set(spk.tolist()), "every speaker keeps a row"
    shares = np.bincount(y[rows], minlength=5) / rows.size
    np.testing.assert_allclose(shares, np.bincount(y) / y.size, atol=0.02)
    np.testing.assert_array_equal(rows, stratified_rows(y, 5000, seed=0, groups=spk))
    np.testing.assert_array_equal(stratified_rows(y[:100], 5000, seed=0), np.arange(100))


def test_top_speakers_keeps_the_speakers_with_most_rows():
    s = np.array(["a"] * 5 + ["b"] * 2 + ["c"] * 7 + ["d"] * 2)
    x = np.arange(s.size)[:, None]
    xk, sk = top_speakers(x, s, 3)
    assert sorted(set(sk.tolist())) == ["a", "b", "c"]  # b and d tie at 2 rows: b first by name
    np.testing.assert_array_equal(s[xk[:, 0]], sk)
    assert top_speakers(x, s, 4)[0] is x


def test_unknown_attackers_and_single_class_are_rejected():
    z = np.zeros((8, 2))
    with pytest.raises(ValueError, match="unknown emotion attacker 'svm'"):
        fit_emotion_attacker("svm", z, np.arange(8) % 2)
    with pytest.raises(ValueError, match="unknown speaker attacker 'plda'"):
        fit_speaker_attacker("plda", z, np.arange(8) % 2)
    with pytest.raises(ValueError, match="single emotion class"):
        fit_emotion_attacker("logreg", z, np.zeros(8))
