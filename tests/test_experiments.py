"""Table 1 / Figure 2 / nested tuning end to end: folds, selection on validation only, tiny corpora."""

import csv
import json

import numpy as np
import pytest

from tfvae import experiments
from tfvae.data import Corpus
from tfvae.experiments import fold_corpus, make_folds, pooled
from tfvae.figure2 import masking_keep

TINY = ["--speed_perturb", "false", "--latent_dim", "16", "--mask_groups", "4", "--encoder_units", "32",
        "--decoder_units", "32", "--head_units", "16", "--epochs", "2", "--eval_attackers", "fast"]
#: The full attacker suite: the tiny-corpus test must survive every attacker on 2 training speakers.
FULL = [*TINY[:-1], "full"]


def _dirs(tmp_path):
    return ["--output_dir", str(tmp_path / "runs"), "--reports_dir", str(tmp_path / "reports"),
            "--export_dir", str(tmp_path / "sm")]


def test_masking_schedule_directions():
    np.testing.assert_array_equal(masking_keep(8, 4, 0, "identity"), [1] * 8)
    np.testing.assert_array_equal(masking_keep(8, 4, 1, "identity"), [1, 1, 1, 1, 1, 1, 0, 0])  # bottom-up
    np.testing.assert_array_equal(masking_keep(8, 4, 3, "emotion"), [0, 0, 0, 0, 0, 0, 1, 1])  # top-down
    assert masking_keep(128, 32, 31, "identity").sum() == 4
    with pytest.raises(ValueError, match="cannot mask 5 of 4 groups"):
        masking_keep(8, 4, 5, "identity")
    with pytest.raises(ValueError, match="protect must be"):
        masking_keep(8, 4, 1, "gender")


def test_fold_corpora_are_speaker_disjoint_and_cover_every_test_speaker(small_corpus):
    pool, folds = make_folds(small_corpus, k=3, n_validation=2, seed=0)
    assert len(pool) == 120
    tested = []
    for f in folds:
        c = fold_corpus(small_corpus, pool, f)
        spk = {s: set(c.splits[s].speaker.tolist()) for s in ("train", "validation", "test")}
        assert not (spk["train"] & spk["test"]) and not (spk["validation"] & spk["test"])
        assert not (spk["train"] & spk["validation"])
        assert len(spk["test"]) == 4 and len(spk["validation"]) == 2 and len(spk["train"]) == 6
        tested += sorted(spk["test"])
    assert sorted(tested) == sorted(set(pool.speaker.tolist()))


def _subset(corpus, n_speakers):
    """A corpus of the first ``n_speakers`` speakers of ``corpus`` (its own 3 splits, re-split by folds)."""
    pool = pooled(corpus)
    spk = sorted(set(pool.speaker.tolist()))[:n_speakers]
    parts = np.array_split(np.array(spk), 3)
    from tfvae.data import Split

    splits = {}
    for name, group in zip(("train", "validation", "test"), parts):
        keep = np.isin(pool.speaker, group)
        splits[name] = Split(pool.features[keep], pool.emotion[keep], pool.speaker[keep], pool.utterance_id[keep])
    return Corpus(f"tiny{n_speakers}/is10", "IS10", corpus.emotion_names, splits, corpus.feature_names, corpus.info)


def test_tiny_corpus_runs_table1_to_the_end_with_finite_numbers(small_corpus, monkeypatch, tmp_path):
    """6 speakers in 3 folds: 2 training, 2 validation and 2 test speakers per fold (separable
    speaker classifiers, one LDA component, tiny MLP early-stopping sets) must not crash."""
    import tfvae.data

    monkeypatch.setattr(tfvae.data, "load_corpus", lambda *a, **k: _subset(small_corpus, 6))
    rc = experiments.main(["table1", "--dataset", "tiny6", "--folds", "3", "--methods", "raw,dnn,a-vae,lrvae", *FULL,
                           *_dirs(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "reports" / "tiny6" / "table1.json").read_text())
    assert list(doc["columns"]) == ["Raw features", "DNN origin", "A-VAE PP-SER", "A-VAE PP-SV", "A-VAE+LEACE PP-SER",
                                    "A-VAE+LEACE PP-SV", "LR-VAE origin", "LR-VAE PP-SER", "LR-VAE PP-SV",
                                    "LR-VAE+LEACE PP-SER", "LR-VAE+LEACE PP-SV"]
    assert any(g["goal"].startswith("LR-VAE+LEACE PP-SER") for g in doc["goals"])
    for label, col in doc["columns"].items():
        for k in ("emo", "id"):
            assert np.isfinite(col[k]["mean"]) and all(np.isfinite(col[k]["ci95"])), (label, k, col[k])
            assert col[k]["ci95"][0] <= col[k]["mean"] + 1e-9 or len(col[k]["per_fold"]) > 1
    trials = doc["columns"]["Raw features"]["id"]["per_fold"][0]
    assert trials["target_trials"] == 2 * 45 and trials["nontarget_trials"] == 100


def test_a_corpus_too_small_for_the_folds_fails_before_training(small_corpus, monkeypatch, tmp_path, capsys):
    import tfvae.data

    monkeypatch.setattr(tfvae.data, "load_corpus", lambda *a, **k: _subset(small_corpus, 5))
    rc = experiments.main(["table1", "--dataset", "tiny5", "--folds", "3", *TINY, *_dirs(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "5 speakers cannot be split into k=3 folds" in err and "at least 6 speakers" in err
    assert not (tmp_path / "runs").exists()


def test_nested_tuning_never_sees_test_speakers_and_table1_uses_its_choice(demo_data_dir, monkeypatch, tmp_path):
    seen = []
    real = experiments.train_and_evaluate

    def spy(cfg, corpus, *a, **kw):
        seen.append({s: set(corpus.splits[s].speaker.tolist()) for s in corpus.splits})
        return real(cfg, corpus, *a, **kw)

    monkeypatch.setattr(experiments, "train_and_evaluate", spy)
    common = ["--dataset", "tfvae_demo/is10_small", "--data_dir", demo_data_dir, "--folds", "3",
              "--validation_speakers", "2", "--methods", "raw,lrvae", *TINY, *_dirs(tmp_path)]
    assert experiments.main(["tune", *common, "--grid", "latent_dim=8,16;adv_lambda=0.3"]) == 0
    out = tmp_path / "reports" / "tfvae_demo"
    tuning = json.loads((out / "tuning.json").read_text())
    assert len(seen) == 3 * 3  # raw (a reference, nothing tuned) and two lrvae settings per fold
    for i, fold in enumerate(tuning["folds"]):
        test_spk = set(fold["test_speakers"])
        for call in seen[3 * i: 3 * i + 3]:
            assert not set().union(*call.values()) & test_spk
        raw = fold["models"]["raw"]
        assert raw["chosen"] == {} and set(raw["candidates"][0]["validation_cells"]) == {"origin"}
        cands = fold["models"]["lrvae"]["candidates"]
        assert [c["params"]["latent_dim"] for c in cands] == [8, 16]
        assert fold["models"]["lrvae"]["chosen"] == max(cands, key=lambda c: c["objective"])["params"]
    seen.clear()
    assert experiments.main(["table1", *common, "--tuned", str(out / "tuning.json")]) == 0
    doc = json.loads((out / "table1.json").read_text())
    assert doc["meta"]["settings"].startswith("nested tuning")
    for f, fold in enumerate(doc["folds"]):
        chosen = tuning["folds"][f]["models"]["lrvae"]["chosen"]
        assert fold["lrvae"]["params"] == chosen
        assert fold["lrvae"]["views"]["origin"]["nodes"] == chosen["latent_dim"]
    chance = np.mean([c["stratified"] for c in doc["chance"]])
    assert doc["columns"]["LR-VAE PP-SV"]["emo"]["mean"] >= chance - 1e-9  # leakage counted above chance
    assert doc["columns"]["LR-VAE PP-SER"]["id"]["mean"] <= 0.5
    assert {g["goal"] for g in doc["goals"]} >= {"LR-VAE origin emotion WF1 >= raw - 1 point"}
    # a tuning file of other folds is refused before training
    other = [a if a != "3" else "4" for a in common]  # 4 folds: other test speakers
    assert experiments.main(["table1", *other, "--tuned", str(out / "tuning.json")]) == 2


def test_masking_end_to_end(demo_data_dir, tmp_path):
    rc = experiments.main(["masking", "--dataset", "tfvae_demo/is10_small", "--data_dir", demo_data_dir,
                           "--folds", "3", "--validation_speakers", "2", *TINY, *_dirs(tmp_path)])
    assert rc == 0
    out = tmp_path / "reports" / "tfvae_demo"
    rows = list(csv.DictReader(open(out / "masking.csv")))
    assert len(rows) == 3 * (4 * 4 + 2)  # folds x ((model, direction) x steps + raw per direction)
    assert {r["kept_nodes"] for r in rows if r["masked_groups"] == "0" and r["model"] != "raw"} == {"16"}
    assert {r["kept_nodes"] for r in rows if r["masked_groups"] == "3"} == {"4"}
    assert {r["kept_nodes"] for r in rows if r["model"] == "raw"} == {"1582"}
    from PIL import Image

    assert Image.open(out / "masking.png").size[0] > 500
    assert Image.open(out / "tradeoff.png").size[0] > 500
    meta = json.loads((out / "masking.json").read_text())["meta"]
    assert set(meta["lrvae_covers_avae"]) == {"PP-SER", "PP-SV"}
    assert all(0.0 <= v <= 1.0 for v in meta["lrvae_covers_avae"].values())
    assert meta["tradeoff_goal"]["met"] == all(v >= 1.0 for v in meta["lrvae_covers_avae"].values())


def test_tradeoff_points_and_dominance():
    from tfvae.figure2 import dominance, tradeoff_points

    rows = [{"fold": 0, "model": "lrvae", "protect": "identity", "masked_groups": s, "emotion_wf1": e,
             "speaker_eer": r, "chance_wf1": 0.125} for s, e, r in ((0, 0.6, 0.2), (1, 0.55, 0.45))]
    pts = tradeoff_points(rows, "lrvae", "identity")
    np.testing.assert_allclose(pts, [[60, 30], [55, 5]])
    emo_rows = [{**r, "protect": "emotion"} for r in rows]
    np.testing.assert_allclose(tradeoff_points(emo_rows, "lrvae", "emotion"), [[30, 47.5], [5, 42.5]])
    assert dominance(pts, np.array([[54.5, 5.5], [59, 31]])) == 1.0  # matched within 1 point
    assert dominance(pts, np.array([[58, 10]])) == 0.0  # a better point than any of the curve


def test_report_files_are_tagged_by_feature_set(tmp_path):
    from tfvae.experiments import _Reports, report_suffix

    assert report_suffix("IS10") == "" and report_suffix("eGeMAPSv02") == "egemapsv02"
    assert report_suffix("xvector@saved_models/xv-fold{fold}") == "xvector"
    assert report_suffix("resnet_vlad@/m/r", "resnet_vlad-finetuned") == "resnet_vlad-finetuned"
    assert _Reports(tmp_path, "") / "table1.json" == tmp_path / "table1.json"
    assert _Reports(tmp_path, "xvector") / "tuning.md" == tmp_path / "tuning-xvector.md"


def test_three_attribute_table1_reports_gender_leakage_and_gaps(demo_data_dir, tmp_path):
    """Issue 13's bar on the demo corpus: emotion, gender, identity in one latent; a view per attribute
    chosen on validation; gender leakage and per-gender gaps in the report."""
    rc = experiments.main(["table1", "--dataset", "tfvae_demo/is10_small", "--data_dir", demo_data_dir, "--folds", "3",
                           "--validation_speakers", "2", "--methods", "raw,lrvae", "--attributes",
                           "emotion,gender,identity", *TINY, "--mask_groups", "8", *_dirs(tmp_path)])
    assert rc == 0
    out = tmp_path / "reports" / "tfvae_demo"
    doc = json.loads((out / "table1-emotion_gender_identity.json").read_text())
    assert doc["meta"]["attributes"] == ["emotion", "gender", "identity"]
    assert list(doc["columns"]) == ["Raw features origin", "LR-VAE origin", "LR-VAE keep_emotion", "LR-VAE keep_gender",
                                    "LR-VAE keep_identity", "LR-VAE+LEACE keep_emotion", "LR-VAE+LEACE keep_gender",
                                    "LR-VAE+LEACE keep_identity"]
    assert doc["columns"]["LR-VAE+LEACE keep_emotion"]["kept"] == ["emotion"]
    view = doc["columns"]["LR-VAE keep_emotion"]
    assert view["emotion"]["role"].startswith("utility") and view["gender"]["role"].startswith("privacy")
    assert view["identity"]["role"].startswith("privacy") and view["identity"]["mean"] <= 0.5
    chance = np.mean([c["gender"]["stratified"] for c in doc["chance"]])
    assert view["gender"]["mean"] >= chance - 1e-9
    for label, fair in doc["fairness"].items():
        assert fair["leakage"]["attribute"] == "gender" and np.isfinite(fair["leakage"]["mean"]), label
        assert set(fair["emotion"]["values"]) == {"female", "male"} and fair["emotion"]["gap"] >= 0
        assert "identity" in fair
    for fold in doc["folds"]:
        views = fold["lrvae"]["cuts"]["views"]
        assert set(views) == {"keep_emotion", "keep_gender", "keep_identity"}
        assert len(views["keep_gender"]["positions"]) == 2 and len(views["keep_emotion"]["positions"]) == 1
    md = (out / "table1-emotion_gender_identity.md").read_text()
    assert "## Fairness by gender" in md and "| LR-VAE keep_gender | gender |" in md


def test_tune_attackers_choose_the_suite_of_the_inner_objective(small_corpus, monkeypatch, tmp_path):
    import tfvae.evaluate
    from tfvae.config import TrainConfig

    calls = []
    real = tfvae.evaluate.attacker_suite
    monkeypatch.setattr(tfvae.evaluate, "attacker_suite", lambda fast: calls.append(fast) or real(fast))
    for attackers, fast in (("fast", True), ("full", False)):
        res = experiments.train_and_evaluate(TrainConfig(), small_corpus, None, "raw", None, tmp_path, tuning=True,
                                             tune_attackers=attackers)
        assert calls[-1] is fast and "origin" in res["views"]
    assert experiments.parser().parse_args(["tune", "--tune_attackers", "full"]).tune_attackers == "full"
