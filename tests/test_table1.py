import json

import numpy as np
import pytest

from tfvae.table1 import COLUMNS, fold_cells, goals, markdown, paired_tests, table1


def _cell(by, metric, value, per_speaker, boot_shift=0.0):
    return {"by": by, metric: value, "_boot": np.full(10, value + boot_shift), "_per_speaker": np.asarray(per_speaker)}


def _view(emo, eer, emo_worst=None, eer_worst=None, n=4):
    e = {"utility": _cell("logreg", "wf1", emo, np.full(n, emo)), "paper": _cell("mlp", "wf1", emo - 0.01, [0] * n),
         "worst": _cell("gboost", "wf1", emo_worst if emo_worst is not None else emo, np.full(n, emo_worst or emo))}
    s = {"utility": _cell("lda_cosine", "eer", eer, np.full(n, eer)), "paper": _cell("mlp_embedding", "eer", eer, [0] * n),
         "worst": _cell("cosine", "eer", eer_worst if eer_worst is not None else eer, np.full(n, eer_worst or eer))}
    return {"emotion": e, "speaker": s}


def _fold(d=0.0):
    return {"raw": {"views": {"origin": _view(0.60 + d, 0.15)}},
            "dnn": {"views": {"origin": _view(0.50 + d, 0.25)}},
            "lrvae": {"views": {"origin": _view(0.595 + d, 0.155),
                                "identity_free": _view(0.59, 0.30, eer_worst=0.46 + d),
                                "emotion_free": _view(0.20, 0.16, emo_worst=0.05 + d),
                                "identity_free_leace": _view(0.58, 0.30, eer_worst=0.49),
                                "emotion_free_leace": _view(0.20, 0.17, emo_worst=0.20)}}}


def test_privacy_cells_use_the_worst_case_above_chance_and_utility_cells_the_validation_choice():
    cells = fold_cells(_fold()["lrvae"]["views"]["emotion_free"], "emotion_free", chance_wf1=0.125)
    assert cells["emo"]["by"] == "gboost" and cells["emo"]["wf1"] == 0.125 and cells["emo"]["raw"] == 0.05
    assert cells["id"]["by"] == "lda_cosine" and cells["id"]["paper_mlp"] == 0.16
    cells = fold_cells(_fold()["lrvae"]["views"]["identity_free"], "identity_free", chance_wf1=0.125)
    assert cells["id"]["by"] == "cosine" and cells["id"]["eer"] == 0.46 and "privacy" in cells["id"]["role"]


def test_table_aggregates_folds_with_intervals_tests_and_goals():
    folds, chance = [_fold(0.0), _fold(0.02)], [{"stratified": 0.125, "majority": 0.1}] * 2
    cols = table1(folds, chance)
    assert list(cols) == [c[3] for c in COLUMNS if c[0] in ("raw", "dnn", "lrvae")]
    raw = cols["Raw features"]["emo"]
    assert raw["mean"] == pytest.approx(0.61) and raw["std"] == pytest.approx(0.01)
    assert raw["ci95"] == pytest.approx([0.61, 0.61]) and len(raw["per_fold"]) == 2
    assert "_boot" not in raw["per_fold"][0]
    assert cols["LR-VAE PP-SV"]["emo"]["mean"] == pytest.approx(0.125)  # both folds below chance: at chance
    tests = {(t["column"], t["reference"], t["cell"]): t for t in paired_tests(cols)}
    t = tests[("LR-VAE origin", "Raw features", "emo")]
    assert t["speakers"] == 8 and t["mean_difference"] == pytest.approx(-0.005) and 0 < t["wilcoxon_p"] < 0.05
    g = {r["goal"]: r for r in goals(cols, chance)}
    assert g["LR-VAE origin emotion WF1 >= raw - 1 point"]["met"] and \
        g["LR-VAE origin emotion WF1 >= raw - 1 point"]["measured"] == pytest.approx(-0.5)
    assert g["LR-VAE PP-SER SV EER (worst-case attacker) >= 45 %"]["measured"] == pytest.approx(47.0)
    assert g["LR-VAE PP-SV emotion WF1 (worst-case attacker) <= chance + 3 points"]["met"]
    assert g["LR-VAE PP-SER emotion WF1 >= DNN - 2 points"]["met"]
    # the erasure rows are their own columns with their own goals
    assert cols["LR-VAE+LEACE PP-SER"]["id"]["mean"] == pytest.approx(0.49)
    assert g["LR-VAE+LEACE PP-SER SV EER (worst-case attacker) >= 45 %"]["measured"] == pytest.approx(49.0)
    assert not g["LR-VAE+LEACE PP-SV emotion WF1 (worst-case attacker) <= chance + 3 points"]["met"]
    meta = {"command": "x", "seed": 0, "protocol": "p", "settings": "nested tuning (t.json)", "wall_seconds": 1,
            "cores": 2, "tuning": [{"lrvae": {"latent_dim": 64}}]}
    md = markdown("toy", cols, paired_tests(cols), goals(cols, chance), meta, chance)
    assert "| Raw features | 61.00 ± 1.00 [61.0, 61.0]" in md and "**12.50 ± 0.00" in md
    assert "nested tuning" in md and "latent_dim=64" in md and "## Paired tests" in md


def test_stability_goal_per_scope_and_rerender(tmp_path):
    import json

    from tfvae.evaluate import public
    from tfvae.table1 import rerender

    folds, chance = [_fold(0.0), _fold(0.12)], [{"stratified": 0.125, "majority": 0.1}] * 2
    cols = table1(folds, chance)
    g = {r["goal"]: r for r in goals(cols, chance)}
    # every column moves by 12 points between folds: std 6 points everywhere
    assert g["LR-VAE: fold std of every utility cell <= 5 points"]["measured"] == pytest.approx(6.0)
    assert not g["all columns: fold std of every utility cell <= 5 points"]["met"]
    doc = {"meta": {"command": "x", "seed": 0, "protocol": "p", "settings": "s", "wall_seconds": 1, "cores": 2,
                    "dataset": "toy/is10"},
           "columns": public(cols), "paired_tests": paired_tests(cols), "goals": [], "chance": chance}
    path = tmp_path / "toy" / "table1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc, default=float))
    md = rerender(path)
    assert "# Table 1 on toy" in md and (tmp_path / "toy" / "table1.md").read_text() == md
    again = json.loads(path.read_text())
    assert [r["goal"] for r in again["goals"]] == list(g)


def test_features_table_joins_reports_of_several_input_features(tmp_path, capsys):
    import json
    from pathlib import Path

    from tfvae.table1 import main

    src = json.loads((Path(__file__).resolve().parents[1] / "reports/ravdess/table1.json").read_text())
    other = json.loads(json.dumps(src))
    other["meta"]["feature_set"] = "xvector@/models/xvector_small-tfvae_demo-speakers1k/1"
    (tmp_path / "a.json").write_text(json.dumps(src))
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--features", "--out", str(tmp_path / "f.md")]) == 0
    text = (tmp_path / "f.md").read_text()
    cell = src["columns"]["LR-VAE PP-SER"]["id"]
    assert f"| IS10 | LR-VAE PP-SER |" in text and f"**{100 * cell['mean']:.2f} ± {100 * cell['std']:.2f}" in text
    assert "| xvector (xvector_small-tfvae_demo-speakers1k) | Raw features |" in text
    assert text.count("| Raw features |") == 2 and capsys.readouterr().out.strip() == text.strip()


def test_compare_marks_cells_within_fold_noise(tmp_path):
    from tfvae.table1 import compare_markdown

    def doc(emo, std):
        return {"meta": {"command": "c", "seed": 0},
                "columns": {"LR-VAE origin": {"emo": {"mean": emo, "std": std}, "id": {"mean": 0.2, "std": 0.01}}}}

    (tmp_path / "a.json").write_text(json.dumps(doc(0.50, 0.02)))
    (tmp_path / "b.json").write_text(json.dumps(doc(0.53, 0.01)))
    md = compare_markdown(tmp_path / "a.json", tmp_path / "b.json")
    assert "| LR-VAE origin | emo | 50.00 ± 2.00 | 53.00 ± 1.00 | +3.00 | no |" in md
    assert "| LR-VAE origin | id | 20.00 ± 1.00 | 20.00 ± 1.00 | +0.00 | yes |" in md
    assert "1 of 2 cells within fold noise." in md
