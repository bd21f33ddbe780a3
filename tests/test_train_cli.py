"""``python -m tfvae.train`` end to end on the small demo corpus, and its input errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfvae import train
from tfvae.data import Corpus, Split

SMALL = ["--dataset", "tfvae_demo/is10_small", "--speed_perturb", "false", "--latent_dim", "32", "--mask_groups", "8",
         "--encoder_units", "64", "--decoder_units", "64", "--head_units", "32", "--verbose", "0", "--eval_attackers", "fast"]


def test_cli_end_to_end(demo_data_dir, small_corpus, tmp_path):
    out, sm = tmp_path / "runs", tmp_path / "saved_models"
    r = subprocess.run([sys.executable, "-m", "tfvae.train", *SMALL, "--data_dir", demo_data_dir,
                        "--epochs", "4", "--output_dir", str(out), "--export_dir", str(sm), "--eval_attackers", "full"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "final training loss terms:" in r.stdout and "mask cuts (chosen on validation)" in r.stdout
    run = out / "tfvae_demo-is10_small-IS10-lrvae"
    for f in ("config.json", "best.weights.h5", "history.csv", "normalization.npz", "mask.json", "summary.json"):
        assert (run / f).exists(), f
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 4 and {"vae", "emo", "id", "emo_adv", "id_adv", "val_uar", "val_eer", "val_score"} <= set(rows[0])
    # the checkpoint is the epoch (after the adversaries' ramp-up) with the lowest validation score of both heads
    scores = [float(r["val_score"]) for r in rows]
    for r in rows:
        assert float(r["val_score"]) == pytest.approx(1 - float(r["val_uar"]) + float(r["val_eer"]))
    assert list((run / "tb").rglob("events.out.tfevents.*")), "TensorBoard logs"

    # normalisation statistics come from the training split only
    norm = np.load(run / "normalization.npz")
    train_x = small_corpus.splits["train"].features
    np.testing.assert_allclose(norm["mean"], train_x.mean(0), rtol=1e-4, atol=1e-3)
    all_x = np.concatenate([small_corpus.splits[s].features for s in ("train", "validation", "test")])
    assert not np.allclose(norm["mean"], all_x.mean(0), rtol=1e-4, atol=1e-3)
    assert len(norm["feature_names"]) == 1582

    summary = json.loads((run / "summary.json").read_text())
    mask = json.loads((run / "mask.json").read_text())
    assert mask["chosen_on"] == "validation" and len(mask["table"]) == 7
    assert summary["cuts"] == {"identity_free_cut": mask["identity_free_cut"],
                               "emotion_free_cut": mask["emotion_free_cut"]}
    assert set(summary["test"]) == {"origin", "identity_free", "emotion_free", "identity_free_leace",
                                    "emotion_free_leace", "model_heads"}
    # --select_after 0.5 of 4 epochs: the checkpoints from epoch ceil(0.5 * 4) = 2 on (epoch 1 is never kept)
    assert summary["best_epoch"] == 2 + int(np.argmin(scores[1:]))
    from tfvae.attackers import EMOTION_ATTACKERS, SPEAKER_ATTACKERS

    idf = summary["test"]["identity_free"]
    assert set(idf["emotion"]["attackers"]) == set(EMOTION_ATTACKERS)
    assert set(idf["speaker"]["attackers"]) == set(SPEAKER_ATTACKERS)
    assert idf["speaker"]["worst"]["eer"] == min(a["test"]["eer"] for a in idf["speaker"]["attackers"].values())

    path = sm / "tfvae_demo-is10_small-IS10-lrvae" / "1"
    report = json.loads((path / "assets.extra" / "privacy_report.json").read_text())
    assert report["measured_on"]["test"] == {"utterances": 20, "speakers": 2}
    worst = report["views"]["identity_free"]["speaker"]["worst_case"]
    assert worst["by"] in SPEAKER_ATTACKERS and worst["eer"] == idf["speaker"]["worst"]["eer"]
    lo, hi = worst["ci_eer"]
    assert lo <= worst["eer"] <= hi and worst["target_trials"] == 2 * 45 and worst["nontarget_trials"] == 100
    assert report["views"]["emotion_free"]["speaker"]["utility"]["by"] in SPEAKER_ATTACKERS
    assert report["attackers"] == {"emotion": sorted(EMOTION_ATTACKERS), "speaker": sorted(SPEAKER_ATTACKERS)}
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "identity_free", "emotion_free", "identity_free_leace",
                                      "emotion_free_leace", "mask", "emotion", "speaker_embedding",
                                      "keep_emotion", "keep_identity", "keep_emotion_leace", "keep_identity_leace"}
    from tfvae.erasure import load_erasers

    erasers = load_erasers(run / "erasure.npz")  # the exported projection is the saved one
    leace = loaded.signatures["identity_free_leace"](features=tf.constant(small_corpus.splits["test"].features))
    keep = np.asarray(mask["masks"]["identity_free"]) > 0
    z = tf.constant(small_corpus.splits["test"].features)
    want = erasers["identity_free_leace"](loaded.signatures["serving_default"](features=z)["latent"].numpy() * keep)
    np.testing.assert_allclose(leace["latent"].numpy(), want, rtol=1e-4, atol=1e-4)
    x = tf.constant(small_corpus.splits["test"].features)
    full = loaded.signatures["serving_default"](features=x)["latent"].numpy()
    idf = loaded.signatures["identity_free"](features=x)["latent"].numpy()
    cut = mask["identity_free_cut"]
    assert np.all(idf[:, cut:] == 0) and np.array_equal(idf[:, :cut], full[:, :cut])
    emf = loaded.signatures["emotion_free"](features=x)["latent"].numpy()
    cut = mask["emotion_free_cut"]
    assert np.all(emf[:, :cut] == 0) and np.array_equal(emf[:, cut:], full[:, cut:])


def test_avae_trains_one_model_per_protected_attribute(demo_data_dir, tmp_path, capsys):
    rc = train.main([*SMALL, "--method", "a-vae", "--epochs", "2", "--data_dir", demo_data_dir,
                     "--output_dir", str(tmp_path / "runs"), "--export_dir", str(tmp_path / "sm")])
    assert rc == 0
    sigs = {}
    for protect in ("identity", "emotion"):
        path = tmp_path / "sm" / f"tfvae_demo-is10_small-IS10-a-vae-{protect}" / "1"
        sigs[protect] = set(tf.saved_model.load(str(path)).signatures)
    assert sigs == {"identity": {"serving_default", "identity_free", "identity_free_leace", "keep_emotion",
                                 "keep_emotion_leace", "mask", "emotion"},
                    "emotion": {"serving_default", "emotion_free", "emotion_free_leace", "keep_identity",
                                "keep_identity_leace", "mask", "speaker_embedding"}}


@pytest.mark.parametrize("argv, message", [
    (["--method", "gan"], "invalid choice: 'gan'"),
    (["--latent_dim", "100"], "latent_dim=100 cannot be split into mask_groups=32"),
    (["--feature_set", "MFCC"], "feature set 'MFCC' is unknown; choose an openSMILE set"),
    (["--feature_set", "audio16k"], "holds waveforms, not utterance vectors"),
    (["--epochs", "-1"], "epochs=-1 must be >= 1"),
    (["--batch_order", "speakers"], "invalid choice: 'speakers'"),
])
def test_bad_flags_fail_before_any_work(argv, message, tmp_path, capsys):
    try:
        rc = train.main([*argv, "--output_dir", str(tmp_path / "runs")])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_wrong_feature_set_for_dataset_is_reported(demo_data_dir, tmp_path, capsys):
    import tensorflow_datasets as tfds

    tfds.builder("tfvae_demo/egemapsv02_small", data_dir=demo_data_dir).download_and_prepare()
    rc = train.main(["--dataset", "tfvae_demo/egemapsv02_small", "--data_dir", demo_data_dir,
                     "--speed_perturb", "false",
                     "--output_dir", str(tmp_path / "runs")])
    assert rc == 2
    assert "holds eGeMAPSv02 features but --feature_set is IS10" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_nan_features_and_empty_split_stop_before_training(monkeypatch, tmp_path, capsys):
    rng = np.random.default_rng(0)

    def split(n, spk, tag):
        return Split(rng.normal(size=(n, 1582)).astype(np.float32), np.arange(n) % 5,
                     np.array([f"{tag}{i % spk}" for i in range(n)]), np.array([f"{tag}_{i}" for i in range(n)]))

    corpus = Corpus("bad", "IS10", ["n", "a", "s", "h", "d"], {
        "train": split(20, 4, "tr"), "validation": split(0, 1, "va"), "test": split(10, 2, "te")})
    corpus.splits["train"].features[7, 100] = np.nan
    monkeypatch.setattr("tfvae.data.load_corpus", lambda *a, **k: corpus)
    rc = train.main(["--output_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "split 'train': 1 utterance(s) have NaN or infinite features: tr_7" in err
    assert "split 'validation' of bad is empty" in err
    assert not (tmp_path / "runs").exists()


def test_same_seed_same_results(demo_data_dir, tmp_path):
    import json

    summaries = []
    for i in range(2):
        args = [*SMALL, "--epochs", "2", "--data_dir", demo_data_dir, "--seed", "7",
                "--output_dir", str(tmp_path / f"runs{i}"), "--export_dir", str(tmp_path / f"sm{i}")]
        assert train.main(args) == 0
        summaries.append(json.loads((tmp_path / f"runs{i}" / "tfvae_demo-is10_small-IS10-lrvae" /
                                     "summary.json").read_text()))
    a, b = summaries
    assert a["final_epoch_metrics"] == b["final_epoch_metrics"]
    assert a["cuts"] == b["cuts"] and a["test"] == b["test"]


def test_three_attribute_run_exports_a_signature_per_view(demo_data_dir, tmp_path):
    import tensorflow as tf

    rc = train.main([*SMALL, "--epochs", "2", "--data_dir", demo_data_dir, "--attributes", "emotion,gender,identity",
                     "--views", "emotion,identity,emotion+gender", "--output_dir", str(tmp_path / "runs"),
                     "--export_dir", str(tmp_path / "sm"), "--run_name", "three"])
    assert rc == 0
    summary = json.loads((tmp_path / "runs" / "three" / "summary.json").read_text())
    assert summary["attributes"] == ["emotion", "gender", "identity"]
    assert set(summary["views"]) == {"keep_emotion", "keep_identity", "keep_emotion_gender"}
    assert summary["label_names"]["gender"] == ["female", "male"]
    assert "gender" in summary["test"]["origin"] and "by_group" in summary["test"]["origin"]["emotion"]["utility"]
    loaded = tf.saved_model.load(summary["export_path"])
    assert set(loaded.signatures) == {"serving_default", "mask", "keep_emotion", "keep_identity", "keep_emotion_gender",
                                      "keep_emotion_leace", "keep_identity_leace", "keep_emotion_gender_leace",
                                      "emotion", "gender", "speaker_embedding"}
    x = tf.random.normal([3, summary["input_dim"]]) + 1.0
    z = loaded.signatures["keep_emotion_gender"](features=x)["latent"].numpy()
    keep = np.asarray(json.loads((tmp_path / "runs" / "three" / "mask.json").read_text())["masks"]
                      ["keep_emotion_gender"], bool)
    assert np.all(z[:, ~keep] == 0) and keep[0] and not keep[-1]  # the top bands kept, the identity band masked
    g = loaded.signatures["gender"](features=x)
    assert g["probabilities"].shape == (3, 2) and set(g["class_name"].numpy().astype(str)) <= {"female", "male"}
    # the privacy-safe export of one of its views, and a view the run does not have
    from tfvae.export import main as export_main

    run_dir = str(tmp_path / "runs" / "three")
    assert export_main(["--run_dir", run_dir, "--export_dir", str(tmp_path / "safe"), "--view", "keep_emotion_gender"]) == 0
    safe = tf.saved_model.load(str(tmp_path / "safe" / "three-keep-emotion-gender" / "1"))
    assert set(safe.signatures) == {"serving_default", "keep_emotion_gender"}
    np.testing.assert_allclose(safe.signatures["keep_emotion_gender"](features=x)["latent"].numpy(), z[:, keep],
                               rtol=1e-5, atol=1e-5)
    assert export_main(["--run_dir", run_dir, "--export_dir", str(tmp_path / "safe"), "--view", "keep_gender"]) == 2


def test_an_extra_manifest_column_is_an_attribute(tmp_path):
    """--label_columns accent makes a CSV column a class label; --attributes emotion,accent,identity aligns it
    (embedding vectors as features: no audio to extract)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "corpus"
    (root / "emb").mkdir(parents=True)
    rows = []
    for s in range(10):
        split = "train" if s < 6 else "validation" if s < 8 else "test"
        for u in range(6):
            uid = f"s{s}_u{u}"
            emo, accent = u % 2, s % 2
            np.save(root / "emb" / f"{uid}.npy", (rng.normal(size=12) + 2 * emo * np.r_[np.ones(4), np.zeros(8)]
                                                   + 2 * accent * np.r_[np.zeros(4), np.ones(4), np.zeros(4)]
                                                   ).astype(np.float32))
            rows.append([f"emb/{uid}.npy", f"s{s}", ("sad", "angry")[emo], split, uid, ("north", "south")[accent]])
    with open(root / "utts.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["embedding", "speaker", "emotion", "split", "utterance_id", "accent"], *rows])
    common = ["--dataset", str(root / "utts.csv"), "--feature_set", "embeddings", "--data_dir", str(tmp_path / "tfds"),
              "--latent_dim", "8", "--mask_groups", "4", "--encoder_units", "16", "--decoder_units", "16",
              "--head_units", "8", "--epochs", "2", "--verbose", "0", "--eval_attackers", "fast",
              "--output_dir", str(tmp_path / "runs"), "--export_dir", str(tmp_path / "sm"), "--run_name", "accent"]
    assert train.main([*common, "--attributes", "emotion,accent,identity", "--label_columns", "accent"]) == 0
    summary = json.loads((tmp_path / "runs" / "accent" / "summary.json").read_text())
    assert summary["label_names"]["accent"] == ["north", "south"]
    assert set(summary["views"]) == {"keep_emotion", "keep_accent", "keep_identity"}
    assert "accent" in summary["test"]["keep_accent"]
    assert "accent" in set(tf.saved_model.load(summary["export_path"]).signatures)
    # the attribute's label must exist in the dataset
    assert train.main([*common, "--attributes", "emotion,dialect,identity", "--label_columns", "accent"]) == 2
