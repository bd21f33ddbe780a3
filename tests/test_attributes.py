import pytest

from tfvae.attributes import (AttributeSpecError, attribute, parse_attributes, parse_views, view_aliases,
                              view_attributes, view_key)
from tfvae.config import ConfigError, TrainConfig


def test_registry_and_generic_attributes():
    emo, gen, ident = parse_attributes("emotion,gender,identity")
    assert (emo.short, emo.label, emo.task, emo.output) == ("emo", "emotion", "emotion", "emotion_probabilities")
    assert (gen.short, gen.label, gen.kind) == ("gen", "gender", "class")
    assert ident.is_identity and (ident.label, ident.task, ident.output) == ("speaker", "speaker", "speaker_embedding")
    accent = attribute("accent")  # any label column of a dataset
    assert (accent.label, accent.kind, accent.short, accent.task) == ("accent", "class", "accent", "accent")


@pytest.mark.parametrize("spec,msg", [
    ("emotion", "at least 2"),
    ("emotion,emotion,identity", "listed twice"),
    ("emotion,gender", "exactly one attribute must be 'identity'"),
    ("emotion,bad-name,identity", "identifier"),
])
def test_bad_attribute_lists(spec, msg):
    with pytest.raises(AttributeSpecError, match=msg):
        parse_attributes(spec)


def test_views_any_subset_in_latent_order():
    attrs = parse_attributes("emotion,gender,identity")
    assert parse_views("", attrs) == {"keep_emotion": ("emotion",), "keep_gender": ("gender",),
                                      "keep_identity": ("identity",)}
    assert parse_views("gender+emotion,identity", attrs) == {"keep_emotion_gender": ("emotion", "gender"),
                                                             "keep_identity": ("identity",)}
    with pytest.raises(AttributeSpecError, match=r"unknown attribute\(s\) \['age'\]"):
        parse_views("emotion+age", attrs)
    with pytest.raises(AttributeSpecError, match="keeps every attribute"):
        parse_views("emotion+gender+identity", attrs)
    assert view_attributes("keep_emotion_gender_leace", attrs) == ("emotion", "gender")
    with pytest.raises(AttributeSpecError, match="not among"):
        view_attributes("keep_emotion_age", attrs)


def test_paper_views_keep_their_names():
    attrs = parse_attributes("emotion,identity")
    views = parse_views("identity_free,emotion_free", attrs)
    assert views == {"keep_emotion": ("emotion",), "keep_identity": ("identity",)}
    assert view_aliases(views, attrs) == {"identity_free": "keep_emotion", "emotion_free": "keep_identity"}
    assert view_key(("emotion",), attrs) == "identity_free" and view_key(("identity",), attrs) == "emotion_free"
    assert view_attributes("identity_free", attrs) == ("emotion",)
    three = parse_attributes("emotion,gender,identity")
    assert view_key(("emotion",), three) == "keep_emotion"


@pytest.mark.parametrize("flags,msg", [
    (["--attributes", "emotion,gender"], "exactly one attribute must be 'identity'"),
    (["--views", "emotion+age"], "unknown attribute"),
    (["--attributes", "emotion,gender,identity", "--band_centres", "0,0,1"], "overlapping bands"),
    (["--attributes", "emotion,gender,identity", "--band_centres", "0,1"], "strictly increasing"),
    (["--adversaries", "identity@identity"], "own branch"),
    (["--term_weights", "gen=x"], "not term=number"),
    (["--method", "a-vae", "--protect", "age"], "protect='age' is unknown"),
    (["--band_width", "0"], "band_width=0.0 must be > 0"),
])
def test_config_rejects_bad_attribute_options(flags, msg):
    with pytest.raises(ConfigError, match=msg):
        TrainConfig.from_args(flags).validate()


def test_config_derives_attribute_options():
    cfg = TrainConfig.from_args(["--attributes", "emotion,gender,identity", "--views", "emotion,gender+identity",
                                 "--term_weights", "gen=0.5,gen_adv=2", "--band_centres", "0,0.4,1"]).validate()
    assert [a.name for a in cfg.attribute_list()] == ["emotion", "gender", "identity"]
    assert cfg.view_map() == {"keep_emotion": ("emotion",), "keep_gender_identity": ("gender", "identity")}
    assert cfg.loss_weights["gen"] == 0.5 and cfg.loss_weights["gen_adv"] == 2.0 and cfg.loss_weights["emo"] == 1.0
    assert cfg.band_centre_list() == (0.0, 0.4, 1.0)
