"""``--feature_set <arch>@<encoder>``: datasets of speaker-encoder embeddings, LR-VAE training on them, and the
waveform-in export served over gRPC by ``tfvae.serve`` (issue 11)."""

import csv
import io
import json

import grpc
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import tensorflow_datasets as tfds

import tfvae_datasets  # noqa: F401
from tfvae import synth
from tfvae.data import DataError, load_corpus
from tfvae.labelled_audio import BadItemsError
from tfvae.speaker.encoders import build_encoder
from tfvae.speaker.export import export_speaker_encoder, read_metadata
from tfvae.speaker.extract import Extractor
from tfvae.speaker.presets import preset
from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import ManifestError, manifest_config

EMOTIONS = ("angry", "sad", "happy")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 synthetic speakers x 3 emotions x 2 utterances as 16 kHz WAV, plus one 0.3 s file (too short)."""
    root = tmp_path_factory.mktemp("enc_corpus")
    (root / "wav").mkdir()
    rows = []
    for s in range(12):
        split = "train" if s < 8 else ("validation" if s < 10 else "test")
        v = synth.make_voice(s, 21)
        for e, emo in enumerate(EMOTIONS):
            for u in range(2):
                name = f"wav/s{s:02d}_{emo}_{u}.wav"
                sf.write(root / name, synth.synthesize(v, emo if emo in synth.EMOTIONS else "neutral", u, 21), 16000,
                         subtype="PCM_16")
                rows.append({"path": name, "speaker": f"s{s:02d}", "emotion": emo, "split": split})
    short = synth.synthesize(synth.make_voice(0, 21), "sad", 9, 21)[:4800]
    sf.write(root / "wav/short.wav", short, 16000, subtype="PCM_16")
    with open(root / "all.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "emotion", "split"])
        w.writeheader()
        w.writerows(rows)
    with open(root / "clean.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "speaker", "emotion", "split"])
        w.writeheader()
        w.writerows(rows)
        w.writerow({"path": "wav/short.wav", "speaker": "s00", "emotion": "sad", "split": "train"})
    return {"root": root, "manifest": root / "all.csv", "with_short": root / "clean.csv", "rows": rows}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    return export_speaker_encoder(build_encoder(preset("xvector_small")), root, "xv", {"note": "untrained, for tests"})


def test_embedding_dataset_matches_the_encoder(corpus, encoder, tmp_path):
    data_dir = tmp_path / "tfds"
    cfg = manifest_config(corpus["manifest"], f"xvector@{encoder.parent}")
    assert cfg.feature_set == f"xvector@{encoder.resolve()}" and cfg.name.endswith(
        "-xvector-" + read_metadata(encoder)[1]["weights_sha256"][:12])
    b = tfds.builder("audio_manifest", config=cfg, data_dir=str(data_dir))
    b.download_and_prepare()
    assert b.info.features["features"].shape == (128,)
    meta = b.info.metadata
    assert meta["encoder"]["arch"] == "xvector" and meta["encoder_fingerprint"] == meta["encoder"]["weights_sha256"][:12]
    ex = {e["utterance_id"].decode(): e for e in tfds.as_numpy(b.as_dataset(split="train"))}
    assert len(ex) == 8 * 6
    ids = sorted(ex)[:5]
    audio = [sf.read(corpus["root"] / f"{i}.wav", dtype="float32")[0] for i in ids]
    want, errors = Extractor(str(encoder))(audio)
    assert not errors
    np.testing.assert_allclose(np.stack([ex[i]["features"] for i in ids]), want, rtol=1e-4, atol=1e-4)
    c = load_corpus(str(corpus["manifest"]), f"xvector@{encoder}", data_dir=str(data_dir))
    assert c.dim == 128 and len(c.splits["test"]) == 12


def test_too_short_audio_is_a_bad_item(corpus, encoder, tmp_path):
    fs = f"xvector@{encoder}"
    with pytest.raises(BadItemsError, match=r"short .*shorter than the encoder minimum \(0.50 s\): 4800 samples"):
        tfds.builder("audio_manifest", config=manifest_config(corpus["with_short"], fs),
                     data_dir=str(tmp_path)).download_and_prepare()
    b = tfds.builder("audio_manifest", config=manifest_config(corpus["with_short"], fs, skip_bad_items=True),
                     data_dir=str(tmp_path))
    b.download_and_prepare()
    assert b.info.metadata["skipped"]["count"] == 1 and b.info.splits["train"].num_examples == 48


def test_encoder_feature_set_errors(corpus, encoder, tmp_path):
    with pytest.raises(ManifestError, match="is a xvector, not resnet_vlad"):
        manifest_config(corpus["manifest"], f"resnet_vlad@{encoder}")
    with pytest.raises(ManifestError, match="not a SavedModel"):
        manifest_config(corpus["manifest"], f"xvector@{tmp_path}")
    with pytest.raises(DataError, match="no such directory"):
        load_corpus("ravdess", f"xvector@{tmp_path / 'missing'}", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="tfvae_demo does not extract speaker-encoder embeddings"):
        load_corpus("tfvae_demo", f"xvector@{encoder}", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="not utterance feature vectors"):
        load_corpus(str(corpus["manifest"]), "audio16k", data_dir=str(tmp_path / "a"))


def _wav_bytes(x):
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_train_export_waveform_in_and_serve_over_grpc(corpus, encoder, tmp_path):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from test_serve import _start, _stop
    from tfvae.export import main as export_main
    from tfvae.export_waveform import export_waveform_encoder
    from tfvae.train import main

    fs = f"xvector@{encoder}"
    runs, models = tmp_path / "runs", tmp_path / "models"
    assert main(["--dataset", str(corpus["manifest"]), "--feature_set", fs, "--data_dir", str(tmp_path / "tfds"),
                 "--epochs", "2", "--batch_size", "16", "--output_dir", str(runs), "--export_dir", str(tmp_path / "fx"),
                 "--verbose", "0", "--latent_dim", "16", "--mask_groups", "4"]) == 0
    run = runs / "all-xvector-xv-lrvae"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["speaker_encoder"]["fingerprint"] == read_metadata(encoder)[1]["weights_sha256"][:12]
    assert export_main(["--run_dir", str(run), "--export_dir", str(models), "--name", "wave", "--waveform_in"]) == 0
    path = models / "wave" / "1"
    warm = list(tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests")))
    sigs = tf.saved_model.load(str(path)).signatures
    assert len(warm) == len(sigs)  # one TF Serving warm-up request per signature (zeros would fail the audio checks)
    assert {"serving_default", "identity_free", "emotion_free", "identity_free_wav", "emotion_free_wav"} <= set(sigs)
    x = synth.synthesize(synth.make_voice(3, 21), "angry", 0, 21)
    local = sigs["identity_free"](waveform=tf.constant(x[None]), lengths=tf.constant([len(x)]))["latent"].numpy()
    keep = np.asarray(json.loads((run / "mask.json").read_text())["masks"]["identity_free"], bool)
    assert local.shape == (1, 16) and np.all(local[0, ~keep] == 0) and np.any(local[0, keep] != 0)
    with pytest.raises(ValueError, match="gives 64-d embeddings; the run was trained on 128-d"):
        other = export_speaker_encoder(build_encoder(preset("xvector_small", embedding_dim=64)), tmp_path / "enc", "x64", {})
        export_waveform_encoder(run, tmp_path / "other", encoder=str(other))
    # the waveform-in model served by tfvae.serve, called with TF Serving's own client stub and protos
    config = models / "models.config"
    info = _start(["--model_config_file", str(config)], tmp_path)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{info['port']}") as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            req = predict_pb2.PredictRequest()
            req.model_spec.name, req.model_spec.signature_name = "wave", "identity_free_wav"
            req.inputs["wav"].CopyFrom(tf.make_tensor_proto([_wav_bytes(x)]))
            got = tf.make_ndarray(stub.Predict(req, timeout=60).outputs["latent"])
            np.testing.assert_allclose(got, local, atol=1e-2)  # 16-bit WAV quantisation
            req = predict_pb2.PredictRequest()
            req.model_spec.name, req.model_spec.signature_name = "wave", "identity_free"
            req.inputs["waveform"].CopyFrom(tf.make_tensor_proto(x[None]))
            req.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([len(x)], np.int32)))
            np.testing.assert_allclose(tf.make_ndarray(stub.Predict(req, timeout=60).outputs["latent"]), local, atol=1e-5)
            req.inputs["waveform"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 16000), np.float32)))
            req.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([16000], np.int32)))
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(req, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "silent audio" in err.value.details()
    finally:
        assert _stop(info) == 0
