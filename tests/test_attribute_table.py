import numpy as np
import pytest

from tfvae.attribute_table import attribute_table, column_label, kept_attributes, markdown
from tfvae.attributes import parse_attributes

ATTRS = parse_attributes("emotion,gender,identity")


def _cell(metric, value, by="logreg", groups=None):
    c = {"by": by, metric: value, "_boot": np.full(10, value), "_per_speaker": np.full(4, value)}
    if groups:
        c["by_group"] = {"label": "gender", "values": groups, "gap": max(groups.values()) - min(groups.values())}
    return c


def _view(emo, gen, eer, emo_worst=None, gen_worst=None, eer_worst=None):
    return {"emotion": {"utility": _cell("wf1", emo, groups={"female": emo + 0.05, "male": emo - 0.05}),
                        "worst": _cell("wf1", emo if emo_worst is None else emo_worst, "mlp")},
            "gender": {"utility": _cell("wf1", gen), "worst": _cell("wf1", gen if gen_worst is None else gen_worst, "svm")},
            "speaker": {"utility": _cell("eer", eer, "lda", {"female": eer, "male": eer + 0.1}),
                        "worst": _cell("eer", eer if eer_worst is None else eer_worst, "cosine")}}


def _fold(shift=0.0):
    return {"raw": {"method": "raw", "protect": None, "views": {"origin": _view(0.6 + shift, 0.95, 0.15)}},
            "lrvae": {"method": "lrvae", "protect": None, "views": {
                "origin": _view(0.55 + shift, 0.9, 0.2),
                "keep_emotion": _view(0.5 + shift, 0.6, 0.4, gen_worst=0.62, eer_worst=0.38),
                "model_heads": _view(0.5, 0.5, 0.5)}}}


def test_cells_are_utility_for_kept_and_worst_case_privacy_for_masked_attributes():
    chances = [{"emotion": {"stratified": 0.125}, "gender": {"stratified": 0.5}}] * 2
    cols = attribute_table([_fold(0.0), _fold(0.02)], chances, ATTRS)
    assert list(cols) == ["Raw features origin", "LR-VAE origin", "LR-VAE keep_emotion"]  # no model_heads column
    view = cols["LR-VAE keep_emotion"]
    assert view["kept"] == ["emotion"]
    assert view["emotion"]["role"].startswith("utility") and view["emotion"]["mean"] == pytest.approx(0.51)
    assert view["emotion"]["std"] == pytest.approx(0.01)
    assert view["gender"]["role"].startswith("privacy") and view["gender"]["mean"] == pytest.approx(0.62)
    assert view["identity"]["mean"] == pytest.approx(0.38) and view["identity"]["by"] == ["cosine"]
    fair = view["fairness"]
    assert fair["leakage"]["mean"] == pytest.approx(0.62) and fair["leakage"]["chance"] == 0.5
    assert fair["emotion"]["values"] == {"female": pytest.approx(0.56), "male": pytest.approx(0.46)}
    assert fair["emotion"]["gap"] == pytest.approx(0.1) and fair["identity"]["gap"] == pytest.approx(0.1)
    assert "gender" not in fair  # no breakdown of gender by gender
    md = markdown("toy", cols, ATTRS, {"command": "x", "seed": 0, "protocol": "p", "settings": "s",
                                       "wall_seconds": 1.0, "cores": 2}, chances)
    assert "| LR-VAE keep_emotion | emotion | 51.00 ± 1.00" in md and "**62.00 ± 0.00" in md
    assert "## Fairness by gender" in md and "| 62.00 ± 0.00 |" in md


def test_privacy_cells_are_counted_above_chance_only():
    chances = [{"emotion": {"stratified": 0.125}, "gender": {"stratified": 0.5}}]
    fold = _fold()
    fold["lrvae"]["views"]["keep_emotion"]["gender"]["worst"] = _cell("wf1", 0.4, "svm")  # below chance
    cols = attribute_table([fold], chances, ATTRS)
    assert cols["LR-VAE keep_emotion"]["gender"]["mean"] == 0.5


def test_an_avae_has_one_column_for_its_whole_latent():
    chances = [{"emotion": {"stratified": 0.125}, "gender": {"stratified": 0.5}}]
    fold = {"a-vae-identity": {"method": "a-vae", "protect": "identity", "views": {
        "origin": _view(0.5, 0.9, 0.3), "keep_emotion_gender": _view(0.5, 0.9, 0.3)}}}
    cols = attribute_table([fold], chances, ATTRS)
    assert list(cols) == ["A-VAE[identity] keep_emotion_gender"]
    assert cols["A-VAE[identity] keep_emotion_gender"]["identity"]["role"].startswith("privacy")


def test_column_names_and_kept_attributes():
    assert kept_attributes("origin", ATTRS, None) == ("emotion", "gender", "identity")
    assert kept_attributes("origin", ATTRS, "gender") == ("emotion", "identity")  # an A-VAE hides its attribute
    assert kept_attributes("keep_gender_identity_leace", ATTRS, None) == ("gender", "identity")
    assert column_label("lrvae", None, "keep_emotion_leace") == "LR-VAE+LEACE keep_emotion"
    assert column_label("a-vae", "identity", "origin") == "A-VAE[identity] origin"
