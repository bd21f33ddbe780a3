"""Table 1 / Figure 2 machinery: folds, cut choice on validation only, masking schedule, e2e."""

import json

import numpy as np
import pytest

from tfvae import experiments
from tfvae.experiments import fold_corpus, make_folds, masking_keep, pooled

TINY = ["--latent_dim", "32", "--mask_groups", "8", "--encoder_units", "32", "--decoder_units", "32",
        "--head_units", "16", "--epochs", "2"]


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
        assert sum(len(c.splits[s]) for s in c.splits) == 120
        tested += sorted(spk["test"])
    assert sorted(tested) == sorted(set(pool.speaker.tolist()))


def test_cut_is_chosen_on_validation_not_test(small_corpus, monkeypatch, tmp_path):
    """choose_cuts must see the fold's validation speakers and never its test speakers."""
    import tfvae.masking

    seen = []
    real = tfvae.masking.choose_cuts

    def spy(z_tr, e_tr, s_tr, z_va, e_va, s_va, **kw):
        seen.append((set(np.asarray(s_tr).tolist()), set(np.asarray(s_va).tolist())))
        return real(z_tr, e_tr, s_tr, z_va, e_va, s_va, **kw)

    monkeypatch.setattr(tfvae.masking, "choose_cuts", spy)
    pool, folds = make_folds(small_corpus, k=3, n_validation=2, seed=0)
    c = fold_corpus(small_corpus, pool, folds[1])
    from tfvae.config import TrainConfig
    from tfvae.distribute import make_strategy

    cfg = TrainConfig.from_args(TINY + ["--output_dir", str(tmp_path)])
    res = experiments.run_fold(cfg, c, make_strategy("default"), tmp_path, models=[("lrvae", None)])
    assert len(seen) == 1
    train_spk, val_spk = seen[0]
    assert val_spk == set(folds[1].validation) and train_spk == set(folds[1].train)
    assert not (val_spk | train_spk) & set(folds[1].test)
    views = res["lrvae"]["views"]
    assert set(views) == {"origin", "identity_free", "emotion_free"}
    assert views["identity_free"]["nodes"] == res["lrvae"]["cuts"]["identity_free_cut"]


def test_table1_end_to_end(demo_data_dir, tmp_path, capsys):
    rc = experiments.main(["table1", "--dataset", "tfvae_demo/is10_small", "--data_dir", demo_data_dir,
                           "--folds", "3", "--validation_speakers", "2", *TINY,
                           "--output_dir", str(tmp_path / "runs"), "--reports_dir", str(tmp_path / "reports")])
    assert rc == 0
    out = tmp_path / "reports" / "tfvae_demo"
    doc = json.loads((out / "table1.json").read_text())
    labels = [c[3] for c in experiments.COLUMNS]
    assert list(doc["columns"]) == labels and len(doc["folds"]) == 3
    for lab in labels:
        col = doc["columns"][lab]
        assert 0 <= col["emo_mean"] <= 1 and 0 <= col["id_mean"] <= 1 and len(col["per_fold"]) == 3
        assert col["emo_mean"] == pytest.approx(np.mean([p["emo"] for p in col["per_fold"]]))
    ser = doc["columns"]["LR-VAE PP-SER"]["per_fold"][0]
    attackers = doc["folds"][0]["lrvae"]["views"]["identity_free"]["speaker"]
    assert ser["id"] == max((a["eer"] for a in attackers.values()), key=lambda e: abs(e - 0.5))
    assert ser["id_by"] in attackers
    md = (out / "table1.md").read_text()
    assert "| emo |" in md and "| id |" in md and "LR-VAE PP-SV" in md and "## Goals" in md
    assert len(doc["goals"]) == 4
    assert doc["chance"][0]["stratified"] == pytest.approx(0.2)


def test_masking_end_to_end(demo_data_dir, tmp_path):
    import csv

    rc = experiments.main(["masking", "--dataset", "tfvae_demo/is10_small", "--data_dir", demo_data_dir,
                           "--folds", "3", "--validation_speakers", "2", *TINY,
                           "--output_dir", str(tmp_path / "runs"), "--reports_dir", str(tmp_path / "reports")])
    assert rc == 0
    out = tmp_path / "reports" / "tfvae_demo"
    rows = list(csv.DictReader(open(out / "masking.csv")))
    assert len(rows) == 3 * 4 * 8  # folds x (model, direction) x steps
    first = [r for r in rows if r["masked_groups"] == "0"]
    assert all(r["kept_nodes"] == "32" for r in first)
    assert {r["kept_nodes"] for r in rows if r["masked_groups"] == "7"} == {"4"}
    from PIL import Image

    assert Image.open(out / "masking.png").size[0] > 500
