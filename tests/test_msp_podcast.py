"""MSP-Podcast builder: TFDS test cases on a synthetic release folder (5 and 8 classes, split
test2), by-design drop counts, bad input."""

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
LABELS = DUMMY / "Labels" / "labels_consensus.csv"
HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
# by-design drops of the dummy CSV (22 rows, see make_dummy_data.py), per class setting
DROPPED_5 = {"train": {"other": 1, "surprise": 1}, "validation": {"contempt": 1, "no_agreement": 1},
             "test": {"fear": 1}}
DROPPED_8 = {"train": {"other": 1}, "validation": {"no_agreement": 1}, "test": {}}
COUNTS_5 = {"train": {"angry": 1, "disgust": 1, "happy": 1, "neutral": 1, "sad": 1},
            "validation": {"happy": 1, "neutral": 1}, "test": {"angry": 1, "disgust": 1, "sad": 1}}
COUNTS_8 = {"train": {**COUNTS_5["train"], "surprise": 1}, "validation": {**COUNTS_5["validation"], "contempt": 1},
            "test": {**COUNTS_5["test"], "fear": 1}}


def _g(female, male, unknown=0):
    return {"female": female, "male": male, "unknown": unknown}


# speakers 127, 39, 88 male; 1041, 30, 512, 90 female (the dummy CSV's Gender column)
GENDER_5 = {"train": _g(2, 3), "validation": _g(2, 0), "test": _g(1, 2)}
GENDER_8 = {"train": _g(3, 3), "validation": _g(3, 0), "test": _g(2, 2)}


class _Metadata:
    """Also checks the built dataset's drop counts and class counts (``EXPECT``: a metadata subset)."""

    DATASET_CLASS = msp.Builder
    EXAMPLE_DIR = str(DUMMY)
    SKIP_CHECKSUMS = True
    EXPECT: dict = {}
    EMOTIONS = list(msp.EMOTIONS)

    def _download_and_prepare_as_dataset(self, builder):
        super()._download_and_prepare_as_dataset(builder)
        meta = builder.info.metadata
        assert {k: meta[k] for k in self.EXPECT} == self.EXPECT
        assert builder.info.features["emotion"].names == self.EMOTIONS
        assert builder.info.features["gender"].names == ["female", "male", "unknown"]
        kept = sum(v for s in meta["class_counts"].values() for v in s.values())
        assert kept == sum(self.SPLITS.values())
        assert kept + meta["dropped_total"] + meta["skipped"]["count"] == meta["label_rows"] == 22


class MspPodcastTest(_Metadata, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02"]
    SPLITS = {"train": 5, "validation": 2, "test": 3}
    EXPECT = {"dropped_partitions": {"Test2": 4, "Test3": 2}, "dropped_classes": DROPPED_5,
              "dropped_unknown_speaker": {"train": 1, "validation": 0, "test": 0}, "dropped_total": 12,
              "class_counts": COUNTS_5, "speakers_per_split": {"train": 2, "validation": 1, "test": 2},
              "gender_counts": GENDER_5}


class MspPodcast8ClassTest(_Metadata, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02_8class"]
    SPLITS = {"train": 6, "validation": 3, "test": 4}
    EMOTIONS = ["neutral", "angry", "sad", "happy", "surprise", "fear", "disgust", "contempt"]
    EXPECT = {"dropped_partitions": {"Test2": 4, "Test3": 2}, "dropped_classes": DROPPED_8,
              "dropped_unknown_speaker": {"train": 1, "validation": 0, "test": 0}, "dropped_total": 9,
              "class_counts": COUNTS_8, "gender_counts": GENDER_8}


class MspPodcastTest2Test(_Metadata, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02_test2"]
    SPLITS = {"train": 5, "validation": 2, "test": 3, "test2": 2}
    EXPECT = {"dropped_partitions": {"Test3": 2}, "dropped_classes": {**DROPPED_5, "test2": {"contempt": 1}},
              "dropped_unknown_speaker": {"train": 1, "validation": 0, "test": 0, "test2": 1}, "dropped_total": 10,
              "class_counts": {**COUNTS_5, "test2": {"angry": 1, "neutral": 1}},
              "speakers_per_split": {"train": 2, "validation": 1, "test": 2, "test2": 2},
              "partitions": {"train": "Train", "validation": "Development", "test": "Test1", "test2": "Test2"},
              "gender_counts": {**GENDER_5, "test2": _g(1, 1)}}


class MspPodcast8ClassTest2Test(_Metadata, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02_8class_test2"]
    SPLITS = {"train": 6, "validation": 3, "test": 4, "test2": 3}
    EMOTIONS = MspPodcast8ClassTest.EMOTIONS
    EXPECT = {"dropped_partitions": {"Test3": 2}, "dropped_classes": {**DROPPED_8, "test2": {}},
              "dropped_unknown_speaker": {"train": 1, "validation": 0, "test": 0, "test2": 1}, "dropped_total": 6,
              "class_counts": {**COUNTS_8, "test2": {"angry": 1, "contempt": 1, "neutral": 1}},
              "gender_counts": {**GENDER_8, "test2": _g(1, 2)}}


def _build(manual_dir, data_dir, config="egemapsv02", **kwargs):
    b = tfds.builder(f"msp_podcast/{config}", data_dir=str(data_dir), **kwargs)
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
    assert LABELS.read_text().splitlines()[0] == HEADER
    rows = _rows(DUMMY)
    assert len(rows) == 22
    assert sorted({r["Split_Set"] for r in rows}) == ["Development", "Test1", "Test2", "Test3", "Train"]
    assert sorted({r["EmoClass"] for r in rows} - {""}) == sorted(msp.EMO_CODES)  # 8 emotions, O, X
    for r in rows:
        assert (DUMMY / "Audios" / r["FileName"]).is_file(), r["FileName"]
    assert sum(p.stat().st_size for p in DUMMY.rglob("*") if p.is_file()) < 600_000


def test_configs_are_feature_sets_times_classes_times_test2():
    names = [c.name for c in msp.Builder.BUILDER_CONFIGS]
    assert names[:6] == ["is10", "is09", "emobase", "egemapsv02", "compare_2016", "audio16k"]  # as in 1.1.0
    # 6 feature sets + 5 openSMILE sets with speed-perturbed copies, x (5 | 8 classes) x (test1 | test2)
    assert len(names) == len(set(names)) == 44 and msp.Builder.DEFAULT_CONFIG_NAME == "is10"
    assert {"is10_8class", "is10_test2", "is10_8class_test2", "audio16k_8class_test2", "is10_sp",
            "is10_8class_test2_sp", "egemapsv02_test2_sp"} <= set(names)
    sp = tfds.builder("msp_podcast/is10_8class_sp").builder_config
    assert (sp.classes, sp.test2, sp.speed_factors) == (8, False, (0.9, 1.1))
    b = tfds.builder("msp_podcast/is10_8class_test2")
    assert (b.builder_config.classes, b.builder_config.test2, str(b.version)) == (8, True, "1.3.0")
    assert "gender" in msp.Builder.RELEASE_NOTES["1.3.0"] and "1.2.0" in msp.Builder.RELEASE_NOTES
    with pytest.raises(ValueError, match=r"msp_podcast/is10_6class: classes=6; expected one of 5, 8"):
        msp.Builder(config=msp.MspPodcastConfig(name="is10_6class", classes=6))


@pytest.mark.parametrize("classes,test2,selected,dropped", [
    (5, False, {"train": 5, "validation": 2, "test": 3}, 12),
    (8, False, {"train": 6, "validation": 3, "test": 4}, 9),
    (5, True, {"train": 5, "validation": 2, "test": 3, "test2": 2}, 10),
    (8, True, {"train": 6, "validation": 3, "test": 4, "test2": 3}, 6)])
def test_plan_of_the_dummy_csv(classes, test2, selected, dropped):
    rows = msp.read_labels(LABELS)
    utts, bad, extra = msp.plan_utterances(rows, DUMMY / "Audios", msp.CLASS_SETTINGS[classes], test2, LABELS)
    assert bad == []
    assert {s: sum(u.split == s for u in utts) for s in selected} == selected and len(utts) == sum(selected.values())
    assert extra["dropped_total"] == dropped and len(utts) + dropped == extra["label_rows"] == 22
    assert extra["split_set_counts"] == {"Development": 4, "Test1": 4, "Test2": 4, "Test3": 2, "Train": 8}


def test_the_plan_line_counts_every_row():
    utts, bad, extra = msp.plan_utterances(msp.read_labels(LABELS), DUMMY / "Audios")
    assert msp.describe_plan("msp_podcast/is10", utts, bad, extra) == (
        "[msp_podcast/is10] 22 label rows: 10 turns selected (train 5, validation 2, test 3); 12 left out by design "
        "(partitions: Test2 4, Test3 2; classes: contempt 1, fear 1, no_agreement 1, other 1, surprise 1; "
        "Unknown speaker: 1); 0 bad row(s)")


def test_class_counts_speakers_and_examples(dummy_build):
    b = dummy_build
    meta = b.info.metadata
    assert meta["labels_file"] == "Labels/labels_consensus.csv"
    assert meta["skipped"] == {"count": 0, "by_reason": {}}
    assert b.info.features["emotion"].names == ["neutral", "angry", "sad", "happy", "disgust"]
    assert len(meta["feature_names"]) == 88 and meta["feature_set"] == "eGeMAPSv02"
    assert sorted(b.info.splits) == ["test", "train", "validation"]  # no test2 unless asked
    speakers = {}
    for split in ("train", "validation", "test"):
        ex = list(tfds.as_numpy(b.as_dataset(split=split)))
        speakers[split] = sorted({e["speaker"].decode() for e in ex})
        for e in ex:
            assert e["features"].shape == (88,) and np.isfinite(e["features"]).all()
            assert 0.95 < e["duration"] < 1.05
    assert speakers == {"train": ["msp_1041", "msp_127"], "validation": ["msp_30"], "test": ["msp_39", "msp_512"]}
    test = {e["utterance_id"].decode(): e for e in tfds.as_numpy(b.as_dataset(split="test"))}
    assert sorted(test) == ["MSP-PODCAST_0005_0020", "MSP-PODCAST_0005_0021", "MSP-PODCAST_0006_0002"]
    e = test["MSP-PODCAST_0006_0002"]
    assert e["speaker"] == b"msp_512" and b.info.features["emotion"].int2str(e["emotion"]) == "disgust"
    assert {k: b.info.features["gender"].int2str(v["gender"]) for k, v in test.items()} == {
        "MSP-PODCAST_0005_0020": "male", "MSP-PODCAST_0005_0021": "male", "MSP-PODCAST_0006_0002": "female"}


def test_audio16k_test2_streams_the_extra_split(tmp_path, capsys):
    b = _build(DUMMY, tmp_path / "tfds", config="audio16k_8class_test2")
    assert {s: b.info.splits[s].num_examples for s in b.info.splits} == \
        {"train": 6, "validation": 3, "test": 4, "test2": 3}
    test2 = {e["utterance_id"].decode(): e for e in tfds.as_numpy(b.as_dataset(split="test2"))}
    assert sorted(test2) == ["MSP-PODCAST_0007_0040", "MSP-PODCAST_0007_0041", "MSP-PODCAST_0008_0001"]
    assert all(e["audio"].shape == (16000,) for e in test2.values())
    assert "[msp_podcast/audio16k_8class_test2] 22 label rows: 16 turns selected (train 6, validation 3, test 4, " \
           "test2 3); 6 left out by design" in capsys.readouterr().out


def test_beam_builds_test2(tmp_path):
    pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")
    from apache_beam.options.pipeline_options import PipelineOptions

    b = tfds.builder("msp_podcast/egemapsv02_test2", data_dir=str(tmp_path))
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(DUMMY), beam_options=PipelineOptions(["--runner=DirectRunner"])))
    assert {s: b.info.splits[s].num_examples for s in b.info.splits} == \
        {"train": 5, "validation": 2, "test": 3, "test2": 2}
    assert b.info.metadata["class_counts"]["test2"] == {"angry": 1, "neutral": 1}


@pytest.fixture
def messy_dir(tmp_path):
    d = tmp_path / "release"
    shutil.copytree(DUMMY, d)
    shutil.copy(d / "Audios" / "MSP-PODCAST_0001_0008.wav", d / "Audios" / "MSP-PODCAST_0099_0001.wav")
    rows = _rows(d) + [
        {"FileName": "MSP-PODCAST_0099_0001.wav", "EmoClass": "Z", "EmoAct": "4", "EmoVal": "4", "EmoDom": "4",
         "SpkrID": "127", "Gender": "Male", "Split_Set": "Train"},  # line 24: unknown class code
        {"FileName": "MSP-PODCAST_0099_0002.wav", "EmoClass": "H", "EmoAct": "4", "EmoVal": "4", "EmoDom": "4",
         "SpkrID": "1041", "Gender": "Female", "Split_Set": "Train"},  # listed, no wav
    ]
    _write_rows(d, rows)
    return d


def test_bad_items_stop_the_build_with_one_report(messy_dir, tmp_path):
    with pytest.raises(BadItemsError) as e:
        _build(messy_dir, tmp_path / "tfds")
    msg = str(e.value)
    labels = messy_dir / "Labels" / "labels_consensus.csv"
    assert msg.startswith("2 bad item(s); none were skipped (pass skip_bad_items=True to skip them):")
    assert (f"  MSP-PODCAST_0099_0001 ({labels}:24): unknown EmoClass code 'Z' "
            "(expected one of A, S, H, U, F, D, C, N, O, X)") in msg
    assert f"  MSP-PODCAST_0099_0002 ({messy_dir / 'Audios' / 'MSP-PODCAST_0099_0002.wav'}): file not found" in msg


def test_unknown_split_set_names_the_file_and_line(tmp_path):
    d = tmp_path / "release"
    shutil.copytree(DUMMY, d)
    rows = _rows(d)
    rows[3]["Split_Set"] = "Test4"  # line 5
    rows[4]["SpkrID"] = ""  # line 6
    _write_rows(d, rows)
    with pytest.raises(BadItemsError) as e:
        _build(d, tmp_path / "tfds")
    labels = d / "Labels" / "labels_consensus.csv"
    assert str(e.value).splitlines()[1:3] == [
        f"  MSP-PODCAST_0002_0003 ({labels}:5): unknown Split_Set 'Test4' "
        "(expected one of Train, Development, Test1, Test2, Test3)",
        f"  MSP-PODCAST_0002_0004 ({labels}:6): empty SpkrID"]


@pytest.mark.parametrize("how", ["config", "kwarg"])
def test_skip_bad_items_builds_the_rest_and_lists_them(messy_dir, tmp_path, capsys, how):
    if how == "config":  # TFDS refuses a custom config named like a registered one ("egemapsv02")
        cfg = msp.MspPodcastConfig(name="egemapsv02_skip", feature_set="eGeMAPSv02", skip_bad_items=True)
        b = tfds.builder("msp_podcast", config=cfg, data_dir=str(tmp_path / "tfds"))
    else:  # the registered config, with the builder's override
        b = tfds.builder("msp_podcast/egemapsv02", data_dir=str(tmp_path / "tfds"), skip_bad_items=True)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(messy_dir)))
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
        {"train": 5, "validation": 2, "test": 3}
    meta = b.info.metadata
    assert meta["skipped"]["count"] == 2
    assert meta["skipped"]["by_reason"] == {"unknown EmoClass code 'Z'": 1, "file not found": 1}
    assert 10 + meta["dropped_total"] + meta["skipped"]["count"] == meta["label_rows"] == 24
    report = json.loads((Path(b.data_path) / "bad_items.json").read_text())
    assert report["count"] == 2
    assert sorted((i["utterance_id"], i["reason"].split(" (")[0]) for i in report["items"]) == [
        ("MSP-PODCAST_0099_0001", "unknown EmoClass code 'Z'"), ("MSP-PODCAST_0099_0002", "file not found")]
    out = capsys.readouterr().out
    assert "24 label rows: 11 turns selected (train 6, validation 2, test 3); 12 left out by design" in out
    assert "1 bad row(s)" in out and "skipped 2 bad item(s)" in out


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


def _row(name, code, spk, part, gender=None):
    row = {"FileName": name, "EmoClass": code, "SpkrID": spk, "Split_Set": part}
    return row if gender is None else {**row, "Gender": gender}


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
        _row("k.wav", "", "", "Test3"),  # Test3: labels withheld, not read
        _row("l.wav", "F", "7", "Test2"),  # Test2: fear, only counted with test2 and 8 classes
        _row("", "N", "8", "Train"),  # no file name
        _row("m.wav", "N", "9", "Train", "Female"),
        _row("n.wav", "N", "10", "Development", "male"),
        _row("o.wav", "N", "11", "Test1", "Unknown"),
        _row("p.wav", "N", "12", "Train", "Other"),  # unknown Gender
    ]
    utts, bad, extra = msp.plan_utterances(rows, tmp_path)
    assert [(u.utterance_id, u.speaker, u.emotion, u.split, u.labels["gender"]) for u in utts] == [
        ("a", "msp_1", "neutral", "train", "unknown"), ("b", "msp_2", "angry", "validation", "unknown"),
        ("c", "msp_3", "sad", "test", "unknown"), ("j", "msp_6", "disgust", "test", "unknown"),
        ("m", "msp_9", "neutral", "train", "female"), ("n", "msp_10", "neutral", "validation", "male"),
        ("o", "msp_11", "neutral", "test", "unknown")]
    assert utts[3].path == str(tmp_path / "j.wav")
    assert [(b.utterance_id, b.path, b.reason) for b in bad] == [
        ("g", "labels_consensus.csv:8", "unknown EmoClass code 'Q' (expected one of A, S, H, U, F, D, C, N, O, X)"),
        ("h", "labels_consensus.csv:9",
         "unknown Split_Set 'Test4' (expected one of Train, Development, Test1, Test2, Test3)"),
        ("i", "labels_consensus.csv:10", "empty SpkrID"),
        ("<line 14>", "labels_consensus.csv:14", "empty FileName"),
        ("p", "labels_consensus.csv:18", "unknown Gender 'Other' (expected Female, Male or Unknown)")]
    assert extra["dropped_partitions"] == {"Test2": 1, "Test3": 2}
    assert extra["dropped_classes"] == {"train": {"contempt": 1}, "validation": {}, "test": {}}
    assert extra["dropped_unknown_speaker"] == {"train": 0, "validation": 1, "test": 0}
    assert extra["dropped_total"] == 5 and len(utts) + len(bad) + 5 == len(rows)

    utts, bad, extra = msp.plan_utterances(rows, tmp_path, msp.EMOTIONS_8, test2=True)
    assert [(u.utterance_id, u.emotion, u.split) for u in utts if u.split == "test2"] == [("l", "fear", "test2")]
    assert extra["dropped_partitions"] == {"Test3": 2}
    assert extra["dropped_unknown_speaker"] == {"train": 1, "validation": 1, "test": 0, "test2": 0}
