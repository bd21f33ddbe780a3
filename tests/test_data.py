import numpy as np
import pytest

from tfvae.data import Corpus, DataError, Split, concat_splits, label_remap, validate_corpus
from tfvae.pipeline import make_dataset, split_pipeline


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


def _gender_corpus():
    c = _corpus()
    c.label_names = {"gender": ["female", "male"]}
    for name, sp in c.splits.items():
        sp.labels["gender"] = np.array([0, 1, -1] * (len(sp) // 3))
    return c


def test_positional_split_has_no_labels_and_corpus_labels_name_what_is_missing():
    c = _corpus()
    assert c.splits["train"].labels == {} and c.label_names == {}
    np.testing.assert_array_equal(c.labels("test", "emotion"), [0, 1, 2, 0, 1, 2])
    with pytest.raises(DataError, match="dataset toy has no label 'gender'; it has: emotion$"):
        c.labels("train", "gender")
    g = _gender_corpus()
    np.testing.assert_array_equal(g.labels("train", "gender"), [0, 1, -1] * 4)
    assert g.labels("train", "gender").dtype == np.int64 and g.class_names("gender") == ["female", "male"]
    assert g.available_labels() == ["emotion", "gender"]
    np.testing.assert_array_equal(label_remap(["female", "male", "unknown"]), [0, 1, -1])
    np.testing.assert_array_equal(label_remap(["a", "unknown", "b"]), [0, -1, 1])


def test_validate_checks_the_labels_of_class_attributes():
    from tfvae.attributes import parse_attributes

    validate_corpus(_gender_corpus(), attributes=["gender"])
    validate_corpus(_gender_corpus(), attributes=parse_attributes("emotion,gender,identity"))
    with pytest.raises(DataError) as e:
        validate_corpus(_corpus(), attributes=parse_attributes("emotion,gender,identity"))
    assert "attribute 'gender' needs label 'gender', which dataset toy does not have; it has: emotion" in str(e.value)
    g = _gender_corpus()
    g.splits["train"].labels["gender"][:] = np.where(g.splits["train"].labels["gender"] == 1, 0, -1)
    g.splits["test"].labels["gender"][0] = 2
    with pytest.raises(DataError) as e:
        validate_corpus(g, attributes=["gender"])
    msg = str(e.value)
    assert "split 'train' has a single gender class (female); attribute 'gender' needs at least 2" in msg
    assert "split 'test': 1 gender label(s) outside -1..1" in msg
    g.splits["train"].labels["gender"][:] = -1
    with pytest.raises(DataError, match="split 'train' has no known gender labels"):
        validate_corpus(g, attributes=["gender"])


def test_pipelines_carry_extra_labels_also_in_padding_batches():
    g = _gender_corpus()
    batches = list(make_dataset(g, "train", 5, labels=["gender"]).as_numpy_iterator())
    assert [sorted(b) for b in batches] == [["emotion", "features", "gender", "speaker"]] * 3
    np.testing.assert_array_equal(np.concatenate([b["gender"] for b in batches]), [0, 1, -1] * 4)
    assert batches[0]["gender"].dtype == np.int32
    pipe = split_pipeline(g, "test", labels=("gender", "emotion"))
    padded = list(pipe.dataset(4, seed=2, batches_per_epoch=3).as_numpy_iterator())
    assert [len(b["gender"]) for b in padded] == [4, 2, 0] and padded[2]["gender"].dtype == np.int32
    got = {(float(x[0]), int(k)) for b in padded for x, k in zip(b["features"], b["gender"])}
    assert got == {(float(x[0]), int(k)) for x, k in zip(g.splits["test"].features, g.labels("test", "gender"))}
    assert "gender" not in next(iter(make_dataset(g, "test", 4)))
    with pytest.raises(DataError, match="has no label 'age'"):
        split_pipeline(g, "train", labels=["age"])


def test_select_and_concat_keep_the_labels():
    g = _gender_corpus()
    tr = g.splits["train"]
    mask = np.isin(np.arange(12), [1, 3, 5, 7])
    sub = tr.select(mask)
    assert len(sub) == 4 and sub.labels["gender"].tolist() == [1, 0, -1, 1]
    assert sub.emotion.tolist() == [1, 0, 2, 1] and sub.speaker.tolist() == ["s2", "s1", "s3", "s2"]
    np.testing.assert_array_equal(sub.features, tr.features[mask])
    picked = tr.select([5, 0])
    assert picked.utterance_id.tolist() == ["utt005", "utt000"] and picked.labels["gender"].tolist() == [-1, 0]
    both = concat_splits([g.splits["train"], g.splits["test"]])
    assert len(both) == 18 and both.labels["gender"].tolist() == [0, 1, -1] * 6
    assert concat_splits([g.splits["train"], _corpus().splits["test"]]).labels == {}


def test_demo_corpus_loads_with_speaker_disjoint_splits(small_corpus):
    c = small_corpus
    validate_corpus(c, expected_dim=1582)
    assert c.emotion_names == ["neutral", "angry", "sad", "happy", "disgust"]
    assert [len(c.splits[s]) for s in ("train", "validation", "test")] == [80, 20, 20]
    spk = {s: set(c.splits[s].speaker.tolist()) for s in c.splits}
    assert len(spk["train"]) == 8 and not (spk["train"] & spk["validation"]) and not (spk["train"] & spk["test"])
    assert len(c.feature_names) == 1582 and c.feature_names[0].startswith("pcm_loudness")
    assert c.info["synthetic"] is True
    # the voices' gender (even speaker index female): 4 female and 4 male training speakers
    assert c.label_names == {"gender": ["female", "male"]}
    for name, sp in c.splits.items():
        expect = [0 if int(s[3:]) % 2 == 0 else 1 for s in sp.speaker.tolist()]
        np.testing.assert_array_equal(c.labels(name, "gender"), expect)
    assert np.bincount(c.labels("train", "gender")).tolist() == [40, 40]
    validate_corpus(c, attributes=["gender"])
