"""The Apache Beam generation path (tfds build --beam_pipeline_options=...) with DirectRunner."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

beam = pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")

from tfvae_datasets.ravdess import ravdess_dataset_builder as ravdess  # noqa: E402

DUMMY = Path(ravdess.__file__).parent / "dummy_data"


def _features(builder):
    out = {}
    for split in ("train", "validation", "test"):
        for e in tfds.as_numpy(builder.as_dataset(split=split)):
            out[e["utterance_id"].decode()] = (split, e["speaker"], int(e["emotion"]), e["features"])
    return out


def test_beam_direct_runner_matches_local_generation(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    local = tfds.builder("ravdess/egemapsv02", data_dir=str(tmp_path / "local"))
    local.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(DUMMY)))
    beamed = tfds.builder("ravdess/egemapsv02", data_dir=str(tmp_path / "beam"))
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=2",
                               "--direct_running_mode=multi_processing"])
    beamed.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(DUMMY), beam_options=options))
    a, b = _features(local), _features(beamed)
    assert sorted(a) == sorted(b) and len(a) == 8
    for uid in a:
        assert a[uid][:3] == b[uid][:3]
        np.testing.assert_allclose(a[uid][3], b[uid][3], rtol=1e-6)
    assert beamed.info.metadata["class_counts"] == local.info.metadata["class_counts"]


def test_beam_audio16k_matches_local_generation(tmp_path):
    """The waveform config on Beam: one load per utterance in the pipeline, same examples."""
    from apache_beam.options.pipeline_options import PipelineOptions

    def waves(builder):
        return {e["utterance_id"].decode(): (e["speaker"], int(e["emotion"]), e["audio"], e["duration"])
                for s in ("train", "validation", "test") for e in tfds.as_numpy(builder.as_dataset(split=s))}

    local = tfds.builder("ravdess/audio16k", data_dir=str(tmp_path / "local"))
    local.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(DUMMY)))
    beamed = tfds.builder("ravdess/audio16k", data_dir=str(tmp_path / "beam"))
    beamed.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(DUMMY), beam_options=PipelineOptions(["--runner=DirectRunner"])))
    a, b = waves(local), waves(beamed)
    assert sorted(a) == sorted(b) and len(a) == 8
    for uid in a:
        assert a[uid][:2] == b[uid][:2] and a[uid][3] == b[uid][3]
        assert a[uid][2].dtype == np.int16 and len(a[uid][2]) > 16000
        np.testing.assert_array_equal(a[uid][2], b[uid][2])
    assert beamed.info.metadata["sample_rate"] == 16000
