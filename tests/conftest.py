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
