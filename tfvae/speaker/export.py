"""SavedModel export of a speaker encoder (TF Serving layout) and loading it back as a feature extractor.

``<export_dir>/<name>/<version>/`` holds a SavedModel with

- ``serving_default`` (``waveform`` float32 [batch, samples] at 16 kHz, zero-padded;
  ``lengths`` int32 [batch] samples) -> ``embedding`` float32 [batch, E];
- ``embed_wav`` (``wav`` string [batch]: WAV-encoded bytes, 16 kHz, any length) -> ``embedding``.

The graph checks its input and fails with ``InvalidArgument`` naming the reason (and therefore a
400 from TF Serving): lengths outside ``[min_samples, samples]``, non-finite samples, silent
utterances (peak below :data:`tfvae.features.SILENCE_PEAK`), WAV at another sample rate.
``assets.extra/tfvae_speaker_encoder.json`` records the architecture, its config, the embedding
size, the training data and verification EER, and a SHA-256 fingerprint of the weights, which
``--feature_set xvector@<dir>`` datasets record in their metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.features import SILENCE_PEAK
from tfvae.speaker.encoders import SpeakerEncoder
from tfvae.speaker.frontend import SAMPLE_RATE

METADATA_FILE = "assets.extra/tfvae_speaker_encoder.json"
KIND = "tfvae.speaker_encoder"


class SpeakerEncoderError(ValueError):
    """A directory is not a usable tfvae speaker encoder; the message says why."""


def weights_sha256(model) -> str:
    h = hashlib.sha256()
    for v in model.weights:
        h.update(v.path.encode() if hasattr(v, "path") else v.name.encode())
        h.update(np.ascontiguousarray(np.asarray(v.numpy(), np.float32)).tobytes())
    return h.hexdigest()


def check_waveforms(waveform, lengths, min_samples: int):
    """In-graph input checks of a padded waveform batch (raise ``InvalidArgument`` naming the reason)."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    total = tf.shape(waveform)[1]
    valid = tf.sequence_mask(lengths, total)
    checks = [
        tf.debugging.assert_equal(tf.shape(lengths)[0], tf.shape(waveform)[0],
                                  message="lengths must have one entry per waveform"),
        tf.debugging.assert_less_equal(lengths, total, message="a length exceeds the waveform's padded size"),
        tf.debugging.assert_greater_equal(
            lengths, min_samples,
            message=f"audio shorter than the encoder minimum of {min_samples} samples "
                    f"({min_samples / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz)"),
        tf.debugging.assert_equal(tf.reduce_all(tf.math.is_finite(waveform)), True,
                                  message="waveform must be finite (no NaN or Inf)"),
        tf.debugging.assert_greater_equal(
            tf.reduce_max(tf.abs(tf.where(valid, waveform, 0.0)), axis=1), SILENCE_PEAK,
            message=f"silent audio (peak amplitude below {SILENCE_PEAK:g})"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(waveform), tf.identity(lengths)


def decode_wavs(wav):
    """WAV bytes [batch] -> zero-padded mono waveforms [batch, samples] and lengths; 16 kHz is checked."""
    def one(b):
        audio, rate = tf.audio.decode_wav(b)
        tf.debugging.assert_equal(rate, SAMPLE_RATE, message=f"WAV audio must be sampled at {SAMPLE_RATE} Hz")
        return tf.RaggedTensor.from_tensor(tf.reduce_mean(audio, axis=-1)[None])[0]

    ragged = tf.map_fn(one, wav, fn_output_signature=tf.RaggedTensorSpec([None], tf.float32))
    return ragged.to_tensor(), tf.cast(ragged.row_lengths(), tf.int32)


class EncoderModule(tf.Module):
    """The exported module: one ``tf.function`` per signature over the Keras encoder."""

    def __init__(self, encoder: SpeakerEncoder):
        super().__init__(name="tfvae_speaker_encoder")
        self.encoder = encoder
        self.min_samples = int(encoder.min_samples)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform"),
                                  tf.TensorSpec([None], tf.int32, name="lengths")])
    def serving_default(self, waveform, lengths):
        waveform, lengths = check_waveforms(waveform, lengths, self.min_samples)
        return {"embedding": self.encoder({"waveform": waveform, "lengths": lengths}, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="wav")])
    def embed_wav(self, wav):
        waveform, lengths = decode_wavs(wav)
        return self.serving_default(waveform, lengths)


def export_speaker_encoder(encoder: SpeakerEncoder, export_dir: str | Path, name: str, metadata: dict,
                           version: int | None = None, weights_file: str | Path | None = None) -> Path:
    """Write ``<export_dir>/<name>/<version>/`` (next free version by default); returns its path.

    ``weights_file``: the encoder's Keras weights, copied to ``assets.extra/encoder.weights.h5`` so
    that fine-tuning can start from the export (``--init_from``).
    """
    from tfvae.export import _write_version

    module = EncoderModule(encoder)
    meta = {"kind": KIND, "arch": encoder.config.arch, "config": encoder.config.to_dict(),
            "embedding_dim": int(encoder.config.embedding_dim), "sample_rate": SAMPLE_RATE,
            "min_samples": module.min_samples, "weights_sha256": weights_sha256(encoder), **metadata}

    def write(tmp: Path, v: int) -> None:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serving_default,
                                                          "embed_wav": module.embed_wav})
        (tmp / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA_FILE).write_text(json.dumps({**meta, "version": v}, indent=2))
        write_warmup(tmp, {"serving_default": "waveform", "embed_wav": "wav"})
        if weights_file is not None:
            import shutil

            shutil.copyfile(weights_file, tmp / "assets.extra" / "encoder.weights.h5")

    return _write_version(Path(export_dir) / name, version, write)


def warmup_audio(seconds: float = 1.0) -> np.ndarray:
    """A short synthetic utterance (:mod:`tfvae.synth`) for warm-up requests: real speech-like audio that passes
    the input checks, unlike zeros."""
    from tfvae import synth

    x = synth.synthesize(synth.make_voice(0, 0), "neutral", 0, 0)
    n = int(seconds * SAMPLE_RATE)
    return np.tile(x, -(-n // len(x)))[:n].astype(np.float32)


def wav_bytes(x: np.ndarray) -> bytes:
    """16-bit PCM WAV bytes of a 16 kHz waveform (as clients send to the ``*_wav`` signatures)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, np.float32), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def write_warmup(version_dir: Path, signatures: dict[str, str]) -> Path:
    """Write TF Serving's ``assets.extra/tf_serving_warmup_requests`` with one request per signature.

    ``signatures`` maps a signature name to its input kind: ``"waveform"`` (``waveform`` + ``lengths``) or
    ``"wav"`` (WAV bytes). TF Serving and :mod:`tfvae.serve` replay these at load time.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    x = warmup_audio()
    path = Path(version_dir) / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for name, kind in signatures.items():
            req = predict_pb2.PredictRequest()
            req.model_spec.signature_name = name
            if kind == "wav":
                req.inputs["wav"].CopyFrom(tf.make_tensor_proto([wav_bytes(x)]))
            else:
                req.inputs["waveform"].CopyFrom(tf.make_tensor_proto(x[None]))
                req.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([len(x)], np.int32)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            w.write(log.SerializeToString())
    return path


def resolve_encoder_dir(path: str | Path) -> Path:
    """A SavedModel directory, or the newest numeric version under a TF Serving model directory."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SpeakerEncoderError(f"speaker encoder {path}: no such directory")
    if (p / "saved_model.pb").is_file():
        return p
    versions = sorted((int(c.name), c) for c in p.iterdir() if c.name.isdigit() and (c / "saved_model.pb").is_file())
    if not versions:
        raise SpeakerEncoderError(f"speaker encoder {path}: not a SavedModel (no saved_model.pb) and no numeric "
                                  "version directory holding one")
    return versions[-1][1]


def read_metadata(path: str | Path) -> tuple[Path, dict]:
    """``(SavedModel dir, metadata)``; raises :class:`SpeakerEncoderError` when it is not a speaker encoder."""
    d = resolve_encoder_dir(path)
    meta_path = d / METADATA_FILE
    if not meta_path.is_file():
        raise SpeakerEncoderError(f"{d} is a SavedModel but not a tfvae speaker encoder (no {METADATA_FILE}); "
                                  "export one with `python -m tfvae.speaker_encoder train` or `... export`")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise SpeakerEncoderError(f"{meta_path} is not valid JSON: {e}") from e
    if meta.get("kind") != KIND:
        raise SpeakerEncoderError(f"{d} is not a tfvae speaker encoder ({METADATA_FILE} has kind {meta.get('kind')!r})")
    return d, meta


def load_speaker_encoder(path: str | Path):
    """``(loaded SavedModel, metadata)``; the SavedModel's ``serving_default`` embeds padded waveforms."""
    d, meta = read_metadata(path)
    loaded = tf.saved_model.load(str(d))
    if "serving_default" not in loaded.signatures:
        raise SpeakerEncoderError(f"{d} has no serving_default signature")
    return loaded, meta


def encoder_fingerprint(meta: dict) -> str:
    """Short identity of an exported encoder: its weights' SHA-256 (first 12 hex digits)."""
    return str(meta.get("weights_sha256", ""))[:12]
