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


def test_unequal_folds_cover_every_speaker_once():
    spk = [f"s{i}" for i in range(10)]
    folds = speaker_folds(spk, k=3, n_validation=2, seed=0)
    assert sorted(len(f.test) for f in folds) == [3, 3, 4]
    assert sorted(a for f in folds for a in f.test) == sorted(spk)
    assert all(len(f.validation) == 2 and len(f.train) >= 4 for f in folds)


def test_tiny_corpus_gets_two_speakers_in_every_part():
    folds = speaker_folds([f"s{i}" for i in range(6)], k=3)
    assert [(len(f.train), len(f.validation), len(f.test)) for f in folds] == [(2, 2, 2)] * 3


def test_bad_fold_requests_say_how_many_speakers_are_needed():
    with pytest.raises(ValueError, match=r"5 speakers cannot be split into k=3 folds .* at least 6 speakers"):
        speaker_folds([f"s{i}" for i in range(5)], k=3)
    with pytest.raises(ValueError, match=r"24 speakers cannot be split into k=6 folds with 20 validation"):
        speaker_folds(ACTORS, k=6, n_validation=20)
    with pytest.raises(ValueError, match="at least 2 folds"):
        speaker_folds(ACTORS, k=1)
    with pytest.raises(ValueError, match="missing from the given order"):
        speaker_folds(ACTORS + ["X"], k=5, n_validation=2, order=ACTORS)
