"""tfvae.distill: PCA + LDA class projections distilled into the attributes' branches (--lda_target)."""

import subprocess
import sys

import numpy as np
import pytest

from tfvae.distill import ProjectionTarget, fit_class_projection, projection_dim


def _acted(rng, speakers=6, per=40, dim=20):
    """Speakers as offsets in dims 0-2, an acted 'emotion' varying within every speaker in dims 3-5."""
    spk = np.repeat(np.arange(speakers), per)
    emo = rng.integers(0, 4, size=spk.size)
    x = rng.normal(scale=0.3, size=(spk.size, dim))
    x[:, :3] += rng.normal(scale=2.0, size=(speakers, 3))[spk]
    x[:, 3:6] += 2.0 * np.eye(4)[emo][:, :3]
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32), spk, emo


def test_projection_separates_speakers_and_ignores_what_varies_within_them():
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(0)
    x, spk, emo = _acted(rng)
    kernel, bias = fit_class_projection(x, spk)
    assert kernel.shape == (20, 5) and bias.shape == (5,) and projection_dim(len(x), 20, 6) == 5
    out = x @ kernel + bias
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    assert out.var(0).mean() == pytest.approx(1.0, abs=1e-4)
    # the folded affine map is sklearn's PCA + LDA, centred and scaled by one factor
    pca = PCA(20, random_state=0).fit(x)  # min(PCA_DIMS, features, rows - 1)
    ref = LinearDiscriminantAnalysis().fit(pca.transform(x), spk).transform(pca.transform(x))
    np.testing.assert_allclose(out, (ref - ref.mean(0)) / np.sqrt(ref.var(0).mean()), atol=1e-3)
    # nearly all of its variance lies between speakers, and the acted emotion barely moves it
    between = np.mean([out[spk == s].mean(0) ** 2 for s in range(6)], axis=0).sum()
    assert between / out.var(0).sum() > 0.95
    emo_means = np.array([out[emo == e].mean(0) for e in range(4)])
    assert np.abs(emo_means).max() < 0.3


def test_projection_rejects_bad_input():
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="one label per feature row"):
        fit_class_projection(x, np.zeros(9))
    with pytest.raises(ValueError, match="at least 2 known classes"):
        fit_class_projection(x, np.zeros(10))
    with pytest.raises(ValueError, match="at least 2 known classes"):  # unknown labels (-1) are left out
        fit_class_projection(x, np.array([0] * 5 + [-1] * 5))


def test_target_is_the_readouts_mean_squared_error():
    target = ProjectionTarget(2, name="id_target")
    target.build((None, 3), 4)
    with pytest.raises(ValueError, match=r"projection of shape \(4, 3\)"):
        target.set_projection(np.zeros((4, 3)), np.zeros(3))
    kernel = np.arange(8, dtype=np.float32).reshape(4, 2)
    target.set_projection(kernel, [1.0, -1.0])
    branch, x = np.ones((5, 3), np.float32), np.ones((5, 4), np.float32)
    w, b = (v.numpy() for v in target.readout.weights)
    expected = np.mean((branch @ w + b - (x @ kernel + [1.0, -1.0])) ** 2)
    assert float(target(branch, x)) == pytest.approx(expected, rel=1e-5)
    assert [v.name for v in target.trainable_weights] == ["kernel", "bias"]  # the projection stays fixed


def test_train_cli_distils_and_load_run_rebuilds_the_target(demo_data_dir, tmp_path):
    from tfvae.runs import load_run

    small = ["--dataset", "tfvae_demo/is10_small", "--speed_perturb", "false", "--latent_dim", "32", "--mask_groups",
             "8", "--encoder_units", "64", "--decoder_units", "64", "--head_units", "32", "--verbose", "2",
             "--eval_attackers", "fast"]
    cmd = [sys.executable, "-m", "tfvae.train", *small, "--data_dir", demo_data_dir, "--epochs", "3",
           "--lda_target", "1", "--lda_attributes", "emotion+identity", "--output_dir", str(tmp_path / "runs"), "--export_dir", str(tmp_path / "sm")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for term in ("emo_lda", "id_lda"):
        losses = [float(line.split(f" {term}: ")[1].split()[0]) for line in out.stdout.splitlines() if f" {term}: " in line]
        assert len(losses) == 3 and losses[-1] < losses[0], (term, losses)  # the read-outs learn the projections
    model, _, _ = load_run(tmp_path / "runs" / "tfvae_demo-is10_small-IS10-lrvae")
    # LDA gives one direction fewer than classes
    assert model.lda_target_dims == {"emotion": model.n_emotions - 1, "identity": model.n_speakers - 1} \
        and model.n_emotions >= 3
    for short, name in (("emo", "emotion"), ("id", "identity")):
        kernel = getattr(model, f"{short}_target").kernel.numpy()
        assert kernel.shape == (model.input_dim, model.lda_target_dims[name]) and np.abs(kernel).max() > 0  # loaded


def test_band_readout_sees_only_the_attributes_nominal_band(small_corpus):
    from tests.test_model import _batch, _model

    dims = {"emotion": 2, "identity": 3}
    branch = _model(small_corpus, lda_target_weight=1.0, lda_target_dims=dims)
    band = _model(small_corpus, lda_target_weight=1.0, lda_target_dims=dims, lda_readout="band")
    # 32 nodes: the read-out of the whole branch reads 32, the emotion band nodes 0-15, the identity band 16-31
    assert branch.emo_target.readout.kernel.shape == (32, 2) and band.emo_target.readout.kernel.shape == (16, 2)
    assert band._lda_nodes("identity", 32) == slice(16, 32) and band.id_target.readout.kernel.shape == (16, 3)
    _, terms = band.compute_losses(_batch(small_corpus), training=True)
    assert {"emo_lda", "id_lda"} <= set(terms) and {"emo_lda", "id_lda"} <= set(band.trackers)
    with pytest.raises(ValueError, match="lda_readout 'nodes' is unknown"):
        _model(small_corpus, lda_target_weight=1.0, lda_target_dims=dims, lda_readout="nodes")
    with pytest.raises(ValueError, match=r"lda_target_dims names \['accent'\]"):
        _model(small_corpus, lda_target_weight=1.0, lda_target_dims={"accent": 2})
