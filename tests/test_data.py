import numpy as np
import pytest

from tfvae.data import Corpus, DataError, Split, make_dataset, validate_corpus


def _split(n, d, speakers, rng, offset=0):
    return Split(features=rng.normal(size=(n, d)).astype(np.float32), emotion=np.arange(n) % 3,
                 speaker=np.array([speakers[i % len(speakers)] for i in range(n)]),
                 utterance_id=np.array([f"utt{offset + i:03d}" for i in range(n)]))


def _corpus(d=6):
    rng = np.random.default_rng(0)
    return Corpus(name="toy", feature_set="IS10", emotion_names=["a", "b", "c"], splits={
        "train": _split(12, d, ["s1", "s2", "s3"], rng), "validation": _split(6, d, ["s4"], rng, 100),
        "test": _split(6, d, ["s5", "s1"], rng, 200)})


def test_validate_accepts_good_data_and_labels_unseen_speakers():
    c = _corpus()
    validate_corpus(c, expected_dim=6)
    assert c.speaker_index() == {"s1": 0, "s2": 1, "s3": 2}
    np.testing.assert_array_equal(c.speaker_labels("test"), [-1, 0, -1, 0, -1, 0])


def test_nan_and_inf_features_are_reported_with_utterance_ids():
    c = _corpus()
    c.splits["train"].features[3, 2] = np.nan
    c.splits["test"].features[1, 0] = np.inf
    with pytest.raises(DataError) as e:
        validate_corpus(c, expected_dim=6)
    msg = str(e.value)
    assert "split 'train': 1 utterance(s) have NaN or infinite features: utt003" in msg
    assert "split 'test': 1 utterance(s) have NaN or infinite features: utt201" in msg


def test_wrong_dimension_and_empty_split_are_reported_together():
    c = _corpus(d=5)
    c.splits["validation"] = Split(np.zeros((0, 5), np.float32), np.zeros(0, int), np.zeros(0, str), np.zeros(0, str))
    with pytest.raises(DataError) as e:
        validate_corpus(c, expected_dim=1582)
    msg = str(e.value)
    assert "split 'train': features have dimension 5 but feature set IS10 expects 1582" in msg
    assert "split 'validation' of toy is empty" in msg


def test_single_speaker_training_split_is_rejected():
    c = _corpus()
    c.splits["train"].speaker[:] = "s1"
    with pytest.raises(DataError, match="fewer than 2 speakers"):
        validate_corpus(c)


def test_tf_data_pipeline_batches_and_labels():
    c = _corpus()
    batches = list(make_dataset(c, "test", batch_size=4).as_numpy_iterator())
    assert [b["features"].shape for b in batches] == [(4, 6), (2, 6)]
    np.testing.assert_array_equal(np.concatenate([b["speaker"] for b in batches]), c.speaker_labels("test"))
    np.testing.assert_array_equal(batches[0]["features"], c.splits["test"].features[:4])
    shuffled = np.concatenate([b["features"] for b in make_dataset(c, "train", 5, training=True, seed=1)])
    assert not np.array_equal(shuffled, c.splits["train"].features)
    np.testing.assert_allclose(np.sort(shuffled.sum(1)), np.sort(c.splits["train"].features.sum(1)), rtol=1e-6)


def test_demo_corpus_loads_with_speaker_disjoint_splits(small_corpus):
    c = small_corpus
    validate_corpus(c, expected_dim=1582)
    assert c.emotion_names == ["neutral", "angry", "sad", "happy", "disgust"]
    assert [len(c.splits[s]) for s in ("train", "validation", "test")] == [80, 20, 20]
    spk = {s: set(c.splits[s].speaker.tolist()) for s in c.splits}
    assert len(spk["train"]) == 8 and not (spk["train"] & spk["validation"]) and not (spk["train"] & spk["test"])
    assert len(c.feature_names) == 1582 and c.feature_names[0].startswith("pcm_loudness")
    assert c.info["synthetic"] is True
