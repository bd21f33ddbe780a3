"""SavedModel export of the encoder with masking signatures, in TF Serving's versioned layout.

``<export_dir>/<model-name>/<version>/`` holds a SavedModel whose signatures take raw
feature vectors (``features``: float32 [batch, D]; standardisation is inside the graph):

- ``serving_default`` -> ``latent``: float32 [batch, N], the posterior mean (full latent);
- ``identity_free`` -> ``latent``: [batch, N], nodes below the identity-free cut set to exactly 0
  (the representation for privacy-preserving SER);
- ``emotion_free`` -> ``latent``: [batch, N], nodes above the emotion-free cut set to exactly 0
  (for privacy-preserving SV).

For ``dnn`` (no latent) ``serving_default`` returns ``emotion_probabilities`` and
``speaker_embedding``. The mask cuts, emotion names and feature set are recorded in
``assets.extra/tfvae.json`` beside the SavedModel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

METADATA_FILE = "assets.extra/tfvae.json"


def next_version(model_root: str | Path) -> int:
    """One more than the largest numeric version directory under ``model_root`` (1 if none)."""
    root = Path(model_root)
    versions = [int(p.name) for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)] \
        if root.exists() else []
    return max(versions, default=0) + 1


def _masked_encoder(model, keep):
    def masked(features):
        z = model.encode(features)
        return {"latent": tf.where(keep, z, tf.zeros_like(z))}  # masked nodes are exactly +0.0

    return masked


def export_encoder(model, export_dir: str | Path, name: str, masks: dict[str, np.ndarray],
                   metadata: dict, version: int | None = None) -> Path:
    """Write ``model`` as ``<export_dir>/<name>/<version>/`` and return that path.

    ``masks`` maps a signature name (``identity_free``, ``emotion_free``) to a 0/1 keep vector.
    """
    root = Path(export_dir) / name
    version = next_version(root) if version is None else int(version)
    path = root / str(version)
    if path.exists():
        raise FileExistsError(f"{path} exists; TF Serving versions are immutable, choose another version")
    spec = [tf.TensorSpec([None, model.input_dim], tf.float32, name="features")]
    archive = keras.export.ExportArchive()
    archive.track(model)
    if model.parts["vae"]:
        archive.add_endpoint("serving_default", lambda features: {"latent": model.encode(features)}, spec)
        for sig, mask in masks.items():
            keep = tf.constant(np.asarray(mask).reshape(1, -1) > 0)
            if keep.shape[1] != model.latent_dim:
                raise ValueError(f"mask {sig!r} has {keep.shape[1]} entries, the latent has {model.latent_dim}")
            archive.add_endpoint(sig, _masked_encoder(model, keep), spec)
    else:
        def heads(features):
            out = model(features, training=False)
            return {k: out[k] for k in ("emotion_probabilities", "speaker_embedding") if k in out}

        archive.add_endpoint("serving_default", heads, spec)
    archive.write_out(str(path), verbose=False)
    meta_path = path / METADATA_FILE
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**metadata, "signatures": ["serving_default", *masks], "version": version,
            "masks": {k: np.asarray(v).astype(int).tolist() for k, v in masks.items()}}
    meta_path.write_text(json.dumps(meta, indent=2))
    return path
