"""RAVDESS builder: TFDS test case on synthetic dummy files, bad input, and the real corpus."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from tfvae import synth
from tfvae.labelled_audio import BadItemsError
from tfvae_datasets.ravdess import ravdess_dataset_builder as ravdess

DUMMY = Path(ravdess.__file__).parent / "dummy_data"
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess"


class RavdessTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = ravdess.Builder
    # openSMILE functionals, 16 kHz waveforms, functionals with speed-perturbed copies
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02", "audio16k", "egemapsv02_sp"]
    SPLITS = {"train": 4, "validation": 2, "test": 2}
    EXAMPLE_DIR = str(DUMMY)
    SKIP_CHECKSUMS = True


def _build(manual_dir, data_dir, config="egemapsv02", **kwargs):
    b = tfds.builder(f"ravdess/{config}", data_dir=str(data_dir), **kwargs)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return b


def test_dummy_build_metadata_and_examples(tmp_path):
    b = _build(DUMMY, tmp_path)
    meta = b.info.metadata
    assert meta["ignored"] == {"song_files": 1, "non_audio_files": 0}
    assert meta["class_counts"]["train"] == {"angry": 1, "happy": 1, "neutral": 1, "sad": 1}
    assert meta["speakers_per_split"] == {"train": 2, "validation": 1, "test": 1}
    assert meta["skipped"] == {"count": 0, "by_reason": {}}
    assert len(meta["feature_names"]) == 88 and meta["feature_set"] == "eGeMAPSv02"
    assert str(b.info.version) == "1.2.0" and b.info.features["gender"].names == ["female", "male", "unknown"]
    # Actor_01, 17, 21 male (odd), Actor_02 female (even)
    assert meta["gender_counts"] == {"train": {"female": 2, "male": 2, "unknown": 0},
                                     "validation": {"female": 0, "male": 2, "unknown": 0},
                                     "test": {"female": 0, "male": 2, "unknown": 0}}
    genders = {e["utterance_id"].decode(): b.info.features["gender"].int2str(e["gender"])
               for e in tfds.as_numpy(b.as_dataset(split="train"))}
    assert genders == {"03-01-01-01-01-01-01": "male", "03-01-05-01-02-01-01": "male",
                       "03-01-04-01-01-01-02": "female", "03-01-03-01-02-01-02": "female"}
    ex = {e["utterance_id"].decode(): e for e in tfds.as_numpy(b.as_dataset(split="validation"))}
    e = ex["03-01-08-01-02-01-17"]
    assert e["speaker"] == b"Actor_17" and b.info.features["emotion"].int2str(e["emotion"]) == "surprised"
    assert b.info.features["gender"].int2str(e["gender"]) == "male"
    assert e["features"].shape == (88,) and np.isfinite(e["features"]).all()
    assert 1.5 < e["duration"] < 1.7


def test_audio16k_waveforms(tmp_path):
    b = _build(DUMMY, tmp_path, "audio16k")
    assert b.info.features["audio"].sample_rate == 16000 and b.info.features["audio"].np_dtype == np.int16
    meta = b.info.metadata
    assert meta["feature_set"] == "audio16k" and meta["sample_rate"] == 16000 and "feature_names" not in meta
    assert meta["class_counts"]["train"] == {"angry": 1, "happy": 1, "neutral": 1, "sad": 1}
    assert meta["ignored"] == {"song_files": 1, "non_audio_files": 0}
    ex = {e["utterance_id"].decode(): e for s in ("train", "validation", "test")
          for e in tfds.as_numpy(b.as_dataset(split=s))}
    assert len(ex) == 8
    for uid, e in ex.items():  # the dummy FLACs are 16 kHz PCM_16: stored sample for sample
        actor = int(uid[-2:])
        x, rate = sf.read(DUMMY / f"Actor_{actor:02d}" / f"{uid}.flac", dtype="int16")
        assert rate == 16000 and e["audio"].dtype == np.int16
        np.testing.assert_array_equal(e["audio"], x)
        assert e["duration"] == pytest.approx(len(x) / 16000)
        assert e["speaker"].decode() == f"Actor_{actor:02d}"
        assert b.info.features["gender"].int2str(e["gender"]) == ravdess.gender_of_actor(actor)
    assert meta["gender_counts"]["train"] == {"female": 2, "male": 2, "unknown": 0}
    # a 48 kHz WAV (as RAVDESS ships) of 0.5 s becomes 8000 samples at 16 kHz; a silent one is a bad item
    d = tmp_path / "r48"
    (d / "Actor_03").mkdir(parents=True)
    (d / "Actor_21").mkdir()
    (d / "Actor_17").mkdir()
    from tfvae.audio import resample

    x = synth.synthesize(synth.make_voice(3), "angry", 0)
    sf.write(d / "Actor_03" / "03-01-05-01-01-01-03.wav", resample(x, 16000, 48000)[:24000], 48000)
    sf.write(d / "Actor_17" / "03-01-04-01-01-01-17.wav", resample(x, 16000, 48000)[:36000], 48000)
    sf.write(d / "Actor_21" / "03-01-01-01-01-01-21.wav", x[:16000], 16000)
    sf.write(d / "Actor_21" / "03-01-02-01-01-01-21.wav", np.zeros(48000, np.float32), 48000)  # silent
    with pytest.raises(BadItemsError) as e:
        _build(d, tmp_path / "t1", "audio16k")
    assert str(e.value).startswith("1 bad item(s)")
    assert "03-01-02-01-01-01-21 (" in str(e.value) and "silent signal (peak amplitude below 0.0001)" in str(e.value)
    b = _build(d, tmp_path / "t2", "audio16k", skip_bad_items=True)
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
        {"train": 1, "validation": 1, "test": 1}
    assert b.info.metadata["skipped"]["count"] == 1
    (e,) = tfds.as_numpy(b.as_dataset(split="train"))
    assert e["audio"].shape == (8000,) and e["duration"] == pytest.approx(0.5)
    (e,) = tfds.as_numpy(b.as_dataset(split="validation"))
    assert e["audio"].shape == (12000,)


@pytest.fixture
def messy_dir(tmp_path):
    d = tmp_path / "ravdess"
    shutil.copytree(DUMMY, d)
    a2 = d / "Actor_02"
    (a2 / "notes.txt").write_text("not audio")
    sf.write(a2 / "take7.wav", synth.synthesize(synth.make_voice(2), "sad", 3), 16000)  # bad name
    (a2 / "03-01-06-01-01-02-02.flac").write_bytes(os.urandom(3000))  # corrupt
    sf.write(a2 / "03-01-06-01-02-02-02.wav", np.zeros(32000, np.float32), 16000)  # silent
    sf.write(a2 / "03-01-07-01-01-02-05.wav", synth.synthesize(synth.make_voice(5), "disgust", 1), 16000)  # wrong folder
    sf.write(a2 / "03-01-09-01-02-02-02.wav", synth.synthesize(synth.make_voice(2), "happy", 4), 16000)  # emotion 09
    return d


def test_bad_items_stop_the_build_with_one_report(messy_dir, tmp_path):
    with pytest.raises(BadItemsError) as e:
        _build(messy_dir, tmp_path / "tfds")
    msg = str(e.value)
    assert msg.startswith("5 bad item(s); none were skipped")
    for expect in ["take7 (", "file name does not follow 03-01-EE-II-SS-RR-AA",
                   "03-01-06-01-01-02-02 (", "cannot read audio",
                   "03-01-06-01-02-02-02 (", "silent signal",
                   "03-01-07-01-01-02-05 (", "actor 05 in the file name but the file is in Actor_02",
                   "03-01-09-01-02-02-02 (", "unknown emotion label 'code 09'"]:
        assert expect in msg, expect
    report = json.loads((tmp_path / "tfds" / "ravdess" / "egemapsv02" / "bad_items-1.2.0.json").read_text())
    assert report["count"] == 5 and len(report["items"]) == 5


def test_skip_bad_items_keeps_the_rest_and_writes_the_list(messy_dir, tmp_path, capsys):
    b = _build(messy_dir, tmp_path / "tfds", skip_bad_items=True)
    assert b.info.splits["train"].num_examples == 4  # only the good dummy files
    assert b.info.metadata["skipped"]["count"] == 5
    assert b.info.metadata["ignored"] == {"song_files": 1, "non_audio_files": 1}
    report = json.loads((Path(b.data_path) / "bad_items.json").read_text())
    assert sorted(i["utterance_id"] for i in report["items"]) == sorted(
        ["take7", "03-01-06-01-01-02-02", "03-01-06-01-02-02-02", "03-01-07-01-01-02-05", "03-01-09-01-02-02-02"])
    assert "skipped 5 bad item(s)" in capsys.readouterr().out


def test_gender_of_actor_follows_the_ravdess_readme():
    assert [ravdess.gender_of_actor(a) for a in (1, 2, 23, 24)] == ["male", "female", "male", "female"]
    for split, actors in (("train", ravdess.TRAIN_ACTORS), ("validation", ravdess.VALIDATION_ACTORS),
                          ("test", ravdess.TEST_ACTORS)):
        assert sum(ravdess.gender_of_actor(a) == "female" for a in actors) * 2 == len(actors), split


def test_missing_or_wrong_manual_dir_explains_what_to_download(tmp_path):
    with pytest.raises(AssertionError) as e:  # TFDS's own check, with our instructions
        _build(tmp_path / "nowhere", tmp_path / "tfds")
    assert "does not exist or is empty" in str(e.value) and "Audio_Speech_Actors_01-24.zip" in str(e.value)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "Audio_Speech_Actors_01-24.zip").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError) as e:
        _build(wrong, tmp_path / "tfds")
    assert f"No RAVDESS audio found in manual_dir={wrong}: expected folders Actor_01 ... Actor_24" in str(e.value)
    assert "unzip it" in str(e.value)


LOAD_ELSEWHERE = r'''
import sys, numpy as np, tensorflow_datasets as tfds
b = tfds.builder_from_directory(sys.argv[1])
x = np.stack([e["features"] for e in tfds.as_numpy(b.as_dataset(split="train"))])
print("N", len(x), "D", x.shape[1], "EMO", ",".join(b.info.features["emotion"].names))
print("TFVAE_IMPORTED", any(m.startswith("tfvae") for m in sys.modules))
'''


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/ravdess is not present")
def test_real_ravdess_subset_and_loading_from_another_process(tmp_path):
    # four actors (train 1-2, validation 17, test 21), linked, not copied
    subset = tmp_path / "subset"
    subset.mkdir()
    for a in (1, 2, 17, 21):
        (subset / f"Actor_{a:02d}").symlink_to(REAL / f"Actor_{a:02d}")
    b = _build(subset, tmp_path / "tfds")
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
        {"train": 120, "validation": 60, "test": 60}
    counts = b.info.metadata["class_counts"]["train"]
    assert counts["neutral"] == 8 and all(counts[e] == 16 for e in ravdess.EMOTIONS if e != "neutral")
    assert b.info.metadata["gender_counts"] == {"train": {"female": 60, "male": 60, "unknown": 0},
                                                "validation": {"female": 0, "male": 60, "unknown": 0},
                                                "test": {"female": 0, "male": 60, "unknown": 0}}
    durations = [e["duration"] for e in tfds.as_numpy(b.as_dataset(split="test"))]
    assert 2.5 < float(np.mean(durations)) < 4.5
    r = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, str(b.data_path)], capture_output=True,
                       text=True, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "N 120 D 88 EMO neutral,calm,happy,sad,angry,fearful,disgust,surprised" in r.stdout
    assert "TFVAE_IMPORTED False" in r.stdout
