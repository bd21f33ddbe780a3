"""audio_manifest: any labelled audio folder from a CSV manifest; manifests as --dataset of the train CLI."""

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import tensorflow_datasets as tfds

import tfvae_datasets  # noqa: F401
from tfvae import synth, train
from tfvae.data import DataError, load_corpus, validate_corpus
from tfvae.labelled_audio import BadItemsError
from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import (Builder, ManifestError, assign_speakers,
                                                                           manifest_config)

FS = "eGeMAPSv02"
RATE = 16000


def make_corpus(root: Path, n_speakers: int, emotions: tuple, n_utts: int, n_val: int = 1, n_test: int = 1) -> list:
    """Synthetic wavs under ``root/audio/spkNN/``; manifest rows with a split by speaker."""
    rows = []
    for s in range(n_speakers):
        d = root / "audio" / f"spk{s:02d}"
        d.mkdir(parents=True, exist_ok=True)
        split = "train" if s < n_speakers - n_val - n_test else "validation" if s < n_speakers - n_test else "test"
        for e in emotions:
            for u in range(n_utts):
                sf.write(d / f"{e}_{u}.wav", synth.synthesize(synth.make_voice(s), e, u), RATE)
                rows.append({"path": f"audio/spk{s:02d}/{e}_{u}.wav", "speaker": f"spk{s:02d}", "emotion": e,
                             "split": split})
    return rows


def write_manifest(path: Path, rows: list, columns=("path", "speaker", "emotion", "split")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def build(manifest, data_dir, **kw):
    b = tfds.builder("audio_manifest", config=manifest_config(manifest, FS, workers=2, **kw), data_dir=str(data_dir))
    b.download_and_prepare()
    return b


def examples(b, split):
    return list(tfds.as_numpy(b.as_dataset(split=split)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 speakers (4 train, 1 validation, 1 test) x sad/angry x 2 utterances."""
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root, 6, ("sad", "angry"), 2)


# ------------------------------------------------------------------ 1. manifest with a split column
def test_split_column_build(corpus, tmp_path):
    root, rows = corpus
    rows = [dict(r) for r in rows]
    rows[0]["path"] = str(root / rows[0]["path"])  # absolute paths work too
    rows[1]["split"] = "Train"  # case-insensitive
    m = write_manifest(root / "labels.csv", rows, ("path", "speaker", "emotion", "split", "notes"))
    cfg = manifest_config(m, FS)
    assert re.fullmatch(r"labels-[0-9a-f]{8}-egemapsv02", cfg.name)
    b = build(m, tmp_path)
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
        {"train": 16, "validation": 4, "test": 4}
    assert b.info.features["emotion"].names == ["angry", "sad"]
    meta = b.info.metadata
    assert meta["class_counts"] == {"train": {"angry": 8, "sad": 8}, "validation": {"angry": 2, "sad": 2},
                                    "test": {"angry": 2, "sad": 2}}
    assert meta["speakers_per_split"] == {"train": 4, "validation": 1, "test": 1}
    assert meta["skipped"] == {"count": 0, "by_reason": {}} and meta["splits_from"] == "split column"
    assert meta["feature_set"] == FS and len(meta["feature_names"]) == 88
    test = examples(b, "test")
    assert sorted(e["utterance_id"].decode() for e in test) == [
        "audio/spk05/angry_0", "audio/spk05/angry_1", "audio/spk05/sad_0", "audio/spk05/sad_1"]
    assert {e["speaker"] for e in test} == {b"spk05"}
    assert {e["speaker"].decode() for e in examples(b, "train")} == {"spk00", "spk01", "spk02", "spk03"}
    ex = {e["utterance_id"].decode(): e for e in examples(b, "train")}
    assert str(root / "audio/spk00/sad_0") in ex  # an absolute path's ID is that path without suffix
    e = ex["audio/spk01/angry_1"]
    assert b.info.features["emotion"].int2str(e["emotion"]) == "angry" and e["features"].shape == (88,)
    assert np.isfinite(e["features"]).all() and 0.5 < e["duration"] < 5

    # TFDS's `tfds build --config '{json}'` path recreates the same config (and finds the data)
    again = Builder.builder_config_cls(**{"name": cfg.name, "manifest": str(m), "feature_set": FS})
    assert tfds.builder("audio_manifest", config=again, data_dir=str(tmp_path)).is_prepared()
    derived = Builder.builder_config_cls(**json.loads(json.dumps({"manifest": str(m), "feature_set": FS})))
    assert derived.name == cfg.name
    # other settings, another manifest or an edited one: other names
    assert manifest_config(m, FS, split_seed=1).name != cfg.name and manifest_config(m, "IS10").name != cfg.name
    write_manifest(root / "labels.csv", rows[:-1], ("path", "speaker", "emotion", "split"))
    assert manifest_config(m, FS).name != cfg.name


# ------------------------------------------------------------------ 2. seeded speaker-disjoint splits
def test_seeded_speaker_splits(corpus, tmp_path):
    root, rows = corpus
    m = write_manifest(root / "nosplit.csv", rows, ("path", "speaker", "emotion"))
    b = build(m, tmp_path)
    speakers = {s: {e["speaker"].decode() for e in examples(b, s)} for s in ("train", "validation", "test")}
    assert speakers == {"train": {"spk02", "spk03", "spk04", "spk05"}, "validation": {"spk00"}, "test": {"spk01"}}
    assert b.info.metadata["split_speakers"] == {k: sorted(v) for k, v in speakers.items()}
    assert b.info.metadata["split_seed"] == 0 and b.info.metadata["split_fractions"] == [0.7, 0.15, 0.15]

    def assignment(seed, fractions=(0.7, 0.15, 0.15)):
        cfg = manifest_config(m, FS, split_seed=seed, split_fractions=fractions)
        utts, bad, _ = Builder(config=cfg, data_dir=str(tmp_path))._utterances(None)  # no extraction
        assert not bad
        return {u.speaker: u.split for u in utts}

    assert assignment(0) == assignment(0) == {s: k for k, v in speakers.items() for s in v}
    assert assignment(1) != assignment(0)
    assert list(assignment(1).values()).count("train") == 4

    # by cumulative utterance share, at least one speaker per split
    equal = {f"s{i:02d}": 5 for i in range(20)}
    for seed in range(3):
        split = assign_speakers(equal, (0.7, 0.15, 0.15), seed)
        assert [list(split.values()).count(s) for s in ("train", "validation", "test")] == [14, 3, 3]
        assert assign_speakers(equal, (0.7, 0.15, 0.15), seed) == split
    assert [list(assign_speakers(equal, (0.5, 0.25, 0.25), 0).values()).count(s)
            for s in ("train", "validation", "test")] == [10, 5, 5]
    # one big speaker: shares count utterances, not speakers
    big = {"big": 70, **{f"s{i}": 3 for i in range(10)}}
    split = assign_speakers(big, (0.7, 0.15, 0.15), 2)
    shares = {s: sum(n for k, n in big.items() if split[k] == s) for s in ("train", "validation", "test")}
    assert shares == {"train": 73, "validation": 12, "test": 15} and list(split.values()).count("train") == 2
    assert [list(assign_speakers({"a": 1, "b": 1, "c": 9}, seed=0).values()).count(s)
            for s in ("train", "validation", "test")] == [1, 1, 1]
    with pytest.raises(ManifestError, match="need at least 3 speakers, the manifest has 2 \\(a, b\\)"):
        assign_speakers({"a": 4, "b": 4})
    with pytest.raises(ManifestError, match="must be 3 positive fractions"):
        manifest_config(m, FS, split_fractions=(0.8, 0.3, 0.1))


# ------------------------------------------------------------------ 3. bad input
def test_bad_manifests_raise_clear_errors(corpus, tmp_path):
    root, rows = corpus
    m = write_manifest(tmp_path / "cols.csv", rows, ("path", "speaker"))
    with pytest.raises(ManifestError) as e:
        manifest_config(m, FS)
    assert f"manifest {m} lacks the required column(s) emotion; its header has 'path', 'speaker'" in str(e.value)
    (tmp_path / "semi.csv").write_text("Path;Speaker;Emotion\na.wav;s;x\n")
    with pytest.raises(ManifestError, match="lacks the required column\\(s\\) path, speaker, emotion"):
        manifest_config(tmp_path / "semi.csv", FS)
    with pytest.raises(ManifestError, match=f"manifest {tmp_path / 'none.csv'} does not exist"):
        manifest_config(tmp_path / "none.csv", FS)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="is empty; expected a header row"):
        manifest_config(tmp_path / "empty.csv", FS)
    with pytest.raises(DataError, match="lacks the required column\\(s\\) emotion"):
        load_corpus(str(m), FS, data_dir=str(tmp_path / "tfds"))
    # a split column that puts one speaker into two splits
    mixed = [dict(r) for r in rows]
    mixed[0]["split"] = "test"
    with pytest.raises(ManifestError, match="speaker-disjoint, but 1 speaker\\(s\\) appear in more than one split: "
                                            "'spk00' in test \\(line 2\\), train \\(line 3\\)"):
        build(write_manifest(root / "mixed.csv", mixed), tmp_path / "tfds")
    with pytest.raises(ManifestError, match="config 'needs_manifest' has no manifest; pass a manifest"):
        tfds.builder("audio_manifest", data_dir=str(tmp_path / "tfds"))


@pytest.fixture(scope="module")
def messy(corpus):
    root, rows = corpus
    bad_dir = root / "bad"
    bad_dir.mkdir(exist_ok=True)
    (bad_dir / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    sf.write(bad_dir / "silent.wav", np.zeros(RATE, np.float32), RATE)
    sf.write(bad_dir / "short.wav", synth.synthesize(synth.make_voice(0), "sad", 5)[8000:8800], RATE)
    for i in range(2):
        sf.write(bad_dir / f"dup{i}.wav", synth.synthesize(synth.make_voice(1), "angry", 7 + i), RATE)
    extra = [
        {"path": "audio/spk00/missing.wav", "speaker": "spk00", "emotion": "sad", "split": "train"},
        {"path": "bad/corrupt.wav", "speaker": "spk00", "emotion": "sad", "split": "train"},
        {"path": "bad/silent.wav", "speaker": "spk01", "emotion": "angry", "split": "train"},
        {"path": "bad/short.wav", "speaker": "spk02", "emotion": "sad", "split": "train"},
        {"path": "bad/dup0.wav", "speaker": "spk01", "emotion": "angry", "split": "train", "utterance_id": "dup"},
        {"path": "bad/dup1.wav", "speaker": "spk01", "emotion": "angry", "split": "train", "utterance_id": "dup"},
        {"path": "audio/spk03/sad_0.wav", "speaker": "spk03", "emotion": "", "split": "train",
         "utterance_id": "no_label"},
        {"path": "audio/spk03/sad_1.wav", "speaker": "spk03", "emotion": "sad", "split": "dev",
         "utterance_id": "dev_split"},
    ]
    m = write_manifest(root / "messy.csv", rows + extra, ("path", "speaker", "emotion", "split", "utterance_id"))
    return m, len(rows)


BAD = {  # utterance ID -> expected reason
    "audio/spk00/missing": "file not found",
    "bad/corrupt": "cannot read audio",
    "bad/silent": "silent signal (peak amplitude below 0.0001)",
    "bad/short": "openSMILE returned 88 non-finite eGeMAPSv02 features; the audio (0.05 s) is probably too short",
    "dup": "utterance ID 'dup' appears on 2 manifest lines (30, 31)",
    "no_label": "manifest line 32: empty emotion",
    "dev_split": "manifest line 33: unknown split 'dev' (expected one of train, validation, test)",
}


def test_bad_items_stop_the_build_with_one_report(messy, tmp_path):
    m, _ = messy
    with pytest.raises(BadItemsError) as e:
        build(m, tmp_path)
    msg = str(e.value)
    assert msg.startswith("8 bad item(s); none were skipped")
    for uid, reason in BAD.items():
        assert re.search(rf"^  {re.escape(uid)} \(.*\): .*{re.escape(reason)}", msg, re.M), (uid, msg)
    assert "manifest line 30: utterance ID 'dup'" in msg and "manifest line 31: utterance ID 'dup'" in msg


def test_skip_bad_items_keeps_the_good_rows(messy, tmp_path, capsys):
    m, n_good = messy
    b = build(m, tmp_path, skip_bad_items=True)
    assert {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")} == \
        {"train": 16, "validation": 4, "test": 4}
    assert sum(b.info.splits[s].num_examples for s in ("train", "validation", "test")) == n_good
    assert b.info.features["emotion"].names == ["angry", "sad"]
    report = json.loads((Path(b.data_path) / "bad_items.json").read_text())
    assert report["count"] == 8 == b.info.metadata["skipped"]["count"]
    got = {}
    for item in report["items"]:
        got.setdefault(item["utterance_id"], []).append(item["reason"])
    assert set(got) == set(BAD) and len(got["dup"]) == 2
    assert all(BAD[uid] in r for uid, reasons in got.items() for r in reasons)
    kept = {e["utterance_id"].decode() for s in ("train", "validation", "test") for e in examples(b, s)}
    assert not kept & set(BAD) and len(kept) == n_good
    assert "skipped 8 bad item(s)" in capsys.readouterr().out
    # load_corpus reads the built dataset (same config name with or without skipping)
    c = load_corpus(str(m), FS, data_dir=str(tmp_path), skip_bad_items=True)
    assert c.name == f"audio_manifest/{b.builder_config.name}" and len(c.splits["train"]) == 16


def test_load_corpus_skip_bad_items_for_registered_builders(tmp_path, capsys):
    from tfvae_datasets.ravdess import ravdess_dataset_builder as ravdess

    messy = tmp_path / "ravdess"
    import shutil

    shutil.copytree(Path(ravdess.__file__).parent / "dummy_data", messy)
    (messy / "Actor_02" / "03-01-06-01-01-02-02.wav").write_bytes(os.urandom(3000))
    with pytest.raises(DataError, match="(?s)1 bad item.*cannot read audio.*pass --skip_bad_items true"):
        load_corpus("ravdess", FS, data_dir=str(tmp_path / "a"), manual_dir=str(messy))
    c = load_corpus("ravdess", FS, data_dir=str(tmp_path / "b"), manual_dir=str(messy), skip_bad_items=True)
    assert c.info["skipped"]["count"] == 1 and len(c.splits["train"]) == 4
    with pytest.raises(DataError, match="Manual directory .* does not exist or is empty"):
        load_corpus("ravdess", FS, data_dir=str(tmp_path / "c"), manual_dir=str(tmp_path / "nowhere"))


# ------------------------------------------------------------------ 3b. gender and extra label columns
GENDER_OF = {"spk00": "F", "spk01": "male", "spk02": "Female", "spk03": "m", "spk04": "", "spk05": "MALE"}
AGE_OF = {"spk00": "adult", "spk01": "senior", "spk02": "adult", "spk03": "", "spk04": "senior", "spk05": "Unknown"}


def test_gender_and_label_columns(corpus, tmp_path):
    root, rows = corpus
    rows = [{**r, "gender": GENDER_OF[r["speaker"]], "age_group": AGE_OF[r["speaker"]]} for r in rows]
    m = write_manifest(root / "gendered.csv", rows, ("path", "speaker", "emotion", "split", "gender", "age_group"))
    assert manifest_config(m, FS, label_columns=["Age_Group"]).name != manifest_config(m, FS).name
    assert manifest_config(m, FS, label_columns="age_group,gender").label_columns == ("age_group",)
    c = load_corpus(str(m), FS, data_dir=str(tmp_path), label_columns=["age_group"])
    meta = c.info
    # train: spk00 F, spk01 M, spk02 F, spk03 M (4 utterances each); validation spk04 (empty); test spk05 M
    assert meta["gender_counts"] == {"train": {"female": 8, "male": 8, "unknown": 0},
                                     "validation": {"female": 0, "male": 0, "unknown": 4},
                                     "test": {"female": 0, "male": 4, "unknown": 0}}
    assert meta["label_counts"] == {"age_group": {"train": {"adult": 8, "senior": 4, "unknown": 4},
                                                  "validation": {"adult": 0, "senior": 4, "unknown": 0},
                                                  "test": {"adult": 0, "senior": 0, "unknown": 4}}}
    assert c.label_names == {"gender": ["female", "male"], "age_group": ["adult", "senior"]}
    spk = c.splits["train"].speaker.tolist()
    assert c.labels("train", "gender").tolist() == [{"F": 0, "male": 1, "Female": 0, "m": 1}[GENDER_OF[x]] for x in spk]
    assert c.labels("train", "age_group").tolist() == [{"adult": 0, "senior": 1, "": -1}[AGE_OF[x]] for x in spk]
    assert c.labels("validation", "gender").tolist() == [-1] * 4 and c.labels("test", "age_group").tolist() == [-1] * 4
    validate_corpus(c, attributes=["gender", "age_group"])
    with pytest.raises(DataError, match="'age_group' needs label 'age_group', which dataset .* does not have; "
                                        "it has: emotion, gender$"):
        validate_corpus(load_corpus(str(m), FS, data_dir=str(tmp_path)), attributes=["age_group"])
    with pytest.raises(DataError, match="label_columns=\\['age_group'\\] are columns of a CSV manifest"):
        load_corpus("tfvae_demo/is10_small", "IS10", data_dir=str(tmp_path), label_columns=["age_group"])


def test_bad_gender_values_and_label_columns_are_reported(corpus, tmp_path):
    root, rows = corpus
    rows = [{**r, "gender": "f", "group": "a"} for r in rows]
    rows[2]["gender"] = "woman"  # manifest line 4
    rows[5]["gender"] = "X"  # manifest line 7
    m = write_manifest(root / "badgender.csv", rows, ("path", "speaker", "emotion", "split", "gender", "group"))
    utts, bad, _ = Builder(config=manifest_config(m, FS), data_dir=str(tmp_path))._utterances(None)
    assert [(b.utterance_id, b.reason) for b in bad] == [
        (rows[2]["path"][:-4], "manifest line 4: unknown gender 'woman' (expected female, male, f or m in any case; "
                               "empty for unknown)"),
        (rows[5]["path"][:-4], "manifest line 7: unknown gender 'X' (expected female, male, f or m in any case; "
                               "empty for unknown)")]
    assert len(utts) == len(rows) - 2 and {u.labels["gender"] for u in utts} == {"female"}
    with pytest.raises(ManifestError, match="lacks the label column\\(s\\) age named in label_columns"):
        manifest_config(m, FS, label_columns=["age"])
    with pytest.raises(ManifestError, match="'speaker' is a column or example key of its own; '2x' is not a Python "
                                            "identifier"):
        manifest_config(m, FS, label_columns=["speaker", "2x"])


# ------------------------------------------------------------------ 4. train CLI on a manifest
def test_train_cli_on_a_manifest(corpus, messy, tmp_path, capsys):
    root = tmp_path / "big"
    m = write_manifest(root / "big.csv", make_corpus(root, 12, ("neutral", "angry", "sad"), 3, n_val=2, n_test=2),
                       ("path", "speaker", "emotion", "split"))
    common = ["--feature_set", FS, "--speed_perturb", "false", "--epochs", "2", "--latent_dim", "32",
              "--mask_groups", "8", "--encoder_units", "32", "--decoder_units", "32", "--head_units", "16",
              "--verbose", "0",
              "--data_dir", str(tmp_path / "tfds"), "--output_dir", str(tmp_path / "runs"),
              "--export_dir", str(tmp_path / "sm"), "--eval_attackers", "fast"]
    assert train.main(["--dataset", str(m), *common]) == 0
    out = capsys.readouterr().out
    assert "72 train / 18 validation utterances, 8 training speakers" in out
    summary = json.loads((tmp_path / "runs" / f"big-{FS}-lrvae" / "summary.json").read_text())
    assert summary["emotion_names"] == ["angry", "neutral", "sad"] and summary["input_dim"] == 88
    assert summary["dataset"].startswith("audio_manifest/big-")
    loaded = tf.saved_model.load(str(tmp_path / "sm" / f"big-{FS}-lrvae" / "1"))
    x = tf.zeros((3, 88))
    assert loaded.signatures["identity_free"](features=x)["latent"].shape == (3, 32)

    messy_manifest, _ = messy
    rc = train.main(["--dataset", str(messy_manifest), *common, "--run_name", "messy"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "tfvae.train: error: 8 bad item(s); none were skipped" in err
    assert "bad/corrupt (" in err and "cannot read audio" in err and "--skip_bad_items true" in err
    assert not (tmp_path / "runs" / "messy").exists()
