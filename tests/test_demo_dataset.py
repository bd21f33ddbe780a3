"""The built-in demo corpus builder, tested with TFDS's own builder test case."""

import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfvae import synth
from tfvae.audio import from_int16
from tfvae.demo_corpus import (SPEAKERS_SEED, plan, render, render_audio, render_speaker_utterance, speaker_gender,
                               speaker_plan, speaker_utterance_emotion)
from tfvae_datasets.tfvae_demo import tfvae_demo_dataset_builder as demo

SPLITS = ("train", "validation", "test")


class TfvaeDemoTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = demo.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02_small", "audio16k_small"]
    SPLITS = {"train": 80, "validation": 20, "test": 20}
    EXAMPLE_DIR = tempfile.mkdtemp()  # generated in code: no dummy downloads
    SKIP_CHECKSUMS = True


class TfvaeDemoSpeakersTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = demo.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["speakers_small"]
    SPLITS = {"train": 128, "validation": 16, "test": 16}
    EXAMPLE_DIR = tempfile.mkdtemp()
    SKIP_CHECKSUMS = True


def test_plan_is_speaker_disjoint_and_sex_balanced():
    p = plan(48, 6)
    assert {s: len(v) for s, v in p.items()} == {"train": 960, "validation": 240, "test": 240}
    spk = {s: {u[1] for u in v} for s, v in p.items()}
    assert not (spk["train"] & spk["validation"]) and not (spk["train"] & spk["test"]) \
        and not (spk["validation"] & spk["test"])
    for s in spk.values():  # even index = female, odd = male
        assert sum(i % 2 for i in s) * 2 == len(s)
    ids = [u[0] for v in p.values() for u in v]
    assert len(ids) == len(set(ids))


def test_render_is_deterministic_real_audio_features():
    a = render(("eGeMAPSv02", 0, 5, "happy", 1))
    b = render(("eGeMAPSv02", 0, 5, "happy", 1))
    np.testing.assert_array_equal(a["features"], b["features"])
    assert a["features"].shape == (88,) and np.isfinite(a["features"]).all()
    assert a["speaker"] == "spk05" and 1.5 <= a["duration"] <= 3.0 and a["gender"] == "male"
    assert render(("eGeMAPSv02", 0, 6, "happy", 1))["gender"] == "female"
    assert not np.array_equal(render(("eGeMAPSv02", 0, 5, "happy", 2))["features"], a["features"])


def test_dataset_info_records_feature_names_and_class_counts():
    info = tfds.builder("tfvae_demo/is10", data_dir=tempfile.mkdtemp()).info
    assert len(info.metadata["feature_names"]) == 1582 and info.metadata["synthetic"] is True
    assert info.metadata["class_counts"]["train"] == {e: 192 for e in synth.EMOTIONS}
    assert info.features["emotion"].names == list(synth.EMOTIONS)
    assert info.features["gender"].names == ["female", "male", "unknown"] and str(info.version) == "1.2.0"
    assert info.metadata["gender_counts"] == {"train": {"female": 480, "male": 480, "unknown": 0},
                                              "validation": {"female": 120, "male": 120, "unknown": 0},
                                              "test": {"female": 120, "male": 120, "unknown": 0}}


def test_gender_is_the_voice_sex_and_audible_in_pitch():
    for seed in (0, SPEAKERS_SEED):
        for i in range(40):
            v = synth.make_voice(i, seed)
            assert v.sex == speaker_gender(i) == ("female" if i % 2 == 0 else "male")
            assert (160 <= v.f0_hz <= 260) if v.sex == "female" else (85 <= v.f0_hz <= 155)


@pytest.fixture(scope="module")
def demo_dir():
    return tempfile.mkdtemp()


def _all(b):
    return {s: list(tfds.as_numpy(b.as_dataset(split=s))) for s in SPLITS}


def test_audio16k_small_is_the_synthesized_audio(demo_dir):
    b = tfds.builder("tfvae_demo/audio16k_small", data_dir=demo_dir)
    b.download_and_prepare()
    assert b.info.version == "1.2.0" and b.info.supervised_keys == ("audio", "emotion")
    assert b.info.metadata["gender_counts"] == {"train": {"female": 40, "male": 40, "unknown": 0},
                                                "validation": {"female": 10, "male": 10, "unknown": 0},
                                                "test": {"female": 10, "male": 10, "unknown": 0}}
    assert b.info.features["audio"].sample_rate == 16000 and b.info.metadata["sample_rate"] == 16000
    ex = _all(b)
    assert {s: len({e["speaker"] for e in v}) for s, v in ex.items()} == {"train": 8, "validation": 2, "test": 2}
    by_id = {e["utterance_id"].decode(): e for v in ex.values() for e in v}
    e = by_id["spk05_happy_01"]
    ref = synth.synthesize(synth.make_voice(5, 0), "happy", 1, 0)
    assert e["audio"].dtype == np.int16 and e["audio"].shape == ref.shape
    assert np.max(np.abs(from_int16(e["audio"]) - ref)) <= 1 / 32768
    assert e["duration"] == pytest.approx(len(ref) / 16000) and e["speaker"] == b"spk05"
    for x in by_id.values():  # even speaker index: female
        expect = "female" if int(x["speaker"][3:]) % 2 == 0 else "male"
        assert b.info.features["gender"].int2str(x["gender"]) == expect
    assert all(1.5 <= e["duration"] <= 3.0 for e in by_id.values())
    assert render_audio((0, 5, "happy", 1))["audio"].tolist() == e["audio"].tolist()


def test_speakers_small_splits_durations_and_voices(demo_dir):
    b = tfds.builder("tfvae_demo/speakers_small", data_dir=demo_dir)
    b.download_and_prepare()
    meta = b.info.metadata
    assert b.info.supervised_keys == ("audio", "speaker") and meta["seed"] == SPEAKERS_SEED == 1
    assert meta["speakers_per_split"] == {"train": 32, "validation": 4, "test": 4}
    assert meta["split_speaker_indices"] == {"train": [0, 31], "validation": [32, 35], "test": [36, 39]}
    ex = _all(b)
    spk = {s: {e["speaker"].decode() for e in v} for s, v in ex.items()}
    assert {s: len(v) for s, v in spk.items()} == {"train": 32, "validation": 4, "test": 4}
    assert not (spk["train"] & spk["validation"]) and not (spk["train"] & spk["test"]) \
        and not (spk["validation"] & spk["test"])
    assert spk["test"] == {"spk0036_s1", "spk0037_s1", "spk0038_s1", "spk0039_s1"}
    per_speaker = {}
    for v in ex.values():
        for e in v:
            per_speaker[e["speaker"]] = per_speaker.get(e["speaker"], 0) + 1
            assert 3.1 <= e["duration"] <= 6.3 and e["audio"].shape == (round(e["duration"] * 16000),)
    assert set(per_speaker.values()) == {4}
    assert meta["gender_counts"]["train"] == {"female": 64, "male": 64, "unknown": 0}
    genders = [b.info.features["gender"].int2str(e["gender"]) for e in ex["validation"]]
    assert genders == [speaker_gender(int(e["speaker"][3:7])) for e in ex["validation"]]
    assert genders.count("female") == genders.count("male") == 8
    durations = [e["duration"] for v in ex.values() for e in v]
    assert 4.0 < np.mean(durations) < 5.5
    counts = {s: sum(c.values()) for s, c in meta["class_counts"].items()}
    assert counts == {"train": 128, "validation": 16, "test": 16}
    # the utterance is two phrases of its drawn emotion with a quiet pause between them
    e = next(e for e in ex["test"] if e["utterance_id"] == b"spk0038_s1_02")
    emotion = speaker_utterance_emotion(1, 38, 2)
    assert b.info.features["emotion"].int2str(e["emotion"]) == emotion
    voice = synth.make_voice(38, 1)
    a, c = synth.synthesize(voice, emotion, 4, 1), synth.synthesize(voice, emotion, 5, 1)
    x = from_int16(e["audio"])
    pause = len(x) - len(a) - len(c)
    assert 0.1 * 16000 <= pause <= 0.3 * 16000
    assert np.max(np.abs(x[:len(a)] - a)) <= 1 / 32768 and np.max(np.abs(x[-len(c):] - c)) <= 1 / 32768
    assert np.max(np.abs(x[len(a):len(a) + pause])) < 0.01
    # other voices than the emotion demo's speakers of the same index
    assert synth.make_voice(5, SPEAKERS_SEED).f0_hz != synth.make_voice(5, 0).f0_hz


def test_speaker_plan_and_speakers1k_info():
    p = speaker_plan(1000, 12, 12, 6)
    assert {s: len(v) for s, v in p.items()} == {"train": 6000, "validation": 72, "test": 72}
    idx = {s: sorted({u[1] for u in v}) for s, v in p.items()}
    assert idx["train"] == list(range(1000)) and idx["validation"] == list(range(1000, 1012)) \
        and idx["test"] == list(range(1012, 1024))
    for v in idx.values():  # half female (even), half male (odd)
        assert sum(i % 2 for i in v) * 2 == len(v)
    assert len({u[0] for v in p.values() for u in v}) == 6144
    assert speaker_plan(1000, 12, 12, 6) == p  # deterministic
    with pytest.raises(ValueError, match="even number"):
        speaker_plan(10, 3, 2, 2)
    info = tfds.builder("tfvae_demo/speakers1k", data_dir=tempfile.mkdtemp()).info
    assert info.metadata["speakers_per_split"] == {"train": 1000, "validation": 12, "test": 12}
    assert {s: sum(c.values()) for s, c in info.metadata["class_counts"].items()} == \
        {"train": 6000, "validation": 72, "test": 72}
    assert info.metadata["synthetic"] is True and info.metadata["corpus"] == "speakers"
    out = render_speaker_utterance((1, 1013, 5))
    assert out["speaker"] == "spk1013_s1" and 3.1 <= out["duration"] <= 6.3
    assert out["emotion"] == speaker_utterance_emotion(1, 1013, 5) and out["gender"] == "male"
    assert info.metadata["gender_counts"]["train"] == {"female": 3000, "male": 3000, "unknown": 0}
