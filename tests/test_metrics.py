import numpy as np
import pytest

from tfvae.metrics import cosine_trials, eer


def test_eer_perfect_and_inverted_separation():
    labels = [1, 1, 1, 0, 0, 0]
    assert eer([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], labels) == pytest.approx(0.0)
    assert eer([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], labels) == pytest.approx(1.0)


def test_eer_all_tied_scores_is_half():
    assert eer([0.5] * 6, [1, 0, 1, 0, 1, 0]) == pytest.approx(0.5)


def test_eer_interpolates_between_bracketing_points():
    # targets 0.8, 0.4 ; non-targets 0.6, 0.2: at threshold 0.6 FNR=1/2, FPR=1/2 -> 0.5 exactly
    assert eer([0.8, 0.4, 0.6, 0.2], [1, 1, 0, 0]) == pytest.approx(0.5)
    # 4 targets, 4 non-targets, one target below one non-target: one error each side -> 0.25
    s = [0.9, 0.8, 0.7, 0.35, 0.4, 0.3, 0.2, 0.1]
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    assert eer(s, y) == pytest.approx(0.25)
    # unequal trial counts: targets 0.9, 0.5, 0.2; non-targets 0.6, 0.1. ROC points (FPR, FNR):
    # thr 0.6 -> (1/2, 2/3), thr 0.5 -> (1/2, 1/3); FNR - FPR goes 1/6 -> -1/6, so the crossing
    # is halfway: FPR = 1/2, FNR = 2/3 - 1/6 = 1/2.
    assert eer([0.9, 0.5, 0.2, 0.6, 0.1], [1, 1, 1, 0, 0]) == pytest.approx(0.5)
    # a crossing strictly between distinct points: targets 0.9, 0.3; non-targets 0.5, 0.1, 0.05, 0.02
    # (1/4, 1/2) at thr 0.5 -> (1/4, 0) at thr 0.3: d 1/4 -> -1/4, t = 1/2 -> EER = 1/4
    assert eer([0.9, 0.3, 0.5, 0.1, 0.05, 0.02], [1, 1, 0, 0, 0, 0]) == pytest.approx(0.25)


def test_eer_rejects_one_class_and_shape_mismatch():
    with pytest.raises(ValueError, match="both target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        eer([0.1, 0.2, 0.3], [1, 0])


def test_cosine_trials_all_pairs_and_sampling():
    e = np.array([[1, 0], [2, 0], [0, 1], [0, 3]], float)
    scores, labels = cosine_trials(e, ["a", "a", "b", "b"])
    assert len(scores) == 6
    assert labels.sum() == 2
    np.testing.assert_allclose(sorted(scores), [0, 0, 0, 0, 1, 1])
    s2, l2 = cosine_trials(np.random.default_rng(0).normal(size=(50, 3)), np.arange(50) % 5, max_trials=100)
    assert s2.shape == (100,) and l2.shape == (100,)


def test_min_dcf_hand_cases():
    from tfvae.metrics import min_dcf

    y = [1, 1, 0, 0, 0, 0]
    assert min_dcf([0.9, 0.8, 0.3, 0.2, 0.1, 0.0], y) == pytest.approx(0.0)  # perfect separation
    # inverted: best is a trivial decision; normalised cost 1 at p_target=0.01 (reject all)
    assert min_dcf([0.0, 0.1, 0.5, 0.6, 0.7, 0.8], y) == pytest.approx(1.0)
    # one target below all non-targets: reject-all costs 0.01; accepting above 0.5 misses 1/2
    # targets (0.005) with no false alarms -> 0.005 / 0.01 = 0.5
    assert min_dcf([0.9, 0.05, 0.4, 0.3, 0.2, 0.1], y) == pytest.approx(0.5)
    # at p_target = 0.5, one false alarm in 4 non-targets vs one miss in 2 targets: 0.125/0.5 = 0.25
    assert min_dcf([0.9, 0.6, 0.7, 0.3, 0.2, 0.1], y, p_target=0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both target"):
        min_dcf([0.1, 0.2], [0, 0])
