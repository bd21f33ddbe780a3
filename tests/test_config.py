import pytest

from tfvae.config import ConfigError, TrainConfig
from tfvae.features import FEATURE_SETS


def test_defaults_follow_the_paper():
    cfg = TrainConfig()
    assert cfg.learning_rate == 5e-4 and cfg.batch_size == 128 and cfg.l2 == 1e-6
    assert cfg.loss_weights == {"vae": 1.0, "emo": 1.0, "id": 1.0, "emo_adv": 1.0, "id_adv": 1.0}
    assert cfg.method == "lrvae" and cfg.dataset == "tfvae_demo" and cfg.feature_set == "IS10"
    cfg.validate(FEATURE_SETS)


def test_cli_flags_parse_into_the_dataclass():
    cfg = TrainConfig.from_args(["--method", "a-vae", "--encoder_units", "64", "32", "--emo_adv_weight", "0.5",
                                 "--latent_dim", "64", "--mask_groups", "16"])
    assert cfg.method == "a-vae" and cfg.encoder_units == (64, 32) and cfg.emo_adv_weight == 0.5
    assert cfg.default_run_name() == "tfvae_demo-IS10-a-vae"
    assert TrainConfig.from_args(["--dataset", "data/my corpus.csv"]).default_run_name() == "my corpus-IS10-lrvae"


def test_unknown_method_is_rejected_by_the_cli(capsys):
    with pytest.raises(SystemExit):
        TrainConfig.from_args(["--method", "gan"])
    assert "invalid choice: 'gan'" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    ({"latent_dim": 100}, "latent_dim=100 cannot be split into mask_groups=32"),
    ({"latent_dim": 16}, "latent_dim=16 cannot be split"),
    ({"mask_groups": 1}, "mask_groups=1 must be at least 2"),
    ({"feature_set": "MFCC"}, "feature_set='MFCC' is unknown"),
    ({"id_weight": -1.0}, "id_weight=-1.0 must be >= 0"),
    ({"keep_min": 0.8, "keep_max": 0.5}, "keep_min (0.8) <= keep_max (0.5)"),
    ({"epochs": 0}, "epochs=0 must be >= 1"),
    ({"encoder_units": ()}, "encoder_units=() must be a non-empty list"),
    ({"hidden_dropout": 1.0}, "hidden_dropout=1.0 must be a rate in [0, 1)"),
    ({"mixup_within": "accent"}, "mixup_within='accent' is not an attribute; choose one of emotion, identity"),
    ({"hidden_dropout": -0.1}, "hidden_dropout=-0.1 must be >= 0"),
    ({"disc_steps": 0}, "disc_steps=0 must be >= 1"),
    ({"identity_adversary": "triplets"}, "identity_adversary='triplets' is unknown"),
    ({"lda_attributes": "emotion+accent"}, "lda_attributes names 'accent', not an attribute; choose from emotion, identity"),
    ({"ema_epochs": -1.0}, "ema_epochs=-1.0 must be >= 0"),
    ({"swap_weight": -1.0}, "swap_weight=-1.0 must be >= 0"),
    ({"linear_band": 1.0}, "linear_band=1.0 must be a fraction in [0, 1)"),
    ({"linear_band": -0.5}, "linear_band=-0.5 must be a fraction in [0, 1)"),
])
def test_validate_names_the_bad_option(overrides, message):
    cfg = TrainConfig(**overrides)
    with pytest.raises(ConfigError) as e:
        cfg.validate(FEATURE_SETS)
    assert message in str(e.value)


def test_json_round_trip():
    cfg = TrainConfig(method="vae", head_units=(32,))
    import json
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ConfigError, match="unknown configuration keys"):
        TrainConfig.from_dict({"methd": "vae"})
