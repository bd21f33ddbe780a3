import numpy as np
import pytest

from tfvae.evaluate import (EMOTION_ATTACKERS, SPEAKER_ATTACKERS, chance_wf1, emotion_attacks, speaker_attacks,
                            strongest)


def _latent(n_spk, per, rng, emo_means, informative=True):
    spk = np.repeat(np.arange(n_spk), per)
    emo = np.tile(np.arange(4), n_spk * per // 4)
    spk_means = rng.normal(size=(n_spk, 6)) * 2
    z = rng.normal(size=(len(spk), 12)) * 0.6
    if informative:
        z[:, :6] += emo_means[emo]
        z[:, 6:] += spk_means[spk]
    return z, emo, spk


def test_attackers_find_information_that_is_there_and_not_what_is_not():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 6)) * 2
    z_tr, e_tr, s_tr = _latent(16, 16, rng, means)
    z_te, e_te, s_te = _latent(6, 16, rng, means)
    s_te = s_te + 100
    emo = emotion_attacks(z_tr, e_tr, z_te, e_te)
    assert set(emo) == set(EMOTION_ATTACKERS)
    assert all(r["wf1"] > 0.85 and r["uar"] > 0.85 for r in emo.values()), emo
    spk = speaker_attacks(z_tr, s_tr, z_te, s_te)
    assert set(spk) == set(SPEAKER_ATTACKERS)
    # trained attackers separate speakers; raw cosine is confused by the emotion dimensions
    assert all(spk[a]["eer"] < 0.15 for a in ("mlp_embedding", "lda_cosine", "logreg_posteriors")), spk
    assert spk["cosine"]["eer"] < 0.35
    assert strongest(spk, "eer", 0.5)[0] != "cosine"
    n = len(s_te)
    assert spk["cosine"]["target_trials"] == 6 * (16 * 15 // 2)
    assert spk["cosine"]["target_trials"] + spk["cosine"]["nontarget_trials"] == n * (n - 1) // 2
    # noise only: everything near chance
    z_tr, e_tr, s_tr = _latent(16, 16, rng, means, informative=False)
    z_te, e_te, s_te = _latent(6, 16, rng, means, informative=False)
    emo = emotion_attacks(z_tr, e_tr, z_te, e_te)
    assert all(r["wf1"] < 0.4 for r in emo.values()), emo
    spk = speaker_attacks(z_tr, s_tr, z_te, s_te + 100)
    assert all(0.4 < r["eer"] < 0.6 for r in spk.values()), spk


def test_strongest_and_chance():
    res = {"a": {"wf1": 0.30}, "b": {"wf1": 0.55}, "c": {"wf1": 0.20}}
    assert strongest(res, "wf1", chance=0.25)[0] == "b"
    res = {"a": {"eer": 0.48}, "b": {"eer": 0.31}}
    assert strongest(res, "eer", chance=0.5) == ("b", {"eer": 0.31})
    c = chance_wf1([0, 0, 0, 1])  # shares 3/4, 1/4
    assert c["stratified"] == pytest.approx(0.625)
    assert c["majority"] == pytest.approx(0.75 * (2 * 0.75 / 1.75))


def test_unknown_attacker_is_rejected():
    z = np.zeros((8, 2))
    with pytest.raises(ValueError, match="unknown emotion attacker 'svm'"):
        emotion_attacks(z, np.arange(8) % 2, z, np.arange(8) % 2, attackers=("svm",))
