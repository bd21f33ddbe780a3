"""MSP-Podcast builder: TFDS test case on a synthetic release folder, drop counts, bad input."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfvae.labelled_audio import BadItemsError
from tfvae_datasets.msp_podcast import msp_podcast_dataset_builder as msp

DUMMY = Path(msp.__file__).parent / "dummy_data"
HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"


class MspPodcastTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = msp.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02"]
    SPLITS = {"train": 5, "validation": 2, "test": 3}
    EXAMPLE_DIR = str(DUMMY)
    SKIP_CHECKSUMS = True


def _build(manual_dir, data_dir, **kwargs):
    b = tfds.builder("msp_podcast/egemapsv02", data_dir=str(data_dir), **kwargs)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return b


def _rows(root):
    with open(Path(root) / "Labels" / "labels_consensus.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(root, rows, header=HEADER.split(",")):
    with open(Path(root) / "Labels" / "labels_consensus.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def dummy_build(tmp_path_factory):
    return _build(DUMMY, tmp_path_factory.mktemp("tfds"))


def test_dummy_csv_is_the_release_layout():
    assert (DUMMY / "Labels" / "labels_consensus.csv").read_text().splitlines()[0] == HEADER
    rows = _rows(DUMMY)
    assert len(rows) == 14
    for r in rows:
        assert (DUMMY / "Audios" / r["FileName"]).is_file(), r["FileName"]
    assert sum(p.stat().st_size for p in DUMMY.rglob("*") if p.is_file()) < 600_000


def test_dropped_counts_match_the_dummy_csv(dummy_build):
    meta = dummy_build.info.metadata
    assert meta["dropped_partitions"] == {"Test2": 1, "Test3": 0}
    assert meta["dropped_classes"] == {"train": {"surprise": 1}, "validation": {"no_agreement": 1}, "test": {}}
    assert meta["dropped_unknown_speaker"] == {"train": 1, "validation": 0, "test": 0}
    assert meta["split_set_counts"] == {"Development": 3, "Test1": 3, "Test2": 1, "Train": 7}
    assert meta["labels_file"] == "Labels/labels_consensus.csv"
    assert meta["skipped"] == {"count": 0, "by_reason": {}}
    # the same numbers, counted straight from the CSV
    rows = _rows(DUMMY)
    assert sum(r["Split_Set"] == "Test2" for r in rows) == 1
    assert sorted(r["EmoClass"] for r in rows if r["EmoClass"] in "UFCOX") == ["U", "X"]
    assert sum(r["SpkrID"] == "Unknown" for r in rows) == 1
    kept = sum(v for s in meta["class_counts"].values() for v in s.values())
    assert kept + 1 + 2 + 1 == len(rows) == 14


def test_class_counts_speakers_and_examples(dummy_build):
    b = dummy_build
    meta = b.info.metadata
    assert meta["class_counts"] == {
        "train": {"angry": 1, "disgust": 1, "happy": 1, "neutral": 1, "sad": 1},
        "validation": {"happy": 1, "neutral": 1},
        "test": {"angry": 1, "disgust": 1, "sad": 1}}
    assert meta["speakers_per_split"] == {"train": 2, "validation": 1, "test": 2}
    assert b.info.features["emotion"].names == ["neutral", "angry", "sad", "happy", "disgust"]
    assert len(meta["feature_names"]) == 88 and meta["feature_set"] == "eGeMAPSv02"
    speakers = {}
    for split in ("train", "validation", "test"):
        ex = list(tfds.as_numpy(b.as_dataset(split=split)))
        speakers[split] = sorted({e["speaker"].decode() for e in ex})
        for e in ex:
            assert e["features"].shape == (88,) and np.isfinite(e["features"]).all()
            assert 1.45 < e["duration"] < 1.55
    assert speakers == {"train": ["msp_1041", "msp_127"], "validation": ["msp_30"], "test": ["msp_39", "msp_512"]}
    test = {e["utterance_id"].decode(): e for e in tfds.as_numpy(b.as_dataset(split="test"))}
    assert sorted(test) == ["MSP-PODCAST_0005_0020", "MSP-PODCAST_0005_0021", "MSP-PODCAST_0006_0002"]
    e = test["MSP-PODCAST_0006_0002"]
    assert e["speaker"] == b"msp_512" and b.info.features["emotion"].int2str(e["emotion"]) == "disgust"


@pytest.fixture
def messy_dir(tmp_path):
    d = tmp_path / "release"
    shutil.copytree(DUMMY, d)
    shutil.copy(d / "Audios" / "MSP-PODCAST_0001_0008.wav", d / "Audios" / "MSP-PODCAST_0099_0001.wav")
    rows = _rows(d) + [
        {"FileName": "MSP-PODCAST_0099_0001.wav", "EmoClass": "Z", "EmoAct": "4", "EmoVal": "4", "EmoDom": "4",
         "SpkrID": "127", "Gender": "Male", "Split_Set": "Train"},  # unknown class code
        {"FileName": "MSP-PODCAST_0099_0002.wav", "EmoClass": "H", "EmoAct": "4", "EmoVal": "4", "EmoDom": "4",
         "SpkrID": "1041", "Gender": "Female", "Split_Set": "Train"},  # listed, no wav
    ]
    _write_rows(d, rows)
    return d


def test_bad_items_stop_the_build_with_one_report(messy_dir, tmp_path):
    with pytest.raises(BadItemsError) as e:
        _build(messy_dir, tmp_path / "tfds")
    msg = str(e.value)
    audios = messy_dir / "Audios"
    assert msg.startswith("2 bad item(s); none were skipped (pass skip_bad_items=True to skip them):")
    assert (f"  MSP-PODCAST_0099_0001 ({audios / 'MSP-PODCAST_0099_0001.wav'}): unknown EmoClass code 'Z' "
            "(expected one of A, S, H, U, F, D, C, N, O, X)") in msg
    assert f"  MSP-PODCAST_0099_0002 ({audios / 'MSP-PODCAST_0099_0002.wav'}): file not found" in msg


@pytest.mark.parametrize("how", ["config", "kwarg"])
def test_skip_bad_items_builds_the_rest_and_lists_them(messy_dir, tmp_path, capsys, how):
    if how == "config":  # TFDS refuses a custom config named like a registered one ("egemapsv02")
        cfg = msp.Builder.builder_config_cls(name="egemapsv02_skip", feature_set="eGeMAPSv02", skip_bad_items=True)
        b = tfds.builder("msp_podcast", config=cfg, data_dir=str(tmp_path / "tfds"))
    else:  # the registered config, with the builder's override
        b = tfds.builder("msp_podcast/egemapsv02", data_dir=str(tmp_path / "tfds"), skip_bad_items=True)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(messy_dir)))
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
        {"train": 5, "validation": 2, "test": 3}
    assert b.info.metadata["skipped"]["count"] == 2
    assert b.info.metadata["skipped"]["by_reason"] == {"unknown EmoClass code 'Z'": 1, "file not found": 1}
    report = json.loads((Path(b.data_path) / "bad_items.json").read_text())
    assert report["count"] == 2
    assert sorted((i["utterance_id"], i["reason"].split(" (")[0]) for i in report["items"]) == [
        ("MSP-PODCAST_0099_0001", "unknown EmoClass code 'Z'"), ("MSP-PODCAST_0099_0002", "file not found")]
    assert "skipped 2 bad item(s)" in capsys.readouterr().out


def test_speaker_shared_between_train_and_test_is_refused(tmp_path):
    d = tmp_path / "release"
    shutil.copytree(DUMMY, d)
    rows = _rows(d)
    for r in rows:
        if r["FileName"] == "MSP-PODCAST_0006_0002.wav":  # Test1, speaker 512 -> a Train speaker
            r["SpkrID"] = "127"
    _write_rows(d, rows)
    with pytest.raises(ValueError) as e:
        _build(d, tmp_path / "tfds")
    assert str(e.value) == "msp_podcast: 1 speaker(s) appear in more than one split: msp_127 in ['test', 'train']"


def test_missing_manual_dir_labels_or_audio_name_the_path(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(AssertionError) as e:  # TFDS's own check, with our instructions
        _build(nowhere, tmp_path / "tfds")
    assert f"Manual directory {nowhere} does not exist or is empty" in str(e.value)
    assert "https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html" in str(e.value)

    no_labels = tmp_path / "no_labels"
    shutil.copytree(DUMMY / "Audios", no_labels / "Audios")
    with pytest.raises(FileNotFoundError) as e:
        _build(no_labels, tmp_path / "tfds")
    msg = str(e.value)
    assert msg.startswith(f"MSP-Podcast labels not found: {no_labels / 'Labels' / 'labels_consensus.csv'} "
                          f"does not exist (nor the older spelling {no_labels / 'Labels' / 'labels_concensus.csv'})")
    assert "<manual_dir>/Labels/labels_consensus.csv" in msg and "academic licence" in msg

    no_audio = tmp_path / "no_audio"
    shutil.copytree(DUMMY / "Labels", no_audio / "Labels")
    with pytest.raises(FileNotFoundError) as e:
        _build(no_audio, tmp_path / "tfds")
    assert str(e.value).startswith(f"MSP-Podcast audio folder not found: {no_audio / 'Audios'} does not exist")


def test_malformed_labels_csv_names_the_missing_columns(tmp_path):
    d = tmp_path / "release"
    shutil.copytree(DUMMY, d)
    header = ["FileName", "EmoAct", "EmoVal", "EmoDom", "Gender", "Split_Set"]
    _write_rows(d, _rows(d), header=header)
    with pytest.raises(ValueError) as e:
        _build(d, tmp_path / "tfds")
    assert str(e.value).startswith(
        f"{d / 'Labels' / 'labels_consensus.csv'}: malformed MSP-Podcast labels file, missing column(s) "
        "EmoClass, SpkrID (header: FileName,EmoAct,EmoVal,EmoDom,Gender,Split_Set;")


# ---------------------------------------------------------------- label parsing, no extraction
def test_older_spelling_of_the_labels_file_is_accepted_and_newer_preferred(tmp_path):
    (tmp_path / "Labels").mkdir()
    old = tmp_path / "Labels" / "labels_concensus.csv"
    old.write_text(HEADER + "\n")
    assert msp.find_labels_file(tmp_path) == old
    new = tmp_path / "Labels" / "labels_consensus.csv"
    new.write_text(HEADER + "\n")
    assert msp.find_labels_file(tmp_path) == new


def _row(name, code, spk, part):
    return {"FileName": name, "EmoClass": code, "SpkrID": spk, "Split_Set": part}


def test_plan_drop_order_aliases_and_bad_values(tmp_path):
    rows = [
        _row("a.wav", "N", "1", "Train"),
        _row("b.wav", "A", "2", "Validation"),  # early-release spelling of Development
        _row("c.wav", "S", "3", "Test"),  # early-release spelling of Test1
        _row("d.wav", "U", "Unknown", "Test3"),  # partition first: counted once, under Test3
        _row("e.wav", "C", "Unknown", "Train"),  # class before speaker
        _row("f.wav", "H", "Unknown", "Development"),
        _row("g.wav", "Q", "4", "Train"),  # unknown code
        _row("h.wav", "N", "5", "Test4"),  # unknown partition
        _row("i.wav", "N", "", "Train"),  # empty speaker
        _row("j", "D", "6", "Test1"),  # no .wav suffix in FileName
    ]
    utts, bad, extra = msp.plan_utterances(rows, tmp_path)
    assert [(u.utterance_id, u.speaker, u.emotion, u.split) for u in utts] == [
        ("a", "msp_1", "neutral", "train"), ("b", "msp_2", "angry", "validation"),
        ("c", "msp_3", "sad", "test"), ("j", "msp_6", "disgust", "test")]
    assert utts[3].path == str(tmp_path / "j.wav")
    assert [(b.utterance_id, b.reason) for b in bad] == [
        ("g", "unknown EmoClass code 'Q' (expected one of A, S, H, U, F, D, C, N, O, X)"),
        ("h", "unknown Split_Set 'Test4' (expected one of Train, Development, Test1, Test2, Test3)"),
        ("i", "empty SpkrID")]
    assert extra["dropped_partitions"] == {"Test2": 0, "Test3": 1}
    assert extra["dropped_classes"] == {"train": {"contempt": 1}, "validation": {}, "test": {}}
    assert extra["dropped_unknown_speaker"] == {"train": 0, "validation": 1, "test": 0}
