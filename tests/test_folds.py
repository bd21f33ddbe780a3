import pytest

from tfvae.folds import speaker_folds

ACTORS = [f"Actor_{i:02d}" for i in range(1, 25)]


def test_ravdess_six_folds_of_four_actors():
    folds = speaker_folds(ACTORS, k=6, n_validation=4, order=ACTORS)
    assert len(folds) == 6
    assert folds[0].test == ("Actor_01", "Actor_02", "Actor_03", "Actor_04")
    assert folds[0].validation == ("Actor_05", "Actor_06", "Actor_07", "Actor_08")
    assert folds[5].validation == tuple(ACTORS[:4])
    tested = [a for f in folds for a in f.test]
    assert sorted(tested) == ACTORS  # every actor is tested exactly once
    for f in folds:
        t, v, tr = set(f.test), set(f.validation), set(f.train)
        assert not (t & v) and not (t & tr) and not (v & tr), "speaker-disjoint"
        assert len(tr) == 16 and t | v | tr == set(ACTORS)
        # odd actors are male, even female: each test fold is balanced
        assert sum(int(a[-2:]) % 2 for a in f.test) == 2


def test_seeded_shuffle_is_deterministic():
    spk = [f"s{i}" for i in range(10)]
    a = speaker_folds(spk, k=5, n_validation=2, seed=3)
    assert a == speaker_folds(spk, k=5, n_validation=2, seed=3)
    assert a != speaker_folds(spk, k=5, n_validation=2, seed=4)


def test_bad_fold_requests():
    with pytest.raises(ValueError, match="cannot be split into k=5"):
        speaker_folds(ACTORS, k=5, n_validation=2)
    with pytest.raises(ValueError, match="n_validation=20 must be in 1..16"):
        speaker_folds(ACTORS, k=6, n_validation=20)
    with pytest.raises(ValueError, match="missing from the given order"):
        speaker_folds(ACTORS + ["X"], k=5, n_validation=2, order=ACTORS)
