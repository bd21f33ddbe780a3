"""The built-in demo corpus builder, tested with TFDS's own builder test case."""

import tempfile

import numpy as np
import tensorflow_datasets as tfds

from tfvae import synth
from tfvae.demo_corpus import plan, render
from tfvae_datasets.tfvae_demo import tfvae_demo_dataset_builder as demo


class TfvaeDemoTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = demo.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["egemapsv02_small"]
    SPLITS = {"train": 80, "validation": 20, "test": 20}
    EXAMPLE_DIR = tempfile.mkdtemp()  # generated in code: no dummy downloads
    SKIP_CHECKSUMS = True


def test_plan_is_speaker_disjoint_and_sex_balanced():
    p = plan(48, 6)
    assert {s: len(v) for s, v in p.items()} == {"train": 960, "validation": 240, "test": 240}
    spk = {s: {u[1] for u in v} for s, v in p.items()}
    assert not (spk["train"] & spk["validation"]) and not (spk["train"] & spk["test"]) \
        and not (spk["validation"] & spk["test"])
    for s in spk.values():  # even index = female, odd = male
        assert sum(i % 2 for i in s) * 2 == len(s)
    ids = [u[0] for v in p.values() for u in v]
    assert len(ids) == len(set(ids))


def test_render_is_deterministic_real_audio_features():
    a = render(("eGeMAPSv02", 0, 5, "happy", 1))
    b = render(("eGeMAPSv02", 0, 5, "happy", 1))
    np.testing.assert_array_equal(a["features"], b["features"])
    assert a["features"].shape == (88,) and np.isfinite(a["features"]).all()
    assert a["speaker"] == "spk05" and 1.5 <= a["duration"] <= 3.0
    assert not np.array_equal(render(("eGeMAPSv02", 0, 5, "happy", 2))["features"], a["features"])


def test_dataset_info_records_feature_names_and_class_counts():
    info = tfds.builder("tfvae_demo/is10", data_dir=tempfile.mkdtemp()).info
    assert len(info.metadata["feature_names"]) == 1582 and info.metadata["synthetic"] is True
    assert info.metadata["class_counts"]["train"] == {e: 192 for e in synth.EMOTIONS}
    assert info.features["emotion"].names == list(synth.EMOTIONS)
