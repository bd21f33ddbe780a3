import json

import numpy as np
import pytest

from tfvae.config import ConfigError
from tfvae.tuning import candidates, load_tuned, objective, parse_grid, validation_corpus


def test_grid_parsing_types_and_errors():
    assert parse_grid("latent_dim=32,64;adv_lambda=0.3,1") == {"latent_dim": [32, 64], "adv_lambda": [0.3, 1.0]}
    assert parse_grid("keep_schedule=linear,exponential jit_compile=true") == \
        {"keep_schedule": ["linear", "exponential"], "jit_compile": [True]}
    assert parse_grid("encoder_units=512x256,1024;encoder_skip=false,yes") == \
        {"encoder_units": [(512, 256), (1024,)], "encoder_skip": [False, True]}
    for bad, msg in (("latent_dim", "not of the form"), ("seed=1,2", "not a tunable"), ("nope=1", "not a tunable"),
                     ("latent_dim=a", "bad value for latent_dim"), ("encoder_units=512x0", "sizes must be positive"),
                     ("encoder_units=5x", "bad value for encoder_units"), ("encoder_skip=maybe", "not true or false"),
                     ("", "empty")):
        with pytest.raises(ConfigError, match=msg):
            parse_grid(bad)


def test_candidates_only_vary_what_a_method_uses():
    grid = {"latent_dim": [32, 64], "adv_lambda": [0.3, 1.0], "keep_schedule": ["linear", "cosine"]}
    assert len(candidates(grid, "lrvae")) == 8
    assert candidates(grid, "a-vae") == [{"latent_dim": 32, "adv_lambda": 0.3}, {"latent_dim": 32, "adv_lambda": 1.0},
                                         {"latent_dim": 64, "adv_lambda": 0.3}, {"latent_dim": 64, "adv_lambda": 1.0}]
    assert candidates(grid, "vae") == [{"latent_dim": 32}, {"latent_dim": 64}]
    assert candidates(grid, "dnn") == [{}]
    r = candidates(grid, "lrvae", search="random", trials=3, seed=1)
    assert len(r) == 3 and r == candidates(grid, "lrvae", search="random", trials=3, seed=1)


def test_the_tuning_corpus_holds_no_test_speaker(small_corpus):
    val = validation_corpus(small_corpus)
    test_spk = set(small_corpus.splits["test"].speaker.tolist())
    for split in val.splits.values():
        assert not set(split.speaker.tolist()) & test_spk
    assert val.splits["test"] is small_corpus.splits["validation"]


def test_objective_rewards_utility_and_penalises_leakage():
    def view(wf1, eer, wf1_w, eer_w):
        mk = lambda m, v: {"by": "a", m: v, "_boot": np.zeros(0), "_per_speaker": np.zeros(1)}  # noqa: E731
        return {"emotion": {"utility": mk("wf1", wf1), "worst": mk("wf1", wf1_w)},
                "speaker": {"utility": mk("eer", eer), "worst": mk("eer", eer_w)}}

    cols = [("identity_free", "PP-SER"), ("emotion_free", "PP-SV")]
    good = {"identity_free": view(0.6, 0.1, 0.6, 0.5), "emotion_free": view(0.2, 0.1, 0.2, 0.1)}
    leaky = {"identity_free": view(0.6, 0.1, 0.6, 0.2), "emotion_free": view(0.2, 0.1, 0.5, 0.1)}
    assert objective(good, cols, 0.2) == pytest.approx((0.6 - 0.2) - 0 + (0.5 - 0.1) - 0)
    assert objective(leaky, cols, 0.2) == pytest.approx(0.4 - 0.3 + 0.4 - 0.3)


def test_a_tuning_file_of_other_folds_is_refused(tmp_path):
    from types import SimpleNamespace

    doc = {"meta": {"dataset": "d/c", "seed": 0}, "folds": [{"test_speakers": ["a", "b"], "models": {
        "lrvae": {"chosen": {"latent_dim": 64}}}}]}
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps(doc))
    folds = [SimpleNamespace(test=("b", "a"))]
    assert load_tuned(path, folds, "d/c", 0) == [{"lrvae": {"latent_dim": 64}}]
    with pytest.raises(ConfigError, match="tune again"):
        load_tuned(path, [SimpleNamespace(test=("a", "c"))], "d/c", 0)
    with pytest.raises(ConfigError, match="tune again"):
        load_tuned(path, folds, "d/c", 1)
    with pytest.raises(ConfigError, match="no such file"):
        load_tuned(tmp_path / "missing.json", folds, "d/c", 0)
    # another feature set of the same corpus and folds: settings still chosen on validation speakers
    assert load_tuned(path, folds, "d/xvector-0123456789ab", 0) == [{"lrvae": {"latent_dim": 64}}]
    with pytest.raises(ConfigError, match="tune again"):
        load_tuned(path, folds, "other/c", 0)
