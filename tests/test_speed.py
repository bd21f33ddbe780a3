"""Speed perturbation (tfvae.speed): copies join the training split as new speakers, and only there."""

import dataclasses

import numpy as np
import pytest

from tfvae import experiments, train
from tfvae.config import TrainConfig
from tfvae.data import Corpus, DataError, Split, load_corpus
from tfvae.speed import speaker_suffix, with_speed_perturbed


@pytest.fixture(scope="module")
def sp_data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir holding tfvae_demo/is10_small_sp (the small demo with copies at speeds 0.9 and 1.1)."""
    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401

    data_dir = str(tmp_path_factory.mktemp("tfds_sp"))
    tfds.builder("tfvae_demo/is10_small_sp", data_dir=data_dir).download_and_prepare()
    return data_dir


def _split(speakers, n_per=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.asarray(speakers), n_per)
    n = spk.size
    return Split(rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, 3, n), spk,
                 np.asarray([f"u{seed}_{i}" for i in range(n)]), {"gender": rng.integers(0, 2, n)},
                 rng.normal(size=(n, 2, dim)).astype(np.float32))


def test_copies_join_the_training_split_as_new_speakers():
    splits = {"train": _split(["a", "b"]), "validation": _split(["c"], seed=1), "test": _split(["d"], seed=2)}
    c = Corpus("toy", "IS10", ["x", "y", "z"], splits, label_names={"gender": ["female", "male"]},
               speed_factors=(0.9, 1.1))
    g = with_speed_perturbed(c)
    tr, src = g.splits["train"], splits["train"]
    assert len(tr) == 3 * len(src) and tr.perturbed is None
    assert sorted(set(tr.speaker.tolist())) == ["a", "a@sp0.9", "a@sp1.1", "b", "b@sp0.9", "b@sp1.1"]
    assert len(g.speaker_index()) == 6 and speaker_suffix(0.9) == "@sp0.9"
    n = len(src)
    np.testing.assert_array_equal(tr.features[:n], src.features)
    for k, f in enumerate((0.9, 1.1)):
        rows = slice((k + 1) * n, (k + 2) * n)
        np.testing.assert_array_equal(tr.features[rows], src.perturbed[:, k])
        np.testing.assert_array_equal(tr.emotion[rows], src.emotion)
        np.testing.assert_array_equal(tr.labels["gender"][rows], src.labels["gender"])
        assert tr.utterance_id[rows][0] == f"{src.utterance_id[0]}@sp{f:g}"
    assert g.splits["validation"] is splits["validation"] and g.splits["test"] is splits["test"]
    with pytest.raises(DataError, match="dataset toy has no speed-perturbed copies: --speed_perturb needs"):
        with_speed_perturbed(dataclasses.replace(c, speed_factors=()))
    assert train.training_corpus(TrainConfig(speed_perturb="false"), c) is c
    assert len(train.training_corpus(TrainConfig(), c).splits["train"]) == 3 * n  # auto: the copies it has
    plain = dataclasses.replace(c, speed_factors=())
    assert train.training_corpus(TrainConfig(), plain) is plain  # auto: none to add
    with pytest.raises(DataError, match="has no speed-perturbed copies"):
        train.training_corpus(TrainConfig(speed_perturb="true"), plain)


def test_auto_opens_the_copies_where_the_dataset_can_make_them(tmp_path):
    from tfvae.config import ConfigError
    from tfvae.speed import can_perturb, loads_copies

    assert can_perturb("ravdess", "IS10") and can_perturb("tfvae_demo/is10_small", "IS10")
    assert can_perturb("msp_podcast/is10_8class", "IS10") and can_perturb("tfvae_demo/is10_small_sp", "IS10")
    assert can_perturb(str(tmp_path / "corpus.csv"), "eGeMAPSv02")
    assert not can_perturb("ravdess", "audio16k") and not can_perturb("msp_standin", "IS10")
    assert not can_perturb("ravdess", "xvector@saved_models/x") and not can_perturb("no_such_dataset", "IS10")
    assert not can_perturb(str(tmp_path / "corpus.csv"), "embeddings")
    assert loads_copies("true", "msp_standin", "IS10") and not loads_copies("false", "ravdess", "IS10")
    assert TrainConfig.from_args(["--speed_perturb"]).speed_perturb == "true"
    assert TrainConfig.from_args([]).speed_perturb == "auto"
    with pytest.raises(ConfigError, match="speed_perturb='yes' is unknown; choose one of auto, true, false"):
        TrainConfig(speed_perturb="yes").validate()


def test_demo_sp_config_holds_the_plain_features_and_their_copies(sp_data_dir, small_corpus):
    c = load_corpus("tfvae_demo/is10_small", data_dir=sp_data_dir, speed_perturb=True)
    assert c.name == "tfvae_demo/is10_small_sp" and c.speed_factors == (0.9, 1.1)
    for s, plain in small_corpus.splits.items():
        sp = c.splits[s]
        np.testing.assert_array_equal(sp.utterance_id, plain.utterance_id)
        np.testing.assert_allclose(sp.features, plain.features, rtol=1e-6)  # same audio, same features
        assert sp.perturbed.shape == (len(plain), 2, 1582) and np.isfinite(sp.perturbed).all()
        # every copy differs from its source, more than the two copies' sources differ from each other's copies
        assert (np.abs(sp.perturbed - sp.features[:, None]).max(-1) > 0).all()
    assert small_corpus.speed_factors == () and small_corpus.splits["train"].perturbed is None
    named = load_corpus("tfvae_demo/is10_small_sp", data_dir=sp_data_dir)  # the config by its name: copies too
    assert named.speed_factors == (0.9, 1.1) and named.splits["test"].perturbed.shape == (20, 2, 1582)


def test_speed_perturb_needs_an_opensmile_set_and_a_dataset_with_copies(sp_data_dir):
    with pytest.raises(DataError, match="speed-perturbed copies exist for openSMILE feature sets only"):
        load_corpus("tfvae_demo", "xvector@saved_models/x", data_dir=sp_data_dir, speed_perturb=True)
    with pytest.raises(DataError, match="msp_standin/is10_sp.*speed-perturbed copies are built from audio"):
        load_corpus("msp_standin", "IS10", data_dir=sp_data_dir, speed_perturb=True)


def test_streamed_copies_equal_the_in_memory_ones(sp_data_dir):
    import tensorflow as tf

    from tfvae.pipeline import split_pipeline
    from tfvae.stream import is_streamed, materialize

    mem = with_speed_perturbed(load_corpus("tfvae_demo/is10_small", data_dir=sp_data_dir, speed_perturb=True))
    st = with_speed_perturbed(load_corpus("tfvae_demo/is10_small", data_dir=sp_data_dir, speed_perturb=True,
                                          in_memory_mb=0))
    assert is_streamed(st.splits["train"].features) and len(st.splits["train"]) == 3 * 80
    np.testing.assert_array_equal(st.splits["train"].speaker, mem.splits["train"].speaker)
    np.testing.assert_allclose(materialize(st.splits["train"].features), mem.splits["train"].features, rtol=1e-6)
    # the streamed batches carry the copies' own speaker classes (24 = 8 training speakers x 3)
    pipe = split_pipeline(st, "train")
    labels = np.concatenate([b["speaker"].numpy() for b in pipe.dataset(64, seed=0)])
    assert labels.size == 240 and sorted(np.bincount(labels).tolist()) == [10] * 24
    assert tf.reduce_all(tf.constant(labels) >= 0)


def test_folds_train_on_copies_of_their_own_training_speakers_only(sp_data_dir, monkeypatch, tmp_path):
    seen = []
    real = train.training_corpus

    def spy(cfg, corpus):  # what each model of the tuning run trains on
        out = real(cfg, corpus)
        seen.append((cfg.speed_perturb, {s: set(out.splits[s].speaker.tolist()) for s in out.splits},
                     len(out.splits["train"])))
        return out

    monkeypatch.setattr(train, "training_corpus", spy)
    argv = ["tune", "--dataset", "tfvae_demo/is10_small", "--data_dir", sp_data_dir, "--folds", "3",
            "--validation_speakers", "2", "--methods", "lrvae", "--grid", "speed_perturb=false,true",
            "--latent_dim", "16", "--mask_groups", "4", "--encoder_units", "32", "--decoder_units", "32",
            "--head_units", "16", "--epochs", "1", "--eval_attackers", "fast", "--output_dir", str(tmp_path / "r"),
            "--reports_dir", str(tmp_path / "rep")]
    assert experiments.main(argv) == 0
    assert [s for s, _, _ in seen] == ["false", "true"] * 3
    for speed, spk, size in seen:
        base = {s for s in spk["train"] if "@" not in s}
        copies = {s for s in spk["train"] if "@" in s}
        assert not base & (spk["validation"] | spk["test"])
        if speed == "true":  # exactly the training speakers' copies, three times the rows
            assert copies == {s + suffix for s in base for suffix in ("@sp0.9", "@sp1.1")}
            assert size == 3 * 10 * len(base)
        else:
            assert not copies and size == 10 * len(base)
        assert not any("@" in s for s in spk["validation"] | spk["test"])


def test_cli_trains_on_the_copies(sp_data_dir, tmp_path, capsys):
    from test_train_cli import SMALL

    rc = train.main([*SMALL, "--data_dir", sp_data_dir, "--speed_perturb", "--epochs", "1",
                     "--output_dir", str(tmp_path / "runs")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "on tfvae_demo/is10_small_sp: 240 train / 20 validation utterances, 24 training speakers" in out


def test_a_manifest_config_with_copies_is_named_apart(tmp_path):
    from test_audio_manifest import make_corpus, write_manifest

    from tfvae_datasets.audio_manifest.audio_manifest_dataset_builder import ManifestError, manifest_config

    m = write_manifest(tmp_path / "c.csv", make_corpus(tmp_path, 4, ("neutral", "angry"), 1))
    plain, sp = manifest_config(m, "eGeMAPSv02"), manifest_config(m, "eGeMAPSv02", speed_factors=(0.9, 1.1))
    assert sp.name.endswith("-egemapsv02_sp") and sp.name[:-3] != plain.name  # its own hash, its own data
    assert sp.speed_factors == (0.9, 1.1) and plain.speed_factors == ()
    with pytest.raises(ManifestError, match=r"speed_factors=\(0.9, 1.1\) needs an openSMILE feature set, not 'audio16k'"):
        manifest_config(m, "audio16k", speed_factors=(0.9, 1.1))


def test_sibling_rows_cycle_through_the_versions_of_each_recording():
    from tfvae.speed import next_version, sibling_rows

    splits = {"train": _split(["a", "b"]), "validation": _split(["c"], seed=1), "test": _split(["d"], seed=2)}
    g = with_speed_perturbed(Corpus("toy", "IS10", ["x", "y", "z"], splits, speed_factors=(0.9, 1.1)))
    n = len(splits["train"])
    rows = np.arange(n)  # the recording -> its copy at 0.9 -> at 1.1 -> the recording
    np.testing.assert_array_equal(sibling_rows(g.splits["train"].utterance_id), np.r_[rows + n, rows + 2 * n, rows])
    assert [next_version(v, 2) for v in (-1, 0, 1)] == [0, 1, -1]
    mixed = sibling_rows(["u1", "u2@sp0.9", "u2"])  # a recording without copies is its own sibling
    np.testing.assert_array_equal(mixed, [0, 2, 1])
    with pytest.raises(DataError, match="no utterance of the split has a speed-perturbed copy to pair with"):
        sibling_rows(splits["validation"].utterance_id)


def test_pipelines_pair_every_row_with_its_sibling_in_memory_and_streamed(sp_data_dir):
    from tfvae.pipeline import split_pipeline

    mem = with_speed_perturbed(load_corpus("tfvae_demo/is10_small", data_dir=sp_data_dir, speed_perturb=True))
    st = with_speed_perturbed(load_corpus("tfvae_demo/is10_small", data_dir=sp_data_dir, speed_perturb=True,
                                          in_memory_mb=0))
    feats, n = mem.splits["train"].features, 80
    want = feats[np.r_[np.arange(n) + n, np.arange(n) + 2 * n, np.arange(n)]]
    for corpus in (mem, st):  # in file order: the recordings, then their copies at 0.9 and at 1.1
        batches = list(split_pipeline(corpus, "train", siblings=True).dataset(64))
        np.testing.assert_allclose(np.concatenate([b["features"] for b in batches]), feats, rtol=1e-6)
        np.testing.assert_allclose(np.concatenate([b["sibling"] for b in batches]), want, rtol=1e-6)
    shuffled = next(iter(split_pipeline(mem, "train", siblings=True).dataset(32, seed=3)))
    index = {r.tobytes(): i for i, r in enumerate(feats)}
    pairs = [(index[a.tobytes()], index[b.tobytes()]) for a, b in zip(shuffled["features"].numpy(),
                                                                    shuffled["sibling"].numpy())]
    assert all(j == (i + n) % (3 * n) for i, j in pairs)
    assert "sibling" not in next(iter(split_pipeline(mem, "validation").dataset(8)))


def test_swap_decodes_the_emotion_end_of_a_row_with_the_identity_end_of_its_sibling(tiny_lrvae, monkeypatch):
    import tensorflow_probability as tfp

    m = tiny_lrvae(6, 8)
    m.swap_weight, m.use_swap = 1.0, True
    p = np.asarray(m.id_dropout.keep_rates, np.float32)
    assert p[0] == 0.0 and p[-1] == 1.0 and np.all(np.diff(p) > 0)
    seen = {}
    z = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    loc = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    sibling = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    monkeypatch.setattr(m, "posterior", lambda x, training=False: tfp.distributions.MultivariateNormalDiag(
        loc=loc, scale_diag=np.zeros_like(loc)))  # z' = the sibling's mean exactly
    monkeypatch.setattr(m, "decoder", lambda zs, training=False: seen.setdefault("z", zs)[:, :6] * 0.0 + 0.5)
    value = float(m._swap(z, sibling))
    np.testing.assert_allclose(seen["z"], (1 - p) * z + p * loc, rtol=1e-6)
    assert value == pytest.approx(float(m._recon(np.full((3, 6), 0.5, np.float32), m.normalizer(sibling))))
    with pytest.raises(ValueError, match="swap_weight > 0 needs training batches with 'sibling' features"):
        m.compute_losses({"features": sibling, "emotion": np.zeros(3, np.int32), "speaker": np.zeros(3, np.int32)},
                         training=True)


def test_cli_trains_with_the_swap_term_and_refuses_it_without_copies(sp_data_dir, tmp_path, capsys):
    import csv

    from test_train_cli import SMALL

    base = [*SMALL, "--data_dir", sp_data_dir, "--epochs", "1", "--swap_weight", "1", "--output_dir", str(tmp_path)]
    assert train.main([*base, "--speed_perturb", "true", "--run_name", "swap"]) == 0
    row = next(csv.DictReader(open(tmp_path / "swap" / "history.csv")))
    assert np.isfinite(float(row["swap"])) and float(row["swap"]) > 0
    assert train.main([*base, "--run_name", "plain"]) == 2  # SMALL trains without the copies
    assert "--swap_weight 1 pairs each training utterance with its speed-perturbed copies" in capsys.readouterr().err
