import json

import numpy as np
import pytest
import tensorflow as tf

from tfvae.export import METADATA_FILE, export_encoder, next_version
from tfvae.masking import keep_mask
from tfvae.model import LRVAE


@pytest.fixture(scope="module")
def exported(small_corpus, tmp_path_factory):
    c = small_corpus
    m = LRVAE(c.dim, 5, len(c.speaker_index()), latent_dim=32, encoder_units=(64,), decoder_units=(64,),
              head_units=(32,), seed=0)
    m.build()
    m.adapt_normalizer(c.splits["train"].features)
    masks = {"identity_free": keep_mask(32, "identity_free", 12), "emotion_free": keep_mask(32, "emotion_free", 20)}
    root = tmp_path_factory.mktemp("saved_models")
    path = export_encoder(m, root, "demo", masks, {"emotion_names": c.emotion_names})
    return m, path, masks, root


def test_versioned_layout_and_metadata(exported):
    _, path, masks, root = exported
    assert path == root / "demo" / "1" and (path / "saved_model.pb").exists()
    meta = json.loads((path / METADATA_FILE).read_text())
    assert meta["version"] == 1 and meta["masks"]["identity_free"] == masks["identity_free"].astype(int).tolist()
    assert next_version(root / "demo") == 2


def test_masked_signatures_after_reload(exported, small_corpus):
    model, path, masks, _ = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "identity_free", "emotion_free"}
    x = tf.constant(small_corpus.splits["test"].features[:7])  # raw features: normalisation is in the graph
    full = loaded.signatures["serving_default"](features=x)["latent"].numpy()
    np.testing.assert_allclose(full, model.encode(x).numpy(), rtol=1e-5, atol=1e-6)
    for sig, mask in masks.items():
        out = loaded.signatures[sig](features=x)["latent"].numpy()
        assert out.shape == (7, 32)
        keep = mask > 0
        assert np.all(out[:, ~keep] == 0.0) and not np.any(np.signbit(out[:, ~keep]))
        np.testing.assert_array_equal(out[:, keep], full[:, keep])
        assert np.all(out[:, keep] != 0.0)


def test_signature_shapes(exported):
    _, path, _, _ = exported
    sig = tf.saved_model.load(str(path)).signatures["identity_free"]
    spec = sig.structured_input_signature[1]["features"]
    assert spec.shape.as_list() == [None, 1582] and spec.dtype == tf.float32
    assert sig.structured_outputs["latent"].shape.as_list() == [None, 32]


def test_dnn_exports_its_heads(small_corpus, tmp_path):
    c = small_corpus
    m = LRVAE(c.dim, 5, len(c.speaker_index()), method="dnn", head_units=(16,), seed=0)
    m.build()
    m.adapt_normalizer(c.splits["train"].features)
    path = export_encoder(m, tmp_path, "dnn", {}, {})
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        features=tf.constant(c.splits["test"].features[:2]))
    assert out["emotion_probabilities"].shape == (2, 5) and out["speaker_embedding"].shape == (2, 16)
    np.testing.assert_allclose(out["emotion_probabilities"].numpy().sum(1), 1.0, rtol=1e-5)


def test_existing_version_is_never_overwritten(exported):
    m, path, masks, root = exported
    with pytest.raises(FileExistsError, match="immutable"):
        export_encoder(m, root, "demo", masks, {}, version=1)
