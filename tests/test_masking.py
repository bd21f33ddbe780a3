import numpy as np
import pytest

from tfvae.masking import candidate_cuts, candidate_positions, choose_cuts, keep_mask, relevant_boundaries, view_keep


def test_keep_mask_views():
    np.testing.assert_array_equal(keep_mask(6, "identity_free", 2), [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(keep_mask(6, "emotion_free", 2), [0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="unknown"):
        keep_mask(6, "gender_free", 2)
    with pytest.raises(ValueError, match="outside"):
        keep_mask(6, "identity_free", 7)


def test_candidate_cuts_are_group_boundaries():
    assert candidate_cuts(128, 32)[:3] == [4, 8, 12] and candidate_cuts(128, 32)[-1] == 124
    assert len(candidate_cuts(128, 32)) == 31
    with pytest.raises(ValueError, match="cannot be split"):
        candidate_cuts(100, 32)


EMO_MEANS = np.random.default_rng(42).normal(size=(4, 8)) * 2.0


def _aligned_latent(n_spk, per_spk, rng):
    """Latent whose top 8 nodes carry emotion only and bottom 8 nodes speaker only
    (each call draws new speakers; the emotions are shared)."""
    spk = np.repeat(np.arange(n_spk), per_spk)
    emo = np.tile(np.arange(4), n_spk * per_spk // 4)
    emo_means = EMO_MEANS
    spk_means = rng.normal(size=(n_spk, 8)) * 2.0
    z = np.concatenate([emo_means[emo], spk_means[spk]], axis=1) + rng.normal(size=(len(spk), 16)) * 0.7
    return z, emo, spk


def test_choose_cuts_finds_the_attribute_boundary_on_validation():
    rng = np.random.default_rng(0)
    z_tr, e_tr, s_tr = _aligned_latent(20, 16, rng)
    z_va, e_va, s_va = _aligned_latent(8, 16, rng)  # a new draw of speakers: unseen in training
    s_va = s_va + 100
    res = choose_cuts(z_tr, e_tr, s_tr, z_va, e_va, s_va, groups=8, tolerance=0.02)
    assert res["identity_free_cut"] == 8, res["table"]
    assert res["emotion_free_cut"] == 8, res["table"]
    assert res["chosen_on"] == "validation" and len(res["table"]) == 7
    row = {r["cut"]: r for r in res["table"]}[8]
    assert row["identity_free_speaker_eer"] > 0.35 and row["identity_free_emotion_wf1"] > 0.9
    assert row["emotion_free_emotion_wf1"] < 0.45 and row["emotion_free_speaker_eer"] < 0.1


def test_choose_cuts_scores_are_validation_scores_and_deterministic():
    from tfvae.evaluate import probe_scores
    from tfvae.metrics import sample_trials

    rng = np.random.default_rng(1)
    z_tr, e_tr, s_tr = _aligned_latent(20, 16, rng)
    z_va, e_va, s_va = _aligned_latent(8, 16, rng)
    res = choose_cuts(z_tr, e_tr, s_tr, z_va, e_va, s_va + 100, groups=8)
    row = {r["cut"]: r for r in res["table"]}[4]
    trials = sample_trials(s_va + 100)
    assert row["identity_free_emotion_wf1"] == probe_scores(z_tr[:, :4], e_tr, s_tr, z_va[:, :4], e_va, trials)[0]
    assert row["emotion_free_speaker_eer"] == probe_scores(z_tr[:, 4:], e_tr, s_tr, z_va[:, 4:], e_va, trials)[1]
    assert res["chance_emotion_wf1"] == pytest.approx(0.25)  # 4 balanced classes
    again = choose_cuts(z_tr, e_tr, s_tr, z_va, e_va, s_va + 100, groups=8)
    assert again == res


def test_strong_probes_charge_the_strongest_validation_attacker():
    from tfvae.evaluate import probe_scores
    from tfvae.metrics import sample_trials

    rng = np.random.default_rng(2)
    z_tr, e_tr, s_tr = _aligned_latent(20, 16, rng)
    z_va, e_va, s_va = _aligned_latent(8, 16, rng)
    trials = sample_trials(s_va + 100)
    fast = probe_scores(z_tr, e_tr, s_tr, z_va, e_va, trials)
    strong = probe_scores(z_tr, e_tr, s_tr, z_va, e_va, trials, attackers="strong")
    assert strong[0] >= fast[0] and strong[1] <= fast[1]  # a superset of attackers: never weaker
    res = choose_cuts(z_tr, e_tr, s_tr, z_va, e_va, s_va + 100, groups=8, attackers="strong")
    assert res["probes"] == "strong" and res["full_emotion_wf1"] == strong[0]


def test_view_keep_over_three_attributes():
    order = ("emotion", "gender", "identity")
    assert relevant_boundaries(("emotion",), order) == [1]
    assert relevant_boundaries(("gender",), order) == [1, 2]
    assert relevant_boundaries(("emotion", "identity"), order) == [1, 2]
    assert relevant_boundaries(("gender", "identity"), order) == [1]
    np.testing.assert_array_equal(view_keep(8, ("gender",), order, (2, 5)), [0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(view_keep(8, ("emotion", "identity"), order, (2, 5)), [1, 1, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(view_keep(8, ("identity",), order, (6,)), [0] * 6 + [1, 1])
    with pytest.raises(ValueError, match="2 boundar"):
        view_keep(8, ("gender",), order, (2,))
    with pytest.raises(ValueError, match="overlapping bands"):
        view_keep(8, ("gender",), order, (5, 2))
    assert len(candidate_positions(64, 32, 1)) == 31
    pairs = candidate_positions(64, 32, 2)
    assert 0 < len(pairs) <= 64 and all(a < b for a, b in pairs)


def test_choose_views_finds_a_middle_band():
    """Latent: nodes 0-5 emotion, 6-11 gender, 12-17 speaker identity (gender fixed per speaker). The
    gender-only view must keep the middle band and hide emotion and speakers."""
    from tfvae.masking import choose_views

    def draw(n_spk, rng, offset=0):
        z_e, e, s = _aligned_latent(n_spk, 16, rng)
        g = (s % 2)
        gz = np.where(g[:, None] == 1, 2.0, -2.0) + rng.normal(size=(len(s), 6)) * 0.5
        z = np.concatenate([z_e[:, :6], gz, z_e[:, 8:14]], axis=1)
        return z, e, g, s + offset

    rng = np.random.default_rng(3)
    z_tr, e_tr, g_tr, s_tr = draw(20, rng)
    z_va, e_va, g_va, s_va = draw(8, rng, 100)
    res = choose_views(z_tr, {"emotion": e_tr, "gender": g_tr}, s_tr, z_va, {"emotion": e_va, "gender": g_va}, s_va,
                       ("emotion", "gender", "identity"), {"keep_gender": ("gender",), "keep_emotion": ("emotion",)},
                       groups=6, tolerance=0.02)
    assert res["views"]["keep_gender"]["positions"] == [6, 12], res["tables"]["keep_gender"]
    assert res["views"]["keep_emotion"]["positions"] == [6]
    v = res["views"]["keep_gender"]["validation"]
    assert v["gender"] > 0.95 and v["speaker"] > 0.3 and v["emotion"] < 0.45
    np.testing.assert_array_equal(res["views"]["keep_gender"]["keep"], [0] * 6 + [1] * 6 + [0] * 6)
