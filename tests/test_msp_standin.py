"""msp_standin: the SYNTHETIC MSP-Podcast-shaped benchmark corpus (is10_2k built into a tmp data_dir)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfvae_datasets  # noqa: F401
from tfvae_datasets.msp_podcast.msp_podcast_dataset_builder import EMOTIONS
from tfvae_datasets.msp_standin import msp_standin_dataset_builder as standin

SPLITS = ("train", "validation", "test")
COUNTS = {"train": 1250, "validation": 295, "test": 455}  # 62.5 / 14.7 / 22.8 % of 2,000


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("standin"))
    b = tfds.builder("msp_standin/is10_2k", data_dir=data_dir)
    b.download_and_prepare()
    arrays = {s: tfds.as_numpy(b.as_dataset(split=s, batch_size=-1)) for s in SPLITS}
    return data_dir, b, arrays


def test_split_counts_schema_and_metadata(built):
    _, b, arrays = built
    assert {s: b.info.splits[s].num_examples for s in SPLITS} == COUNTS
    assert standin.split_sizes(150_000) == {"train": 93_750, "validation": 22_098, "test": 34_152}
    assert standin.EMOTIONS == EMOTIONS and tuple(standin.EMOTION_SHARES) == EMOTIONS
    assert abs(sum(standin.EMOTION_SHARES.values()) - 1) < 1e-9
    assert b.info.features["emotion"].names == list(EMOTIONS)
    assert b.info.features["gender"].names == ["female", "male"]
    meta = b.info.metadata
    assert meta["synthetic"] is True and meta["feature_set"] == "IS10" and len(meta["feature_names"]) == 1582
    assert meta["utterances_per_split"] == COUNTS
    assert meta["speakers_per_split"] == {s: len(set(arrays[s]["speaker"].tolist())) for s in SPLITS}
    assert meta["generation"]["size"] == 2000
    for s in SPLITS:
        x = arrays[s]["features"]
        assert x.shape == (COUNTS[s], 1582) and x.dtype == np.float32 and np.isfinite(x).all()
        d = arrays[s]["duration"]
        assert d.dtype == np.float32 and d.min() >= 2.0 and d.max() <= 12.0
        assert len(set(arrays[s]["utterance_id"].tolist())) == COUNTS[s]
        counts = np.bincount(arrays[s]["emotion"], minlength=5)
        assert counts.tolist() == [meta["class_counts"][s][e] for e in EMOTIONS]
    emo = np.bincount(np.concatenate([arrays[s]["emotion"] for s in SPLITS]), minlength=5)
    assert emo.argmax() == EMOTIONS.index("neutral") and emo[EMOTIONS.index("happy")] == np.sort(emo)[-2]


def test_speakers_disjoint_tail_and_gender_balance(built):
    _, _, arrays = built
    spk = {s: set(arrays[s]["speaker"].tolist()) for s in SPLITS}
    assert not (spk["train"] & spk["validation"] or spk["train"] & spk["test"] or spk["validation"] & spk["test"])
    for s in SPLITS:
        names, n = np.unique(arrays[s]["speaker"], return_counts=True)
        assert n.min() >= 2 and 8 <= n.mean() <= 12  # about 10 per speaker, min 2
        gender = {}
        for name, g in zip(arrays[s]["speaker"].tolist(), arrays[s]["gender"].tolist()):
            assert gender.setdefault(name, g) == g  # a speaker has one gender
        female = sum(g == 0 for g in gender.values())
        assert abs(2 * female - len(gender)) <= 1
        assert 0.35 <= float(np.mean(arrays[s]["gender"])) <= 0.65  # utterances too, within tolerance
    n = np.unique(arrays["train"]["speaker"], return_counts=True)[1]
    assert n.max() >= 5 * n.mean()  # long tail


def test_deterministic(built, tmp_path):
    _, b, arrays = built
    again = tfds.builder("msp_standin/is10_2k", data_dir=str(tmp_path))
    again.download_and_prepare()
    first = next(iter(tfds.as_numpy(again.as_dataset(split="train", batch_size=8))))
    for k in ("features", "emotion", "speaker", "utterance_id", "duration", "gender"):
        np.testing.assert_array_equal(first[k], arrays["train"][k][:8])
    # and generation alone: a speaker's features are a function of (seed, speaker index, gender, emotions)
    e = np.array([0, 3, 1])
    np.testing.assert_array_equal(standin.speaker_features(0, 7, 1, e), standin.speaker_features(0, 7, 1, e))
    assert not np.array_equal(standin.speaker_features(0, 7, 1, e), standin.speaker_features(0, 8, 1, e))


def test_load_corpus(built):
    from tfvae.data import load_corpus, validate_corpus

    data_dir, b, arrays = built
    corpus = load_corpus("msp_standin/is10_2k", "IS10", data_dir=data_dir)
    validate_corpus(corpus, expected_dim=1582, attributes=["gender"])
    # its gender ClassLabel has no "unknown" class: read as is
    assert corpus.label_names == {"gender": ["female", "male"]}
    for s in SPLITS:
        g = corpus.labels(s, "gender")
        assert g.tolist() == arrays[s]["gender"].tolist() and set(g.tolist()) == {0, 1}
        counts = b.info.metadata["gender_counts"][s]["utterances"]
        assert np.bincount(g).tolist() == [counts["female"], counts["male"]]
    assert corpus.feature_set == "IS10" and corpus.emotion_names == list(EMOTIONS)
    assert {s: len(corpus.splits[s]) for s in SPLITS} == COUNTS and len(corpus.feature_names) == 1582
