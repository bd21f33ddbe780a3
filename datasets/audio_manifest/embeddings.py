"""Reading bring-your-own embeddings for ``audio_manifest`` (``feature_set="embeddings"``): ``.npy`` files
and Kaldi ``xvector.scp`` / ``.ark`` tables (read with ``kaldiio``), each vector checked."""

from __future__ import annotations

import os

import numpy as np

from tfvae.features import FeatureError


class ManifestError(ValueError):
    """The manifest (or the manifest config) cannot be used at all; the message says why."""


def check_vector(v, dim: int | None) -> np.ndarray:
    """A loaded embedding -> float32 ``(dim,)``, or :class:`FeatureError` saying what is wrong."""
    v = np.asarray(v)
    if v.dtype.kind not in "fiu":
        raise FeatureError(f"embedding has dtype {v.dtype}, expected real numbers")
    if v.ndim != 1:
        raise FeatureError(f"embedding is not a 1-D vector: shape {v.shape}")
    if dim is not None and v.shape[0] != dim:
        raise FeatureError(f"wrong embedding dimension: expected {dim}, got {v.shape[0]}")
    v = v.astype(np.float32)
    bad = int(np.sum(~np.isfinite(v)))
    if bad:
        raise FeatureError(f"embedding has {bad} NaN or infinite value(s)")
    return v


def read_npy(path: str, mmap: bool = False) -> np.ndarray:
    """The array of a ``.npy`` file (no pickles), or :class:`FeatureError`."""
    if not os.path.isfile(path):
        raise FeatureError(f"embedding file not found: {path}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - corrupt, not .npy, pickled objects ...
        raise FeatureError(f"cannot read .npy embedding ({type(e).__name__}: {e})") from None


class KaldiTable:
    """Vectors of a Kaldi ``.scp`` (read lazily with ``kaldiio.load_scp``) or ``.ark``
    (``kaldiio.load_ark``, read whole), by utterance ID."""

    def __init__(self, path: str):
        try:
            import kaldiio
        except ImportError:
            raise ManifestError("reading Kaldi embeddings needs kaldiio: pip install 'kaldiio>=2.18'") from None
        self.path = path
        self.kind = "kaldi scp" if path.endswith(".scp") else "kaldi ark"
        try:
            if self.kind == "kaldi scp":
                self.table = kaldiio.load_scp(path)
            else:
                self.table = dict(kaldiio.load_ark(path))
            self.keys = set(self.table.keys())
        except Exception as e:  # noqa: BLE001 - malformed table
            raise ManifestError(f"cannot read the Kaldi {self.kind.split()[1]} {path} ({type(e).__name__}: {e})") \
                from None

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def get(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise FeatureError(f"missing key {key!r} in {self.path}")
        try:
            return np.asarray(self.table[key])
        except Exception as e:  # noqa: BLE001 - missing/corrupt ark behind the scp
            raise FeatureError(f"cannot read embedding {key!r} from {self.path} ({type(e).__name__}: {e})") from None
