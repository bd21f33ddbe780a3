"""Front end, pooling and speaker-encoder layers (tfvae.speaker): values, masks, shapes, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae import synth
from tfvae.speaker.encoders import SpeakerEncoder, build_encoder
from tfvae.speaker.frontend import LogMelFrontend
from tfvae.speaker.pooling import StatisticsPooling, VLADPooling
from tfvae.speaker.presets import PRESETS, EncoderConfig, preset


def _speech(n_samples, speaker=0, utterance=0):
    x = synth.synthesize(synth.make_voice(speaker, 3), "neutral", utterance, 3)
    reps = -(-n_samples // len(x))
    return np.tile(x, reps)[:n_samples].astype(np.float32)


def test_frontend_frames_mean_norm_and_padding():
    fe = LogMelFrontend(n_mels=40)
    assert (fe.frame_length, fe.frame_step, fe.n_fft) == (400, 160, 512)
    a, b = _speech(16000), _speech(8000, speaker=1)
    wave = np.stack([a, np.pad(b, (0, 8000))])
    feats, frames = fe(tf.constant(wave), tf.constant([16000, 8000]))
    assert frames.numpy().tolist() == [(16000 - 400) // 160 + 1, (8000 - 400) // 160 + 1] == [98, 48]
    assert feats.shape == (2, 98, 40)
    # per-utterance mean normalisation over the valid frames only, padding set to zero
    np.testing.assert_allclose(feats[0].numpy().mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(feats[1, :48].numpy().mean(axis=0), 0.0, atol=1e-4)
    assert np.all(feats[1, 48:].numpy() == 0.0)
    # the padded utterance gives the same frames as alone
    alone, _ = fe(tf.constant(b[None]), tf.constant([8000]))
    np.testing.assert_allclose(alone[0].numpy(), feats[1, :48].numpy(), atol=1e-4)
    assert fe.samples_for(48) == 400 + 47 * 160 and int(fe.frames_of(399)) == 0


def test_frontend_puts_a_tone_in_its_mel_band():
    fe = LogMelFrontend(n_mels=40, mean_norm=False)
    t = np.arange(16000) / 16000.0
    low, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (300.0, 4000.0))
    feats, _ = fe(tf.constant(np.stack([low, high])), tf.constant([16000, 16000]))
    peak = feats.numpy().mean(axis=1).argmax(axis=1)
    assert peak[0] < peak[1]
    mel = np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 42)[1:-1]
    centres = 700 * (10 ** (mel / 2595) - 1)  # HTK mel scale, as tf.signal uses
    assert abs(float(centres[peak[0]]) - 300) < 60 and abs(float(centres[peak[1]]) - 4000) < 400


def test_frontend_rejects_bad_settings():
    with pytest.raises(ValueError, match="invalid settings"):
        LogMelFrontend(n_mels=40, fmin=9000, fmax=8000)


def test_statistics_pooling_ignores_padding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 10, 3)).astype(np.float32)
    mask = np.zeros((2, 10), bool)
    mask[0, :10], mask[1, :4] = True, True
    out = StatisticsPooling()(tf.constant(x), tf.constant(mask)).numpy()
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out[1, :3], x[1, :4].mean(0), atol=1e-5)
    np.testing.assert_allclose(out[1, 3:], np.sqrt(x[1, :4].var(0) + 1e-5), atol=1e-5)
    np.testing.assert_allclose(out[0, :3], x[0].mean(0), atol=1e-5)


def test_vlad_pooling_matches_the_definition_and_drops_ghosts():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 4)).astype(np.float32)
    logits = rng.normal(size=(1, 6, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 0, 0]], bool)
    layer = VLADPooling(clusters=2, ghost_clusters=1)
    out = layer(tf.constant(x), tf.constant(logits), tf.constant(mask)).numpy()
    c = layer.centres.numpy()
    a = np.exp(logits[0, :4]) / np.exp(logits[0, :4]).sum(-1, keepdims=True)
    ref = np.stack([(a[:, k:k + 1] * (x[0, :4] - c[k])).sum(0) for k in range(2)])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert out.shape == (1, 8)
    np.testing.assert_allclose(out[0], ref.reshape(-1), atol=1e-5)
    with pytest.raises(ValueError, match="clusters >= 1"):
        VLADPooling(clusters=0)


@pytest.mark.parametrize("name", ["xvector_small", "resnet_vlad_small"])
def test_encoder_shapes_padding_and_serialisation(name):
    enc = build_encoder(preset(name))
    a, b = _speech(32000), _speech(24000, speaker=2)
    wave = tf.constant(np.stack([a, np.pad(b, (0, 8000))]))
    emb = enc({"waveform": wave, "lengths": tf.constant([32000, 24000])}).numpy()
    assert emb.shape == (2, PRESETS[name].embedding_dim) and np.all(np.isfinite(emb))
    alone = enc({"waveform": tf.constant(b[None]), "lengths": tf.constant([24000])}).numpy()
    cos = float(alone[0] @ emb[1] / np.linalg.norm(alone[0]) / np.linalg.norm(emb[1]))
    assert cos > 0.999  # padding does not change the embedding (beyond the edge of the receptive field)
    clone = SpeakerEncoder.from_config(enc.get_config())
    clone({"waveform": wave, "lengths": tf.constant([32000, 24000])})
    clone.set_weights(enc.get_weights())
    np.testing.assert_allclose(clone({"waveform": wave, "lengths": tf.constant([32000, 24000])}).numpy(), emb, atol=1e-5)
    assert keras.saving.get_registered_object("tfvae>SpeakerEncoder") is SpeakerEncoder


def test_presets_and_config_errors():
    assert PRESETS["xvector"].tdnn[-1][0] == 1500 and PRESETS["xvector"].embedding_dim == 512
    assert PRESETS["resnet_vlad"].blocks == (2, 3, 3, 3) and PRESETS["resnet_vlad"].ghost_clusters == 2
    assert preset("resnet_vlad_small", ghost_clusters=0).ghost_clusters == 0
    assert EncoderConfig.from_dict(PRESETS["xvector_small"].to_dict()) == PRESETS["xvector_small"]
    with pytest.raises(ValueError, match="preset 'ecapa' is unknown"):
        preset("ecapa")
    with pytest.raises(ValueError, match="arch 'lstm' is unknown"):
        EncoderConfig(arch="lstm")
    with pytest.raises(ValueError, match="unknown speaker-encoder config field"):
        EncoderConfig.from_dict({"arch": "xvector", "layers": 3})
