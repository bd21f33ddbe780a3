"""TFDS builders of tfvae, installed as the ``tfvae_datasets`` package.

``import tfvae_datasets`` registers them so that ``tfds.load("tfvae_demo")`` works from any
project; a built dataset also loads without this package via ``tfds.builder_from_directory``.
"""

from tfvae_datasets.ravdess import ravdess_dataset_builder as _ravdess  # noqa: F401
from tfvae_datasets.tfvae_demo import tfvae_demo_dataset_builder as _demo  # noqa: F401
