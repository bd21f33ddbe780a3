"""audio_manifest's audio16k config (waveforms) and bring-your-own embeddings (.npy column, Kaldi scp/ark)."""

import csv
import hashlib
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

import tfvae_datasets  # noqa: F401
from tfvae import synth
from tfvae.audio import from_int16, resample
from tfvae.data import load_corpus
from tfvae.labelled_audio import BadItemsError
from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import Builder, ManifestError, manifest_config

SPLITS = ("train", "validation", "test")


def write_manifest(path: Path, rows: list, columns) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def build(cfg, data_dir):
    b = tfds.builder("audio_manifest", config=cfg, data_dir=str(data_dir))
    b.download_and_prepare()
    return b


def examples(b, split):
    return {e["utterance_id"].decode(): e for e in tfds.as_numpy(b.as_dataset(split=split))}


def num_examples(b):
    return {s: b.info.splits[s].num_examples for s in SPLITS}


# ------------------------------------------------------------------ audio16k over a manifest
def _speech(voice, emotion, u, seconds, rate):
    x = synth.synthesize(synth.make_voice(voice), emotion, u)
    return resample(x, 16000, rate)[: int(round(seconds * rate))]


def make_audio_corpus(root: Path) -> Path:
    """4 speakers, 2 utterances each, at 48 kHz, 22.05 kHz (stereo FLAC) and 16 kHz."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for s, split in enumerate(("train", "train", "validation", "test")):
        for u, emotion in enumerate(("sad", "angry")):
            name = f"wav/spk{s}_{u}"
            if s == 0:  # 0.5 s at 48 kHz -> 8000 samples at 16 kHz
                sf.write(root / f"{name}.wav", _speech(s, emotion, u, 0.5, 48000), 48000, subtype="PCM_16")
                name += ".wav"
            elif s == 1:  # stereo FLAC at 22.05 kHz, 0.6 s = 13230 frames -> 9600 samples
                x = _speech(s, emotion, u, 0.6, 22050)
                sf.write(root / f"{name}.flac", np.stack([x, x], axis=1), 22050, subtype="PCM_16")
                name += ".flac"
            else:  # 16 kHz, 0.75 s
                sf.write(root / f"{name}.wav", _speech(s, emotion, u, 0.75, 16000), 16000, subtype="PCM_16")
                name += ".wav"
            rows.append({"path": name, "speaker": f"spk{s}", "emotion": emotion, "split": split})
    return write_manifest(root / "audio.csv", rows, ("path", "speaker", "emotion", "split"))


AUDIO_ROOT = Path(tempfile.mkdtemp(prefix="manifest_audio16k_"))
AUDIO_MANIFEST = make_audio_corpus(AUDIO_ROOT)


class ManifestAudio16kTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's own builder checks (generation, as_dataset, reload) on the audio16k config."""

    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = [manifest_config(AUDIO_MANIFEST, "audio16k", workers=1)]
    SPLITS = {"train": 4, "validation": 2, "test": 2}
    EXAMPLE_DIR = str(AUDIO_ROOT)
    SKIP_CHECKSUMS = True
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False  # the manifest builder resolves paths with os.path

    def _make_builder(self, config=None):  # the registered placeholder config has no manifest
        return super()._make_builder(config=config or self.BUILDER_CONFIG_NAMES_TO_TEST[0])


def test_manifest_audio16k_waveforms_lengths_and_values(tmp_path):
    cfg = manifest_config(AUDIO_MANIFEST, "audio16k", workers=2)
    assert re.fullmatch(r"audio-[0-9a-f]{8}-audio16k", cfg.name)
    assert cfg.name.rsplit("-", 2)[1] == manifest_config(AUDIO_MANIFEST, "IS10").name.rsplit("-", 2)[1]
    b = build(cfg, tmp_path)
    audio = b.info.features["audio"]
    assert audio.sample_rate == 16000 and audio.shape == (None,) and audio.np_dtype == np.int16
    assert "features" not in b.info.features and b.info.supervised_keys == ("audio", "emotion")
    meta = b.info.metadata
    assert meta["feature_set"] == "audio16k" and meta["sample_rate"] == 16000 and "feature_names" not in meta
    assert meta["class_counts"]["train"] == {"angry": 2, "sad": 2} and meta["speakers_per_split"]["train"] == 2
    ex = {**examples(b, "train"), **examples(b, "validation"), **examples(b, "test")}
    assert len(ex) == 8
    e = ex["wav/spk0_0"]
    assert e["audio"].dtype == np.int16 and e["audio"].shape == (8000,)
    assert e["duration"] == pytest.approx(0.5)
    assert ex["wav/spk1_1"]["audio"].shape == (9600,) and ex["wav/spk1_1"]["duration"] == pytest.approx(0.6)
    assert ex["wav/spk3_0"]["audio"].shape == (12000,)
    # a 16 kHz file is stored as it is (PCM_16 round trip, no resampling)
    x, _ = sf.read(AUDIO_ROOT / "wav/spk2_1.wav", dtype="int16")
    np.testing.assert_array_equal(ex["wav/spk2_1"]["audio"], x)
    # the 48 kHz file resampled: close to the synthesizer's own 16 kHz signal
    ref = _speech(0, "sad", 0, 0.5, 16000)
    assert np.corrcoef(from_int16(e["audio"])[200:-200], ref[200:-200])[0, 1] > 0.97


def test_manifest_audio16k_bad_files_reported_and_skipped(tmp_path):
    rows = list(csv.DictReader(open(AUDIO_MANIFEST)))
    root = AUDIO_ROOT
    sf.write(root / "wav/silent.wav", np.zeros(8000, np.float32), 16000)
    sf.write(root / "wav/empty.wav", np.zeros(0, np.float32), 48000)
    (root / "wav/corrupt.flac").write_bytes(b"fLaC" + bytes(200))
    rows += [{"path": "wav/silent.wav", "speaker": "spk0", "emotion": "sad", "split": "train"},
             {"path": "wav/empty.wav", "speaker": "spk1", "emotion": "angry", "split": "train"},
             {"path": "wav/corrupt.flac", "speaker": "spk3", "emotion": "sad", "split": "test"},
             {"path": "wav/gone.wav", "speaker": "spk2", "emotion": "sad", "split": "validation"}]
    m = write_manifest(root / "messy.csv", rows, ("path", "speaker", "emotion", "split"))
    with pytest.raises(BadItemsError) as e:
        build(manifest_config(m, "audio16k", workers=2), tmp_path / "a")
    msg = str(e.value)
    assert msg.startswith("4 bad item(s); none were skipped")
    for uid, reason in {"wav/silent": "silent signal (peak amplitude below 0.0001)",
                        "wav/empty": "empty signal (0 samples)", "wav/corrupt": "cannot read audio",
                        "wav/gone": "file not found"}.items():
        assert re.search(rf"^  {re.escape(uid)} \(.*\): .*{re.escape(reason)}", msg, re.M), (uid, msg)
    b = build(manifest_config(m, "audio16k", workers=2, skip_bad_items=True), tmp_path / "b")
    assert num_examples(b) == {"train": 4, "validation": 2, "test": 2}
    assert b.info.metadata["skipped"]["count"] == 4
    report = json.loads((Path(b.data_path) / "bad_items.json").read_text())
    assert sorted(i["utterance_id"] for i in report["items"]) == ["wav/corrupt", "wav/empty", "wav/gone", "wav/silent"]


# ------------------------------------------------------------------ embeddings: .npy column
D = 16


def vectors(n, dim=D, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def embedding_rows(n_speakers=6, per_speaker=3):
    rows = []
    for s in range(n_speakers):
        split = "train" if s < n_speakers - 2 else "validation" if s == n_speakers - 2 else "test"
        for u in range(per_speaker):
            rows.append({"utterance_id": f"s{s}_u{u}", "speaker": f"s{s}", "emotion": ("sad", "angry")[u % 2],
                         "split": split, "gender": ("f", "M")[s % 2]})
    return rows


@pytest.fixture()
def npy_corpus(tmp_path):
    root = tmp_path / "npy"
    (root / "emb").mkdir(parents=True)
    rows = embedding_rows()
    vecs = vectors(len(rows))
    for r, v in zip(rows, vecs):
        np.save(root / "emb" / f"{r['utterance_id']}.npy", v)
        r["embedding"] = f"emb/{r['utterance_id']}.npy"
    rows[0]["embedding"] = str(root / rows[0]["embedding"])  # absolute paths work too
    return root, rows, {r["utterance_id"]: v for r, v in zip(rows, vecs)}


def test_npy_column_build_values_and_load_corpus(npy_corpus, tmp_path):
    root, rows, vecs = npy_corpus
    m = write_manifest(root / "emb.csv", rows, ("embedding", "speaker", "emotion", "split", "utterance_id", "gender"))
    cfg = manifest_config(m, "embeddings")
    assert re.fullmatch(r"emb-[0-9a-f]{8}-embeddings", cfg.name)
    b = build(cfg, tmp_path / "tfds")
    assert num_examples(b) == {"train": 12, "validation": 3, "test": 3}
    assert b.info.features["features"].shape == (D,)
    meta = b.info.metadata
    assert meta["feature_set"] == "embeddings" and meta["embedding_dim"] == D
    assert meta["embedding_source"] == {"type": "npy column", "column": "embedding"}
    assert meta["embedding_dim_from"] == "first readable vector (s0_u0)"
    assert meta["class_counts"]["train"] == {"angry": 4, "sad": 8} and meta["skipped"]["count"] == 0
    got = {**examples(b, "train"), **examples(b, "validation"), **examples(b, "test")}
    assert sorted(got) == sorted(vecs)
    for uid, e in got.items():
        np.testing.assert_array_equal(e["features"], vecs[uid])
        assert np.isnan(e["duration"])
    assert got["s5_u1"]["speaker"] == b"s5" and b.info.features["emotion"].int2str(got["s5_u1"]["emotion"]) == "angry"
    assert {uid: b.info.features["gender"].int2str(e["gender"]) for uid, e in got.items()} == \
        {uid: ("female", "male")[int(uid[1]) % 2] for uid in got}
    assert meta["gender_counts"]["train"] == {"female": 6, "male": 6, "unknown": 0}

    c = load_corpus(str(m), feature_set="embeddings", data_dir=str(tmp_path / "tfds"))
    assert c.name == f"audio_manifest/{cfg.name}" and c.feature_set == "embeddings" and c.dim == D
    assert {s: len(c.splits[s]) for s in SPLITS} == {"train": 12, "validation": 3, "test": 3}
    i = list(c.splits["test"].utterance_id).index("s5_u2")
    np.testing.assert_array_equal(c.splits["test"].features[i], vecs["s5_u2"])
    assert c.feature_names is None and c.emotion_names == ["angry", "sad"]


def test_npy_bad_vectors_named_with_reasons_and_skipped(npy_corpus, tmp_path):
    root, rows, _ = npy_corpus
    bad_dir = root / "bad"
    bad_dir.mkdir()
    np.save(bad_dir / "short.npy", vectors(1, 12)[0])
    nan = vectors(1, seed=3)[0]
    nan[[2, 5]] = [np.nan, np.inf]
    np.save(bad_dir / "nan.npy", nan)
    np.save(bad_dir / "matrix.npy", vectors(2))
    (bad_dir / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    extra = [{"utterance_id": u, "speaker": "s0", "emotion": "sad", "split": "train", "embedding": f"bad/{u}.npy"}
             for u in ("short", "nan", "matrix", "corrupt", "gone")]
    m = write_manifest(root / "bad.csv", rows + extra, ("embedding", "speaker", "emotion", "split", "utterance_id"))
    with pytest.raises(BadItemsError) as e:
        build(manifest_config(m, "embeddings"), tmp_path / "a")
    msg = str(e.value)
    assert msg.startswith("5 bad item(s); none were skipped")
    expect = {"short": "manifest line 20: wrong embedding dimension: expected 16, got 12",
              "nan": "manifest line 21: embedding has 2 NaN or infinite value(s)",
              "matrix": "manifest line 22: embedding is not a 1-D vector: shape (2, 16)",
              "corrupt": "manifest line 23: cannot read .npy embedding (",
              "gone": f"manifest line 24: embedding file not found: {bad_dir / 'gone.npy'}"}
    for uid, reason in expect.items():
        assert re.search(rf"^  {uid} \({re.escape(str(bad_dir / uid))}\.npy\): {re.escape(reason)}", msg, re.M), \
            (uid, msg)
    b = build(manifest_config(m, "embeddings", skip_bad_items=True), tmp_path / "b")
    assert num_examples(b) == {"train": 12, "validation": 3, "test": 3}
    assert b.info.metadata["skipped"]["count"] == 5
    report = json.loads((Path(b.data_path) / "bad_items.json").read_text())
    assert sorted(i["utterance_id"] for i in report["items"]) == sorted(expect)
    # embedding_dim given: vectors of another dimension are the bad ones
    cfg = manifest_config(m, "embeddings", embedding_dim=12)
    assert cfg.name != manifest_config(m, "embeddings").name
    with pytest.raises(BadItemsError) as e:
        build(cfg, tmp_path / "c")
    assert str(e.value).startswith("22 bad item(s)")  # 18 good-but-16-d rows + nan, matrix, corrupt, gone
    assert "  s3_u1 (" in str(e.value) and "wrong embedding dimension: expected 12, got 16" in str(e.value)
    assert "  short (" not in str(e.value)


def test_embedding_config_errors(npy_corpus, tmp_path):
    root, rows, _ = npy_corpus
    m = write_manifest(root / "nocol.csv", rows, ("speaker", "emotion", "split", "utterance_id"))
    with pytest.raises(ManifestError, match="lacks the required column\\(s\\) embedding"):
        manifest_config(m, "embeddings")
    with pytest.raises(ManifestError, match="lacks the required column\\(s\\) path"):
        manifest_config(m, "IS10")
    with pytest.raises(ManifestError, match="settings of feature_set='embeddings', not of 'IS10'"):
        manifest_config(m, "IS10", embeddings=root / "x.scp")
    with pytest.raises(ManifestError, match=f"embeddings file {tmp_path / 'none.scp'} does not exist"):
        manifest_config(m, "embeddings", embeddings=tmp_path / "none.scp")
    with pytest.raises(ManifestError, match="must be a Kaldi table"):
        manifest_config(m, "embeddings", embeddings=root / "emb" / "s0_u0.npy")
    with pytest.raises(ManifestError, match="embedding_dim=0 must be a positive integer"):
        manifest_config(m, "embeddings", embeddings=root / "emb" / "s0_u0.npy", embedding_dim=0)
    with pytest.raises(ManifestError, match="feature_set='IS11' is unknown; choose one of IS10, .*audio16k, "
                                            "embeddings"):
        manifest_config(m, "IS11")
    with pytest.raises(ManifestError, match="speaker encoder /m: no such directory"):  # <arch>@<encoder>
        manifest_config(m, "xvector@/m")
    unreadable = [dict(r, embedding="emb/none.npy") for r in rows]
    m2 = write_manifest(root / "none.csv", unreadable, ("embedding", "speaker", "emotion", "split", "utterance_id"))
    with pytest.raises(ManifestError, match="no readable 1-D embedding .* set embedding_dim"):
        tfds.builder("audio_manifest", config=manifest_config(m2, "embeddings"), data_dir=str(tmp_path))


# ------------------------------------------------------------------ embeddings: Kaldi scp / ark
@pytest.fixture()
def kaldi_corpus(tmp_path):
    import kaldiio

    root = tmp_path / "kaldi"
    root.mkdir()
    rows = embedding_rows()
    vecs = {r["utterance_id"]: v for r, v in zip(rows, vectors(len(rows), seed=1))}
    with kaldiio.WriteHelper(f"ark,scp:{root / 'xvector.ark'},{root / 'xvector.scp'}") as w:
        for uid, v in vecs.items():
            w(uid, v)
        w("not_in_manifest_1", vectors(1, seed=7)[0])
        w("not_in_manifest_2", vectors(1, seed=8)[0])
    return root, rows, vecs


def test_kaldi_scp_build_metadata_and_values(kaldi_corpus, tmp_path):
    root, rows, vecs = kaldi_corpus
    m = write_manifest(root / "utts.csv", rows, ("utterance_id", "speaker", "emotion", "split"))
    cfg = manifest_config(m, "embeddings", embeddings=root / "xvector.scp")
    assert re.fullmatch(r"utts-[0-9a-f]{8}-embeddings", cfg.name)
    b = build(cfg, tmp_path)
    assert num_examples(b) == {"train": 12, "validation": 3, "test": 3}
    meta = b.info.metadata
    scp = root / "xvector.scp"
    assert meta["embedding_source"] == {"type": "kaldi scp", "path": str(scp),
                                        "sha256": hashlib.sha256(scp.read_bytes()).hexdigest(), "keys": 20}
    assert meta["embedding_keys_not_in_manifest"] == 2 and meta["embedding_dim"] == D
    got = {**examples(b, "train"), **examples(b, "validation"), **examples(b, "test")}
    for uid, v in vecs.items():
        np.testing.assert_array_equal(got[uid]["features"], v)
    # the .ark directly gives the same vectors; another file -> another config name
    cfg_ark = manifest_config(m, "embeddings", embeddings=root / "xvector.ark")
    assert cfg_ark.name != cfg.name
    b2 = build(cfg_ark, tmp_path)
    assert b2.info.metadata["embedding_source"]["type"] == "kaldi ark"
    got2 = examples(b2, "test")
    np.testing.assert_array_equal(got2["s5_u0"]["features"], vecs["s5_u0"])


def test_kaldi_missing_key_wrong_dim_nan(kaldi_corpus, tmp_path):
    import kaldiio

    root, rows, vecs = kaldi_corpus
    bad = dict(vecs)
    bad["s0_u1"] = vectors(1, 8, seed=4)[0]
    bad["s1_u0"] = np.full(D, np.nan, np.float32)
    del bad["s2_u2"]
    with kaldiio.WriteHelper(f"ark,scp:{root / 'bad.ark'},{root / 'bad.scp'}") as w:
        for uid, v in bad.items():
            w(uid, v)
    m = write_manifest(root / "utts.csv", rows, ("utterance_id", "speaker", "emotion", "split"))
    with pytest.raises(BadItemsError) as e:
        build(manifest_config(m, "embeddings", embeddings=root / "bad.scp"), tmp_path / "a")
    msg = str(e.value)
    scp = root / "bad.scp"
    assert msg.startswith("3 bad item(s); none were skipped")
    assert f"  s2_u2 ({scp}): manifest line 10: missing key 's2_u2' in {scp}" in msg
    assert f"  s0_u1 ({scp}): manifest line 3: wrong embedding dimension: expected 16, got 8" in msg
    assert f"  s1_u0 ({scp}): manifest line 5: embedding has 16 NaN or infinite value(s)" in msg
    b = build(manifest_config(m, "embeddings", embeddings=scp, skip_bad_items=True), tmp_path / "b")
    assert num_examples(b) == {"train": 9, "validation": 3, "test": 3}
    assert b.info.metadata["skipped"]["count"] == 3 and b.info.metadata["embedding_keys_not_in_manifest"] == 0
