"""Waveform-in SavedModels: speaker encoder + LR-VAE encoder + mask in one graph (issue 11, item 6).

A run trained on speaker-encoder embeddings (``--feature_set xvector@<encoder>``) is exported
together with that encoder, so a TF Serving client sends nothing but audio:

- ``serving_default`` (``waveform`` float32 [batch, samples] at 16 kHz, zero-padded; ``lengths``
  int32 [batch]) -> ``latent`` float32 [batch, N]: the full latent;
- ``identity_free`` / ``emotion_free`` (and ``*_leace`` when the run has erasers): the masked
  views, as in :mod:`tfvae.export`, from waveforms;
- ``identity_free_wav`` / ``emotion_free_wav`` (``wav`` string [batch]: WAV-encoded bytes at
  16 kHz, decoded with ``tf.audio.decode_wav``) -> ``latent``.

The speaker encoder's input checks (length, finite samples, silence, sample rate) run in the
graph and fail with ``InvalidArgument``. ``assets.extra/tfvae.json`` names the encoder and its
weights' fingerprint beside the run's metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.erasure import SUFFIX

WAVE_SPECS = [tf.TensorSpec([None, None], tf.float32, name="waveform"), tf.TensorSpec([None], tf.int32, name="lengths")]
WAV_SPEC = [tf.TensorSpec([None], tf.string, name="wav")]


class WaveformEncoder(tf.Module):
    """The LR-VAE encoder behind a speaker encoder; one ``tf.function`` per signature (see module doc)."""

    def __init__(self, model, speaker_encoder, masks: dict[str, np.ndarray], erasers: dict | None = None):
        super().__init__(name="tfvae_waveform_encoder")
        self.model, self.speaker = model, speaker_encoder
        self._embed = speaker_encoder.signatures["serving_default"]
        self.keeps = {k: tf.constant(np.asarray(m).reshape(1, -1) > 0) for k, m in masks.items()}
        self.erasers = {}
        for sig, e in (erasers or {}).items():
            self.erasers[sig] = (tf.constant(e.mean[None, :], tf.float32), tf.constant(e.projection.T, tf.float32))

    def latent(self, waveform, lengths):
        feats = self._embed(waveform=waveform, lengths=lengths)["embedding"]
        return self.model.encode(tf.debugging.check_numerics(feats, "speaker embedding is not finite"))

    def view(self, name: str, waveform, lengths):
        z = self.latent(waveform, lengths)
        base = name.removesuffix(SUFFIX)
        keep = self.keeps[base]
        z = tf.where(keep, z, tf.zeros_like(z))
        if name in self.erasers:
            mean, proj_t = self.erasers[name]
            z = z - tf.matmul(z - mean, proj_t)
            z = tf.where(keep, z, tf.zeros_like(z))
        return {"latent": z}

    def signatures(self) -> dict:
        from tfvae.speaker.export import decode_wavs

        sigs = {"serving_default": tf.function(lambda waveform, lengths: {"latent": self.latent(waveform, lengths)},
                                               input_signature=WAVE_SPECS)}
        for name in [*self.keeps, *self.erasers]:
            fn = tf.function(lambda waveform, lengths, _n=name: self.view(_n, waveform, lengths), input_signature=WAVE_SPECS)
            sigs[name] = fn
            if name in self.keeps:
                sigs[f"{name}_wav"] = tf.function(lambda wav, _f=fn: _f(*decode_wavs(wav)), input_signature=WAV_SPEC)
        return sigs


def export_waveform_encoder(run_dir: str | Path, export_dir: str | Path, name: str | None = None,
                            encoder: str | None = None, version: int | None = None) -> Path:
    """Export the run in ``run_dir`` with its speaker encoder as ``<export_dir>/<name>/<version>/``.

    ``encoder`` overrides the encoder path recorded in the run's feature set; its weights must have
    the fingerprint the run's dataset recorded, when it recorded one.
    """
    from tfvae.export import _write_metadata, _write_version, write_models_config
    from tfvae.runs import load_run
    from tfvae.features import feature_kind, split_encoder
    from tfvae.speaker.export import encoder_fingerprint, load_speaker_encoder, write_warmup

    import json

    model, masks, meta = load_run(run_dir)
    erasers = meta.pop("erasers") or {}
    summary_file = Path(run_dir) / "summary.json"
    trained_with = (json.loads(summary_file.read_text()) if summary_file.exists() else {}).get("speaker_encoder") or {}
    fs = str(meta.get("feature_set"))
    path = encoder or trained_with.get("path") or (split_encoder(fs)[1] if feature_kind(fs) == "encoder" else None)
    if path is None:
        raise ValueError(f"run {run_dir} was trained on {meta.get('feature_set')!r}, not on speaker-encoder "
                         "embeddings (--feature_set xvector@<dir>); a waveform-in export needs that encoder")
    if not model.parts["vae"]:
        raise ValueError(f"run {run_dir} has no latent (method {meta['method']}); waveform-in export needs a VAE")
    loaded, enc_meta = load_speaker_encoder(path)
    if int(enc_meta["embedding_dim"]) != int(meta["input_dim"]):
        raise ValueError(f"speaker encoder {path} gives {enc_meta['embedding_dim']}-d embeddings; the run was trained "
                         f"on {meta['input_dim']}-d features")
    expected = trained_with.get("fingerprint")
    if expected and expected != encoder_fingerprint(enc_meta):
        raise ValueError(f"speaker encoder {path} has weights {encoder_fingerprint(enc_meta)}, but the run's dataset "
                         f"was extracted with {expected}")
    module = WaveformEncoder(model, loaded, masks, erasers)
    sigs = module.signatures()

    def write(tmp: Path, v: int) -> None:
        tf.saved_model.save(module, str(tmp), signatures=sigs)
        write_warmup(tmp, {k: "wav" if k.endswith("_wav") else "waveform" for k in sigs})
        _write_metadata(tmp, {**meta, "signatures": list(sigs), "version": v, "input": "16 kHz waveform",
                              "speaker_encoder": {"path": str(path), "fingerprint": encoder_fingerprint(enc_meta),
                                                  "arch": enc_meta.get("arch")},
                              "masks": {k: np.asarray(m).astype(int).tolist() for k, m in masks.items()}})

    out = _write_version(Path(export_dir) / (name or f"{meta['run_name']}-waveform"), version, write)
    write_models_config(export_dir)
    return out
