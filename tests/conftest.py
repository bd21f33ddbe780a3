"""Shared fixtures: the small synthetic demo corpus, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RAVDESS = SHARED / "data" / "ravdess"


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir holding tfvae_demo/is10_small (12 speakers, 120 utterances of audio)."""
    import tensorflow_datasets as tfds

    import tfvae_datasets  # noqa: F401

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("tfvae_demo/is10_small", data_dir=data_dir).download_and_prepare()
    return data_dir


@pytest.fixture(scope="session")
def small_corpus(demo_data_dir):
    from tfvae.data import load_corpus

    return load_corpus("tfvae_demo/is10_small", "IS10", data_dir=demo_data_dir)


@pytest.fixture(scope="session")
def tiny_lrvae():
    """``tiny_lrvae(dim, latent_dim)``: a built LR-VAE with one-layer MLPs (3 emotions, 4 speakers), its
    normaliser adapted on seeded data: for serving tests that need a SavedModel, not a trained one."""
    import numpy as np

    from tfvae.model import LRVAE

    def build(dim: int, latent_dim: int) -> LRVAE:
        m = LRVAE(dim, 3, 4, latent_dim=latent_dim, encoder_units=(8,), decoder_units=(8,), head_units=(4,),
                  seed=0)
        m.build()
        m.adapt_normalizer(np.random.default_rng(0).normal(size=(32, dim)).astype(np.float32))
        return m

    return build
