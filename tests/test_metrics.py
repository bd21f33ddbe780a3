import numpy as np
import pytest

from tfvae.metrics import cosine_trials, eer, miss_at_fa, min_dcf, sample_trials, sv_metrics, weighted_eer


def test_eer_perfect_and_inverted_separation():
    labels = [1, 1, 1, 0, 0, 0]
    assert eer([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], labels) == pytest.approx(0.0)
    assert eer([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], labels) == pytest.approx(1.0)


def test_eer_all_tied_scores_is_half():
    assert eer([0.5] * 6, [1, 0, 1, 0, 1, 0]) == pytest.approx(0.5)


def test_eer_interpolates_between_bracketing_points():
    # targets 0.8, 0.4 ; non-targets 0.6, 0.2: at threshold 0.6 FNR=1/2, FPR=1/2 -> 0.5 exactly
    assert eer([0.8, 0.4, 0.6, 0.2], [1, 1, 0, 0]) == pytest.approx(0.5)
    s = [0.9, 0.8, 0.7, 0.35, 0.4, 0.3, 0.2, 0.1]
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    assert eer(s, y) == pytest.approx(0.25)
    assert eer([0.9, 0.5, 0.2, 0.6, 0.1], [1, 1, 1, 0, 0]) == pytest.approx(0.5)
    assert eer([0.9, 0.3, 0.5, 0.1, 0.05, 0.02], [1, 1, 0, 0, 0, 0]) == pytest.approx(0.25)


def test_eer_rejects_one_class_and_shape_mismatch():
    with pytest.raises(ValueError, match="both target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        eer([0.1, 0.2, 0.3], [1, 0])


def test_min_dcf_hand_cases():
    y = [1, 1, 0, 0, 0, 0]
    assert min_dcf([0.9, 0.8, 0.3, 0.2, 0.1, 0.0], y) == pytest.approx(0.0)
    assert min_dcf([0.0, 0.1, 0.5, 0.6, 0.7, 0.8], y) == pytest.approx(1.0)
    assert min_dcf([0.9, 0.05, 0.4, 0.3, 0.2, 0.1], y) == pytest.approx(0.5)
    assert min_dcf([0.9, 0.6, 0.7, 0.3, 0.2, 0.1], y, p_target=0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both target"):
        min_dcf([0.1, 0.2], [0, 0])


def test_miss_rate_at_one_percent_false_alarms():
    # 200 non-targets 0..199/200, targets: 3 above every non-target, 1 in the middle
    non = np.arange(200) / 200
    s = np.r_[[2.0, 3.0, 4.0, 0.5], non]
    y = np.r_[[1, 1, 1, 1], np.zeros(200, int)]
    assert miss_at_fa(s, y, 0.01) == pytest.approx(0.25)  # 2 false alarms allowed: the 0.5 target is missed
    assert miss_at_fa(s, y, 0.6) == pytest.approx(0.0)
    m = sv_metrics(s, y)
    assert m["target_trials"] == 4 and m["nontarget_trials"] == 200 and m["miss_at_1pct_fa"] == pytest.approx(0.25)


def test_all_pairs_when_the_budget_allows():
    e = np.array([[1, 0], [2, 0], [0, 1], [0, 3]], float)
    scores, labels = cosine_trials(e, ["a", "a", "b", "b"])
    assert len(scores) == 6 and labels.sum() == 2
    np.testing.assert_allclose(sorted(scores), [0, 0, 0, 0, 1, 1], atol=1e-6)
    t = sample_trials(np.repeat(np.arange(5), 10))
    assert len(t) == 50 * 49 // 2 and t.label.sum() == 5 * 45
    pairs = {(min(a, b), max(a, b)) for a, b in zip(t.i, t.j)}
    assert len(pairs) == len(t) and all(a != b for a, b in pairs)


def test_sampled_trials_have_the_budget_correct_labels_and_are_seeded():
    spk = np.repeat(np.arange(40), 25)
    t = sample_trials(spk, max_target=500, max_nontarget=3000, seed=3)
    assert t.label.sum() == 500 and (1 - t.label).sum() == 3000
    np.testing.assert_array_equal(spk[t.i] == spk[t.j], t.label.astype(bool))
    assert (t.i != t.j).all()
    again = sample_trials(spk, max_target=500, max_nontarget=3000, seed=3)
    np.testing.assert_array_equal(t.i, again.i)
    assert not np.array_equal(t.i, sample_trials(spk, 500, 3000, seed=4).i)
    with pytest.raises(ValueError, match="need >= 2 speakers"):
        sample_trials(["a", "a", "a"])


def test_trial_memory_is_linear_in_utterances():
    """100k utterances have 5e9 pairs; the default budget keeps trials and memory bounded."""
    import tracemalloc

    spk = np.repeat(np.arange(1000), 100)
    tracemalloc.start()
    t = sample_trials(spk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert t.label.sum() == 300_000 and len(t) == 1_300_000
    assert peak < 200 * 2**20, peak  # all pairs would need > 40 GB of indices


def test_weighted_eer_with_unit_weights_is_the_eer():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    s = rng.normal(size=500) + y
    o = np.argsort(-s)
    w = np.ones((2, 500))
    w[1, y[o]] = 2.0  # doubling every target trial does not change the rates
    np.testing.assert_allclose(weighted_eer(s[o], y[o], w), eer(s, y))
