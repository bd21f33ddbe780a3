"""TFDS builders of tfvae, installed as the ``tfvae_datasets`` package.

``import tfvae_datasets`` registers them so that ``tfds.load("tfvae_demo")`` works from any
project; a built dataset also loads without this package via ``tfds.builder_from_directory``.
"""

from tfvae_datasets.msp_podcast import msp_podcast_dataset_builder as _msp  # noqa: F401
from tfvae_datasets.ravdess import ravdess_dataset_builder as _ravdess  # noqa: F401
from tfvae_datasets.tfvae_demo import tfvae_demo_dataset_builder as _demo  # noqa: F401
from tfvae_datasets.audio_manifest import audio_manifest_dataset_builder as _manifest  # noqa: F401
from tfvae_datasets.msp_standin import msp_standin_dataset_builder as _standin  # noqa: F401
