import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.pipeline import make_dataset
from tfvae.model import LRVAE, loss_terms, method_parts


def _model(corpus, method="lrvae", **kw):
    kw.setdefault("latent_dim", 32)
    kw.setdefault("encoder_units", (128, 64))
    kw.setdefault("decoder_units", (64, 128))
    kw.setdefault("head_units", (64, 32))
    m = LRVAE(corpus.dim, len(corpus.emotion_names), len(corpus.speaker_index()), method=method, seed=0, **kw)
    m.build()
    m.adapt_normalizer(corpus.splits["train"].features)
    return m


def _batch(corpus, split="train", n=64):
    return next(iter(make_dataset(corpus, split, n)))


def _flags(parts):
    return {k: v for k, v in parts.items() if k not in ("heads", "adversaries")}


def test_method_parts_match_the_paper_baselines():
    assert _flags(method_parts("dnn")) == {"vae": False, "layered": False, "emo": True, "id": True,
                                           "id_adv": False, "emo_adv": False}
    assert _flags(method_parts("lrvae")) == {"vae": True, "layered": True, "emo": True, "id": True,
                                             "id_adv": True, "emo_adv": True}
    assert method_parts("lrvae")["adversaries"] == (("identity", "emotion"), ("emotion", "identity"))
    assert method_parts("lrvae-noadv")["layered"] and not method_parts("lrvae-noadv")["id_adv"]
    # a-vae: one task, adversary against the other attribute
    assert _flags(method_parts("a-vae", "identity")) == {"vae": True, "layered": False, "emo": True, "id": False,
                                                         "id_adv": True, "emo_adv": False}
    assert method_parts("a-vae", "emotion")["id"] and method_parts("a-vae", "emotion")["emo_adv"]
    with pytest.raises(ValueError, match="unknown"):
        method_parts("gan")


def test_method_parts_over_three_attributes():
    attrs = ("emotion", "gender", "identity")
    p = method_parts("lrvae", attributes=attrs)
    assert p["heads"] == attrs and len(p["adversaries"]) == 6  # every ordered pair
    assert loss_terms(attrs, p["adversaries"]) == (
        "vae", "emo", "gen", "id", "emo_adv_gen", "emo_adv_id", "gen_adv_emo", "gen_adv_id", "id_adv_emo", "id_adv_gen")
    assert loss_terms(("emotion", "identity"), method_parts("lrvae")["adversaries"]) == (
        "vae", "emo", "id", "emo_adv", "id_adv")  # the paper's terms, in the paper's order
    only = method_parts("lrvae", attributes=attrs, adversaries="identity@emotion,gender@emotion")
    assert only["adversaries"] == (("gender", "emotion"), ("identity", "emotion"))
    assert only["id_adv"] and only["gen_adv"] and not only["emo_adv"]
    avae = method_parts("a-vae", "gender", attrs)
    assert avae["heads"] == ("emotion", "identity") and avae["adversaries"] == (("gender", "emotion"),)
    for bad, msg in (("identity@identity", "own branch"), ("age@emotion", "unknown attribute"),
                     ("identity", "predicted@branch")):
        with pytest.raises(ValueError, match=msg):
            method_parts("lrvae", attributes=attrs, adversaries=bad)
    with pytest.raises(ValueError, match="exactly one attribute must be 'identity'"):
        method_parts("lrvae", attributes=("emotion", "gender"))


def test_three_attribute_model_trains_every_term():
    """K=3: a band-shaped middle profile, a head per attribute, six adversaries; unknown gender (-1) counts
    in no gender term; the loss is the weighted sum of the terms."""
    from tfvae.model import LRVAE

    rng = np.random.default_rng(0)
    n, d = 32, 10
    m = LRVAE(d, 3, 4, attributes=("emotion", "gender", "identity"), n_classes={"gender": 2}, latent_dim=12,
              encoder_units=(16,), decoder_units=(16,), head_units=(8,), seed=0, hsic_weight=1.0,
              loss_weights={"gen": 2.0})
    m.build()
    m.adapt_normalizer(rng.normal(size=(n, d)).astype("float32"))
    p_gen = np.asarray(m.gen_dropout.keep_rates)
    assert p_gen.argmax() in (5, 6) and p_gen[0] == p_gen[-1] == 0.0  # peaked on the middle band
    batch = {"features": rng.normal(size=(n, d)).astype("float32"), "emotion": rng.integers(0, 3, n).astype("int32"),
             "speaker": rng.integers(0, 4, n).astype("int32"), "gender": np.array([-1] * n, "int32")}
    loss, terms = m.compute_losses(batch, training=False)
    assert {"emo", "gen", "id", "gen_adv_emo", "id_adv_emo", "emo_adv_gen", "id_adv_gen", "emo_adv_id",
            "gen_adv_id", "hsic"} <= set(terms)
    assert float(terms["gen"]) == 0.0 and float(terms["_counts"]["gen"]) == 0.0  # no known gender
    w = m.loss_weights
    assert w["gen"] == 2.0 and w["gen_adv_emo"] == 1.0
    expected = sum(w[t] * float(terms[t]) for t in m.loss_terms) + float(terms["l2"]) + float(terms["hsic"])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    out = m(batch["features"])
    assert out["gender_probabilities"].shape == (n, 2) and out["speaker_embedding"].shape == (n, 8)
    m2 = LRVAE.from_config(m.get_config())
    assert [a.name for a in m2.attributes] == ["emotion", "gender", "identity"] and m2.n_classes["gender"] == 2


def test_kl_matches_closed_form(small_corpus):
    m = _model(small_corpus)
    batch = _batch(small_corpus)
    q = m.posterior(batch["features"])
    mu, sd = q.mean().numpy(), q.stddev().numpy()
    closed = 0.5 * np.sum(sd ** 2 + mu ** 2 - 1.0 - np.log(sd ** 2), axis=1)
    _, terms = m.compute_losses(batch, training=False)
    assert float(terms["kl"]) * m.latent_dim == pytest.approx(closed.mean(), rel=1e-4)  # nats per node
    # and the reconstruction term is the unit-variance Gaussian NLL per feature
    out = m.forward(batch["features"])
    nll = 0.5 * np.sum((out["x_std"].numpy() - out["x_loc"].numpy()) ** 2 + np.log(2 * np.pi), axis=1)
    assert float(terms["recon"]) * m.input_dim == pytest.approx(nll.mean(), rel=1e-4)


def test_objective_is_the_weighted_sum_of_eq4(small_corpus):
    weights = {"vae": 0.5, "emo": 2.0, "id": 0.25, "emo_adv": 3.0, "id_adv": 0.1}
    m = _model(small_corpus, loss_weights=weights, kl_weight=0.3)
    loss, t = m.compute_losses(_batch(small_corpus), training=False)
    assert float(t["vae"]) == pytest.approx(float(t["recon"] + 0.3 * t["kl"]), rel=1e-6)
    expect = sum(w * float(t[k]) for k, w in weights.items()) + float(t["l2"])
    assert float(loss) == pytest.approx(expect, rel=1e-6)
    assert float(t["l2"]) > 0  # L2 on all weights and biases
    assert float(t["selection"]) == pytest.approx(0.5 * float(t["vae"]) + 2 * float(t["emo"]) + 0.25 * float(t["id"]))


def test_unknown_speakers_do_not_enter_speaker_losses(small_corpus):
    m = _model(small_corpus)
    val = _batch(small_corpus, "validation")
    assert (val["speaker"].numpy() == -1).all()
    _, t = m.compute_losses(val)
    assert float(t["id"]) == 0.0 and float(t["id_adv"]) == 0.0 and t["_counts"]["id"].numpy() == 0
    logs = m.test_step(val)
    assert np.isnan(float(logs["id"])) and np.isfinite(float(logs["emo"])) and "grl_lambda" not in logs


def _fit(corpus, epochs, **kw):
    keras.utils.set_random_seed(0)
    m = _model(corpus, **kw)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = make_dataset(corpus, "train", 16, training=True, seed=0)
    return m, m.fit(ds, epochs=epochs, verbose=0, shuffle=False).history


def test_short_training_run_decreases_every_loss_term(small_corpus):
    # lambda = 0: the discriminators learn like the classifiers (their reversed gradient is 0)
    m, h = _fit(small_corpus, 12, lambda_schedule={"kind": "constant", "max_lambda": 0.0})
    for term in ("loss", "vae", "recon", "emo", "id", "emo_adv", "id_adv"):
        first, last = h[term][0], h[term][-1]
        assert last < first, f"{term} did not decrease: {first:.4f} -> {last:.4f}"
    assert h["id_acc"][-1] > 0.5 and h["emo_acc"][-1] > 0.4


def test_gradient_reversal_makes_the_encoder_fight_the_discriminators(small_corpus):
    _, free = _fit(small_corpus, 12, lambda_schedule={"kind": "constant", "max_lambda": 0.0})
    _, adv = _fit(small_corpus, 12, lambda_schedule={"kind": "constant", "max_lambda": 1.0},
                  loss_weights={"emo_adv": 3.0, "id_adv": 3.0})
    # with reversal the encoder maximises the discriminators' cross-entropy
    assert adv["id_adv"][-1] > free["id_adv"][-1] + 0.1
    assert adv["emo_adv"][-1] > free["emo_adv"][-1] + 0.05


def test_lambda_follows_the_dann_ramp_during_fit(small_corpus):
    m, h = _fit(small_corpus, 3, lambda_schedule={"kind": "dann", "max_lambda": 1.0, "total_steps": 15})
    # 80 examples / batch 16 = 5 steps per epoch; lambda is set from the step before each update
    lam = float(m.id_adv_grl.lambda_.numpy())
    assert lam == pytest.approx(2 / (1 + np.exp(-10 * 14 / 15)) - 1, rel=1e-5)
    assert h["grl_lambda"][0] < h["grl_lambda"][1] < h["grl_lambda"][2]


def test_outputs_and_serialization(small_corpus, tmp_path):
    m = _model(small_corpus, method="a-vae", protect="emotion")
    out = m(small_corpus.splits["test"].features[:3])
    assert set(out) == {"latent", "speaker_embedding"}
    assert out["latent"].shape == (3, 32) and out["speaker_embedding"].shape == (3, 32)
    clone = LRVAE.from_config(m.get_config())
    clone.build()
    m.save_weights(tmp_path / "w.weights.h5")
    clone.load_weights(tmp_path / "w.weights.h5")
    x = small_corpus.splits["test"].features[:5]
    np.testing.assert_array_equal(clone.encode(x).numpy(), m.encode(x).numpy())
    assert clone.get_config() == m.get_config()


def test_model_rejects_bad_construction():
    with pytest.raises(ValueError, match="unknown loss weights"):
        LRVAE(10, 5, 4, loss_weights={"recon": 1.0})
    with pytest.raises(ValueError, match="at least 2 training speakers"):
        LRVAE(10, 5, 1)
    m = LRVAE(10, 5, 4, latent_dim=8)
    m.build()
    with pytest.raises(ValueError, match="expects 10 features per example, got 11"):
        m(tf.zeros((2, 11)))


def test_learned_and_calibrated_decoder_variance_are_gaussian_nll(small_corpus):
    batch = _batch(small_corpus)
    m = _model(small_corpus, decoder_variance="learned")
    m.decoder_log_scale.assign(np.full(m.input_dim, np.log(0.5), np.float32))
    _, terms = m.compute_losses(batch, training=False)
    out = m.forward(batch["features"])
    r = out["x_std"].numpy() - out["x_loc"].numpy()
    nll = 0.5 * np.sum(r ** 2 / 0.25 + np.log(2 * np.pi * 0.25), axis=1)
    assert float(terms["recon"]) * m.input_dim == pytest.approx(nll.mean(), rel=1e-4)
    assert any(w.name == "decoder_log_scale" for w in m.trainable_weights)
    c = _model(small_corpus, decoder_variance="calibrated")
    _, terms = c.compute_losses(batch, training=False)
    out = c.forward(batch["features"])
    mse = np.mean((out["x_std"].numpy() - out["x_loc"].numpy()) ** 2)  # sigma-VAE: sigma^2 = batch MSE
    assert float(terms["recon"]) == pytest.approx(0.5 * (1 + np.log(2 * np.pi * mse)), rel=1e-4)
    with pytest.raises(ValueError, match="decoder_variance 'bogus'"):
        LRVAE(10, 5, 4, decoder_variance="bogus")


def test_free_bits_floor_and_kl_warmup(small_corpus):
    batch = _batch(small_corpus)
    m = _model(small_corpus, free_bits=5.0)  # far above the KL of an untrained encoder per node
    _, terms = m.compute_losses(batch, training=False)
    assert float(terms["kl"]) == pytest.approx(5.0)
    m, h = _fit(small_corpus, 2, kl_warmup_steps=10, method="vae")  # 5 steps per epoch
    assert float(m.kl_anneal.numpy()) == pytest.approx(0.9)  # set from the step before the 10th update


def test_kl_identity_weight_ramps_the_kl_of_each_node(small_corpus):
    from tfvae.terms import kl_node_weights

    assert kl_node_weights(16, 1.0) is None  # the paper's uniform KL
    w = kl_node_weights(5, 0.2)
    np.testing.assert_allclose(w, [1.0, 0.8, 0.6, 0.4, 0.2], rtol=1e-6)
    batch = _batch(small_corpus)
    m = _model(small_corpus, kl_identity_weight=0.25)
    q = m.posterior(batch["features"])
    mu, sd = q.mean().numpy(), q.stddev().numpy()
    per_node = (0.5 * (sd ** 2 + mu ** 2 - 1.0 - np.log(sd ** 2))).mean(axis=0)
    expect = float(np.mean(per_node * np.linspace(1.0, 0.25, m.latent_dim)))
    _, terms = m.compute_losses(batch, training=False)
    assert float(terms["kl"]) == pytest.approx(expect, rel=1e-4)
    assert LRVAE.from_config(m.get_config()).kl_identity_weight == 0.25


def test_encoder_skip_adds_a_linear_map_of_the_input(small_corpus):
    x = small_corpus.splits["test"].features[:6]
    m = _model(small_corpus, encoder_skip=True)
    x_std = m.normalizer(x)
    mlp, lin = m.encoder(x_std).numpy(), m.encoder_linear(x_std).numpy()
    assert len(m.encoder_linear.layers) == 1 and m.encoder_linear.layers[0].kernel.shape == (small_corpus.dim, 64)
    np.testing.assert_allclose(m.encode(x).numpy(), (mlp + lin)[:, :32], rtol=1e-5, atol=1e-5)
    w = m.encoder_linear.layers[0].kernel
    w.assign(2.0 * w)  # the mean moves by exactly the linear part's change
    np.testing.assert_allclose(m.encode(x).numpy(), (mlp + 2 * lin)[:, :32], rtol=1e-4, atol=1e-4)
    assert not hasattr(_model(small_corpus), "encoder_linear")
    assert LRVAE.from_config(m.get_config()).encoder_skip is True


def test_linear_band_encodes_the_identity_end_linearly(small_corpus):
    x = small_corpus.splits["test"].features[:6]
    m = _model(small_corpus, linear_nodes=12)
    x_std = m.normalizer(x).numpy()
    w, b = m.encoder_band.layers[0].kernel.numpy(), m.encoder_band.layers[0].bias.numpy()
    assert w.shape == (small_corpus.dim, 24) and m.encoder.layers[-1].kernel.shape[-1] == 2 * 20
    q = m.posterior(x)
    np.testing.assert_allclose(q.mean().numpy()[:, 20:], x_std @ w[:, :12] + b[:12], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(q.stddev().numpy()[:, 20:], np.exp(0.5 * np.clip(x_std @ w[:, 12:] + b[12:], -12, 8)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q.mean().numpy()[:, :20], m.encoder(x_std).numpy()[:, :20], rtol=1e-5, atol=1e-5)
    assert LRVAE.from_config(m.get_config()).linear_nodes == 12
    assert not hasattr(_model(small_corpus), "encoder_band")
    for bad in (-1, 32):
        with pytest.raises(ValueError, match=r"linear_nodes must be in \[0, latent_dim=32\), got " + str(bad)):
            _model(small_corpus, linear_nodes=bad)


def test_hidden_dropout_acts_in_training_only_and_spares_the_discriminators(small_corpus):
    x = small_corpus.splits["test"].features[:32]
    m = _model(small_corpus, hidden_dropout=0.5)
    names = [layer.name for layer in m.encoder.layers]
    assert names == ["encoder_dense0", "encoder_dropout0", "encoder_dense1", "encoder_dropout1", "encoder_out"]
    assert [layer.name for layer in m.id_body.layers][1::2] == ["speaker_embedding_dropout0",
                                                                "speaker_embedding_dropout1"]
    assert not any("dropout" in layer.name for layer in m.emo_adv_head.layers)
    x_std = m.normalizer(x)
    h = m.encoder.layers[0](x_std)
    dropped = m.encoder.layers[1](h, training=True).numpy()
    zero = dropped == 0
    assert 0.4 < zero[h.numpy() > 0].mean() < 0.6  # half the active units are dropped
    np.testing.assert_allclose(dropped[~zero], 2.0 * h.numpy()[~zero], rtol=1e-5)  # the rest scaled by 1/(1-p)
    np.testing.assert_array_equal(m.encode(x).numpy(), m.encode(x).numpy())  # inference: no dropout
    assert LRVAE.from_config(m.get_config()).hidden_dropout == 0.5


def test_mixup_mixes_features_and_every_cross_entropy(small_corpus):
    batch = _batch(small_corpus)
    m = _model(small_corpus, mixup=0.4)
    x = batch["features"].numpy()
    y = {"emotion": batch["emotion"], "identity": batch["speaker"]}
    mixed, (lam, y_b) = m._mix(batch["features"], y)
    lam = float(lam)
    assert 0.5 <= lam < 1.0
    other = (mixed.numpy() - lam * x) / (1.0 - lam)
    rows = [int(np.argmin(np.abs(x - r).sum(axis=1))) for r in other]  # each row's partner is a batch row
    np.testing.assert_allclose(other, x[rows], rtol=1e-3, atol=1e-2 * np.abs(x).max())
    assert sorted(rows) == list(range(len(x)))  # a permutation of the batch
    np.testing.assert_array_equal(y_b["identity"].numpy(), batch["speaker"].numpy()[rows])
    np.testing.assert_array_equal(y_b["emotion"].numpy(), batch["emotion"].numpy()[rows])
    # every CE term is lam * CE(labels) + (1 - lam) * CE(shuffled labels), on the logits of the mixed batch
    shuffled = np.roll(np.arange(len(x)), 1)
    y_s = {k: tf.gather(v, shuffled) for k, v in y.items()}
    m._mix = lambda feats, labels: (0.7 * feats + 0.3 * tf.gather(feats, shuffled), (0.7, y_s))
    seen = {}
    forward = m.forward
    m.forward = lambda feats, training=False, labels=None: seen.setdefault("out", forward(feats, training, labels))
    _, terms = m.compute_losses(batch, training=True)
    ce = keras.losses.sparse_categorical_crossentropy
    for term, name in (("emo", "emotion"), ("id", "identity"), ("emo_adv", "emotion"), ("id_adv", "identity")):
        logits = seen["out"][f"{term}_logits"]
        want = 0.7 * np.mean(ce(y[name], logits, from_logits=True)) + 0.3 * np.mean(ce(y_s[name], logits,
                                                                                        from_logits=True))
        assert float(terms[term]) == pytest.approx(float(want), rel=1e-5), term
    assert LRVAE.from_config(m.get_config()).mixup == 0.4


def test_guard_term_is_the_linear_leakage_of_each_adversary_pair(small_corpus):
    from tfvae.terms import linear_leakage

    batch = _batch(small_corpus)
    m = _model(small_corpus, guard_weight=5.0)
    seen = {}
    forward = m.forward
    m.forward = lambda feats, training=False, labels=None: seen.setdefault("out", forward(feats, training, labels))
    loss, terms = m.compute_losses(batch, training=False)
    z = seen["out"]["z"]
    want = 0.5 * (float(linear_leakage(z, batch["emotion"], m.n_emotions, m.id_dropout.keep_rates))
                  + float(linear_leakage(z, batch["speaker"], m.n_speakers, m.emo_dropout.keep_rates)))
    assert float(terms["guard"]) == pytest.approx(want, rel=1e-5) and want > 0
    rest = sum(m.loss_weights[t] * terms[t] for t in ("vae", "emo", "id", "emo_adv", "id_adv")) + terms["l2"]
    assert float(loss) == pytest.approx(float(rest + 5.0 * terms["guard"]), rel=1e-5)
    assert "guard" in m.trackers and "guard" not in _model(small_corpus).trackers
    assert "guard" not in _model(small_corpus, method="lrvae-noadv", guard_weight=5.0).trackers  # no pairs
    assert LRVAE.from_config(m.get_config()).guard_weight == 5.0


def test_mixup_within_an_attribute_pairs_rows_that_share_its_label(small_corpus):
    batch = _batch(small_corpus)
    y = {"emotion": batch["emotion"], "identity": batch["speaker"]}
    for attr, label in (("emotion", "emotion"), ("identity", "speaker")):
        m = _model(small_corpus, mixup=1.0, mixup_within=attr)
        partners = set()
        for _ in range(3):
            _, (_, y_b) = m._mix(batch["features"], y)
            np.testing.assert_array_equal(y_b[attr].numpy(), batch[label].numpy())  # same label, always
            partners.add(tuple(y_b["identity" if attr == "emotion" else "emotion"].numpy().tolist()))
        assert len(partners) > 1  # the partners themselves are drawn at random
    lone = {"emotion": tf.constant([0, 1, 1, 2]), "identity": tf.constant([0, 0, 1, 1])}
    _, (_, y_b) = _model(small_corpus, mixup=1.0, mixup_within="emotion")._mix(tf.eye(4, small_corpus.dim), lone)
    np.testing.assert_array_equal(y_b["identity"].numpy()[[0, 3]], [0, 1])  # alone with its label: keeps itself
    np.testing.assert_array_equal(sorted(y_b["identity"].numpy()[[1, 2]]), [0, 1])  # the two emotion-1 rows swap
    with pytest.raises(ValueError, match="mixup_within 'gender' is not one of the attributes"):
        _model(small_corpus, mixup=1.0, mixup_within="gender")


def test_hsic_term_and_aam_head(small_corpus):
    batch = _batch(small_corpus)
    m = _model(small_corpus, hsic_weight=2.0, speaker_head="aam", aam_margin=0.3, aam_scale=10.0)
    loss, terms = m.compute_losses(batch, training=True)
    assert "hsic" in terms and 0.0 <= float(terms["hsic"]) <= 1.0
    rest = sum(m.loss_weights[t] * terms[t] for t in ("vae", "emo", "id", "emo_adv", "id_adv")) + terms["l2"]
    assert float(loss) == pytest.approx(float(rest + 2.0 * terms["hsic"]), rel=1e-5)
    # aam: the labelled class' logit is s*cos(theta+m), the others s*cos(theta); inference: plain cosines
    emb = m.id_body(m.id_dropout(m.encode(batch["features"])))
    y = batch["speaker"].numpy()
    plain = m.id_out(emb).numpy()
    margin = m.id_out(emb, labels=batch["speaker"]).numpy()
    rows = np.where(y >= 0)[0]
    theta = np.arccos(plain[rows, y[rows]] / 10.0)
    np.testing.assert_allclose(margin[rows, y[rows]], 10.0 * np.cos(theta + 0.3), rtol=1e-4, atol=1e-4)
    other = np.ones_like(plain, bool)
    other[rows, y[rows]] = False
    np.testing.assert_allclose(margin[other], plain[other], rtol=1e-5)
    assert np.abs(plain).max() <= 10.0 + 1e-4
    clone = LRVAE.from_config(m.get_config())
    assert clone.speaker_head == "aam" and clone.hsic_weight == 2.0


def test_discriminator_learning_rate_multiplier_moves_only_the_discriminators():
    from tfvae.optimizers import FusedAdam

    m = LRVAE(6, 3, 4, latent_dim=4, encoder_units=(8,), decoder_units=(8,), head_units=(8,), seed=0)
    m.build()
    is_disc = ["discriminator" in v.path for v in m.trainable_variables]
    assert any(is_disc) and not all(is_disc)
    steps = {}
    for scale in (1.0, 5.0):
        opt = FusedAdam(1e-3, lr_multipliers={"discriminator": scale})
        opt.build(m.trainable_variables)
        before = [v.numpy().copy() for v in m.trainable_variables]
        opt.apply_gradients([(tf.ones_like(v), v) for v in m.trainable_variables])
        moved = [float(np.abs(v.numpy() - b).max()) for v, b in zip(m.trainable_variables, before)]
        steps[scale] = {"disc": max(d for d, k in zip(moved, is_disc) if k),
                        "other": max(d for d, k in zip(moved, is_disc) if not k)}
    # Adam's first step moves every weight by lr; the multiplier scales the discriminators' only
    assert steps[1.0]["disc"] == pytest.approx(1e-3, rel=1e-3) and steps[5.0]["disc"] == pytest.approx(5e-3, rel=1e-3)
    assert steps[5.0]["other"] == pytest.approx(1e-3, rel=1e-3)
    assert FusedAdam.from_config(FusedAdam(1e-3, lr_multipliers={"discriminator": 5.0}).get_config()).lr_multipliers \
        == {"discriminator": 5.0}


def test_rbf_hsic_sees_non_linear_dependence(small_corpus):
    from tfvae.terms import cross_correlation, rbf_hsic

    rng = np.random.default_rng(0)
    a = rng.normal(size=(256, 4)).astype("float32")
    independent = tf.constant(np.c_[a, rng.normal(size=(256, 4))].astype("float32"))
    squared = tf.constant(np.c_[a, a ** 2].astype("float32"))  # uncorrelated, yet dependent
    assert float(rbf_hsic(squared, 4)) > 3 * float(rbf_hsic(independent, 4))
    assert float(cross_correlation(squared, 4)) < 0.05
    m = _model(small_corpus, hsic_weight=1.0, hsic_kernel="rbf")
    _, terms = m.compute_losses(_batch(small_corpus), training=True)
    assert np.isfinite(float(terms["hsic"])) and float(terms["hsic"]) >= 0
    with pytest.raises(ValueError, match="hsic_kernel 'poly'"):
        LRVAE(10, 5, 4, hsic_kernel="poly")


def test_l2_term_is_the_sum_of_the_regularisation_losses_with_and_without_xla(small_corpus):
    m = _model(small_corpus)
    expected = float(keras.ops.sum(m.losses))
    graph = tf.function(m._weight_penalty)
    assert float(graph()) == expected, "without XLA: exactly sum(model.losses)"
    xla = tf.function(m._weight_penalty, jit_compile=True)
    np.testing.assert_allclose(float(xla()), expected, rtol=1e-5)  # reduced by matrix-vector products


def test_discriminator_steps_update_the_discriminators_alone(small_corpus):
    from tfvae.optimizers import FusedAdam

    m = _model(small_corpus, disc_steps=3)
    m.compile(optimizer=FusedAdam(1e-3))
    m.disc_optimizer = FusedAdam(1e-2)
    batch = _batch(small_corpus)
    disc = {id(v) for v in m.discriminator_variables}
    assert disc and len(disc) < len(m.trainable_variables)
    assert all("discriminator" in v.path for v in m.discriminator_variables)
    before = [v.numpy().copy() for v in m.trainable_variables]
    adv = lambda: [float(m.compute_losses(batch)[1][t]) for t in ("emo_adv", "id_adv")]  # noqa: E731
    start = adv()
    for _ in range(15):
        m.discriminator_step(batch, 1.0)
    for v, b in zip(m.trainable_variables, before):
        moved = not np.array_equal(v.numpy(), b)
        assert moved == (id(v) in disc), v.path  # the encoder, decoder and heads are held fixed
    assert all(after < first - 0.05 for after, first in zip(adv(), start)), (start, adv())
    # a joint step: disc_steps - 1 = 2 extra discriminator updates, then one update of everything
    m.train_step(batch)
    assert int(m.disc_optimizer.iterations) == 15 + 2 and int(m.optimizer.iterations) == 1
    assert LRVAE.from_config(m.get_config()).disc_steps == 3
    with pytest.raises(ValueError, match="disc_steps must be >= 1, got 0"):
        _model(small_corpus, disc_steps=0)


def test_the_identity_end_options_build_only_layered_models():
    """``--linear_band`` and ``--kl_identity_weight`` shape the identity end, which only the layered methods
    have: the other VAEs keep the paper's MLP encoder and uniform KL under the same configuration."""
    from tfvae.config import TrainConfig
    from tfvae.model_builder import build_model

    built = {}
    for method in ("vae", "a-vae", "lrvae-noadv", "lrvae"):
        cfg = TrainConfig(method=method, latent_dim=32, encoder_units=(16,), decoder_units=(16,), head_units=(8,),
                          mask_groups=4, linear_band=0.25, kl_identity_weight=0.5)
        m = build_model(cfg, 20, 3, 4, total_steps=10)
        built[method] = (m.linear_nodes, m.kl_identity_weight, m.encoder.layers[-1].kernel.shape[-1],
                         hasattr(m, "encoder_band"))
    assert built == {"vae": (0, 1.0, 64, False), "a-vae": (0, 1.0, 64, False),
                     "lrvae-noadv": (8, 0.5, 48, True), "lrvae": (8, 0.5, 48, True)}
