"""Speaker-encoder training, pipeline, export and CLI (``python -m tfvae.speaker_encoder``) on synthetic speakers."""

import io
import json

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from tfvae import synth
from tfvae.speaker.export import SpeakerEncoderError, load_speaker_encoder, read_metadata
from tfvae.speaker.pipeline import AudioSourceError, CropPipeline, open_source, utterance_batches
from tfvae.speaker_encoder import main

DATASET = "tfvae_demo/speakers_small"


@pytest.fixture(scope="module")
def speakers_dir(tmp_path_factory) -> str:
    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401

    d = str(tmp_path_factory.mktemp("tfds_speakers"))
    tfds.builder(DATASET, data_dir=d).download_and_prepare()
    return d


@pytest.fixture(scope="module")
def trained(speakers_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("spk_run")
    argv = ["train", "--arch", "xvector", "--dataset", DATASET, "--data_dir", speakers_dir, "--epochs", "2",
            "--batch_size", "16", "--output_dir", str(out / "runs"), "--export_dir", str(out / "sm"),
            "--verbose", "0", "--head", "softmax"]
    assert main(argv) == 0
    run = out / "runs" / "xvector_small-tfvae_demo-speakers_small"
    return run, json.loads((run / "report.json").read_text())


def test_source_and_crops(speakers_dir):
    src = open_source(DATASET, "train", data_dir=speakers_dir)
    assert src.audio_key == "audio" and src.speaker_key == "speaker" and src.sample_rate == 16000
    n_spk = len(set(src.speakers.tolist()))
    pipe = CropPipeline(src, min_crop=1.0, max_crop=2.0)
    assert len(pipe.speaker_index) == n_spk and pipe.size == len(src.speakers)  # balanced corpus: nothing dropped
    a = list(pipe.dataset(8, seed=3, epochs=range(1, 2)))
    b = list(pipe.dataset(8, seed=3, epochs=range(1, 2)))
    c = list(pipe.dataset(8, seed=3, epochs=range(2, 3)))
    assert len(a) == pipe.size // 8
    x = a[0]
    assert x["waveform"].shape == (8, 32000) and x["lengths"].dtype == tf.int32
    lengths = np.concatenate([v["lengths"].numpy() for v in a])
    assert lengths.min() >= 16000 and lengths.max() <= 32000 and len(set(lengths.tolist())) > 5  # random 1-2 s crops
    for v in a:  # zero padding after each crop
        w, n = v["waveform"].numpy(), v["lengths"].numpy()
        assert all(np.all(w[i, n[i]:] == 0) and np.abs(w[i, :n[i]]).max() > 1e-3 for i in range(len(n)))
    np.testing.assert_array_equal(a[0]["waveform"].numpy(), b[0]["waveform"].numpy())  # same seed and epoch
    assert not np.array_equal(a[0]["speaker"].numpy(), c[0]["speaker"].numpy())  # another epoch, another order
    labels = np.concatenate([v["speaker"].numpy() for v in a])
    assert labels.min() >= 0 and labels.max() < n_spk
    # skipping batches (a resumed run) replays the same stream
    resumed = list(pipe.dataset(8, seed=3, epochs=range(1, 2), skip_batches=2))
    np.testing.assert_array_equal(resumed[0]["waveform"].numpy(), a[2]["waveform"].numpy())


def test_balance_caps_frequent_speakers(speakers_dir):
    src = open_source(DATASET, "train", data_dir=speakers_dir)
    first = sorted(set(src.speakers.tolist()))[0]
    extra = np.concatenate([src.speakers, np.full(12, first)])  # pretend one speaker has 4x the utterances
    src.speakers = extra
    pipe = CropPipeline(src)
    med = np.median(list(pipe.counts.values()))
    assert pipe.accept[first] == pytest.approx(med / pipe.counts[first]) and pipe.accept[first] < 1
    assert CropPipeline(src, balance=False).accept[first] == 1.0


def test_source_errors(speakers_dir, demo_data_dir):
    with pytest.raises(AudioSourceError, match="no split 'dev'"):
        open_source(DATASET, "dev", data_dir=speakers_dir)
    with pytest.raises(AudioSourceError, match="has no audio feature"):
        open_source("tfvae_demo/is10_small", "train", data_dir=demo_data_dir)
    with pytest.raises(AudioSourceError, match="no utterances of speaker"):
        CropPipeline(open_source(DATASET, "train", data_dir=speakers_dir), speakers=["nobody"])
    with pytest.raises(ValueError, match="0 < min_crop <= max_crop"):
        CropPipeline(open_source(DATASET, "train", data_dir=speakers_dir), min_crop=3, max_crop=2)


def test_train_reports_held_out_eer_and_exports(trained):
    run, report = trained
    assert report["best_epoch"] in (1, 2) and 0 <= report["val_eer"] <= 1
    assert report["test"]["speakers"] == 4 and 0 <= report["test"]["eer"] <= 1
    assert report["train_speakers"] == 32
    assert (run / "history.csv").exists() and list((run / "tb").iterdir()) and (run / "encoder.weights.h5").exists()
    assert not (run / "backup").exists()
    d, meta = read_metadata(report["export"])
    assert meta["arch"] == "xvector" and meta["embedding_dim"] == 128 and len(meta["weights_sha256"]) == 64


def _wav(x, rate=16000):
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_export_signatures_and_input_checks(trained):
    _, report = trained
    loaded, meta = load_speaker_encoder(report["export"])
    f, g = loaded.signatures["serving_default"], loaded.signatures["embed_wav"]
    x = synth.synthesize(synth.make_voice(5, 9), "angry", 0, 9)
    y = synth.synthesize(synth.make_voice(6, 9), "sad", 1, 9)
    n = max(len(x), len(y))
    emb = f(waveform=tf.constant(np.stack([np.pad(x, (0, n - len(x))), np.pad(y, (0, n - len(y)))])),
            lengths=tf.constant([len(x), len(y)], tf.int32))["embedding"].numpy()
    assert emb.shape == (2, 128)
    from_wav = g(wav=tf.constant([_wav(x), _wav(y)]))["embedding"].numpy()
    cos = np.sum(emb * from_wav, 1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(from_wav, axis=1)
    assert cos.min() > 0.999  # 16-bit WAV quantisation only
    bad = [(dict(waveform=tf.constant(x[None, :4000]), lengths=tf.constant([4000])), "shorter than the encoder minimum"),
           (dict(waveform=tf.zeros([1, 16000]), lengths=tf.constant([16000])), "silent audio"),
           (dict(waveform=tf.constant(np.full((1, 16000), np.nan, np.float32)), lengths=tf.constant([16000])), "finite"),
           (dict(waveform=tf.constant(x[None]), lengths=tf.constant([len(x) + 5])), "exceeds the waveform")]
    for kwargs, message in bad:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            f(**kwargs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="16000 Hz"):
        g(wav=tf.constant([_wav(x, 8000)]))


def test_evaluate_cli_and_not_an_encoder(trained, speakers_dir, tmp_path, capsys):
    run, report = trained
    assert main(["evaluate", "--encoder", report["export"], "--dataset", DATASET, "--data_dir", speakers_dir]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eer"] == pytest.approx(report["test"]["eer"], abs=1e-6) and out["speakers"] == 4
    (tmp_path / "eval.json").write_text(json.dumps(out))
    assert main(["report", str(run), "--evaluations", str(tmp_path / "eval.json"), "--out", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert f"| {100 * report['test']['eer']:.2f} | 4 / 16 |" in md and "| xvector_small-tfvae_demo-speakers_small |" in md
    capsys.readouterr()
    (tmp_path / "plain").mkdir()
    tf.saved_model.save(tf.Module(), str(tmp_path / "plain"))
    assert main(["evaluate", "--encoder", str(tmp_path / "plain"), "--dataset", DATASET, "--data_dir", speakers_dir]) == 2
    assert "not a tfvae speaker encoder" in capsys.readouterr().err
    with pytest.raises(SpeakerEncoderError, match="no such directory"):
        read_metadata(tmp_path / "missing")


def test_fine_tune_per_fold_from_export(trained, speakers_dir, tmp_path):
    _, report = trained
    argv = ["train", "--arch", "xvector", "--dataset", DATASET, "--data_dir", speakers_dir, "--epochs", "1",
            "--batch_size", "16", "--output_dir", str(tmp_path / "runs"), "--export_dir", str(tmp_path / "sm"),
            "--verbose", "0", "--init_from", report["export"], "--folds", "4", "--fold", "1"]
    assert main(argv) == 0
    fold = json.loads((tmp_path / "runs" / "xvector_small-tfvae_demo-speakers_small-fold1" / "report.json").read_text())
    assert fold["fold"] == 1 and fold["init_from"]["weights"].endswith("encoder.weights.h5")
    assert fold["train_speakers"] == 20 and fold["test"]["speakers"] == 10  # 40 speakers: 10 test, 10 validation
    wrong = argv[:2] + ["resnet_vlad"] + argv[3:]
    assert main(wrong) == 2


def test_voxceleb_schema_is_a_training_source(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        src = open_source("voxceleb", "train", data_dir=str(tmp_path), build=False)
        assert (src.audio_key, src.speaker_key) == ("audio", "label")
        batches = utterance_batches(src, batch_size=4, max_seconds=1.0)
        inputs, names = next(iter(batches))
        assert inputs["waveform"].shape[0] == 4 and inputs["waveform"].dtype == tf.float32 and names.dtype == tf.string


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfvae.speaker_encoder import main
out = sys.argv[1]
code = main(["train", "--arch", "resnet_vlad", "--dataset", "tfvae_demo/speakers_small", "--data_dir", sys.argv[2],
             "--epochs", "1", "--batch_size", "8", "--strategy", "mirrored", "--output_dir", out + "/runs",
             "--export_dir", out + "/sm", "--verbose", "0", "--min_crop", "1", "--max_crop", "2"])
print("REPORT", open(out + "/runs/resnet_vlad_small-tfvae_demo-speakers_small/report.json").read().replace("\\n", " "))
sys.exit(code)
"""


def test_mirrored_strategy_over_two_logical_cpus(speakers_dir, tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path), speakers_dir], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(r.stdout.split("REPORT", 1)[1])
    assert report["replicas"] == 2 and report["global_batch"] == 16 and report["arch"] == "resnet_vlad"
    assert 0 <= report["test"]["eer"] <= 1
