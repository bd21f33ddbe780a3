from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tfvae.features import FEATURE_SETS, FeatureError, FeatureExtractor, feature_dim, parallel_map

RAVDESS_FILE = Path(__file__).resolve().parents[2] / "shared/data/ravdess/Actor_01/03-01-05-01-01-01-01.flac"


@pytest.fixture(scope="module")
def is10():
    return FeatureExtractor("IS10")


def _speechlike(seconds=1.2, rate=16000):
    from tfvae import synth

    return synth.synthesize(synth.make_voice(3), "angry", 0)[: int(seconds * rate)]


def test_declared_dimensions_match_opensmile():
    for name, (_, dim) in FEATURE_SETS.items():
        if name in ("IS10", "eGeMAPSv02"):
            assert FeatureExtractor(name).dim == dim == feature_dim(name)


@pytest.mark.skipif(not RAVDESS_FILE.exists(), reason="../shared/data/ravdess is not present")
def test_real_recording_gives_finite_is10_vector(is10):
    x, rate = sf.read(RAVDESS_FILE, dtype="float32")
    v = is10(x, rate)
    assert v.shape == (1582,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    assert is10.names[2] == "pcm_loudness_sma_amean" and v[2] > 0


def test_resampling_and_stereo_mixdown(is10):
    x = _speechlike()
    from scipy.signal import resample_poly

    x44 = resample_poly(x, 441, 160).astype(np.float32)
    v16, v44 = is10(x, 16000), is10(x44, 44100)
    stereo = is10(np.stack([x, x], axis=1), 16000)
    np.testing.assert_allclose(stereo, v16, rtol=1e-5, atol=1e-5)
    # resampled audio gives nearly the same loudness mean
    assert v44[2] == pytest.approx(v16[2], rel=0.1)


@pytest.mark.parametrize("signal, reason", [
    (np.zeros(0, np.float32), "empty signal"),
    (np.zeros(32000, np.float32), "silent signal"),
    (np.array([0.1, np.nan] * 8000, np.float32), "NaN or infinite samples"),
])
def test_bad_signals_say_why(is10, signal, reason):
    with pytest.raises(FeatureError, match=reason):
        is10(signal, 16000)


def test_too_short_audio_is_reported(is10):
    with pytest.raises(FeatureError, match="too short"):
        is10(_speechlike()[:400], 16000)


def test_unknown_feature_set():
    with pytest.raises(FeatureError, match="feature set 'mfcc' is unknown"):
        FeatureExtractor("mfcc")


def _maybe_fail(x):
    if x < 0:
        raise FeatureError(f"negative item {x}")
    return x * 2


def test_parallel_map_keeps_order_and_reports_every_failure():
    items = [(f"k{i}", i if i % 7 else -i - 1) for i in range(40)]
    out = parallel_map(_maybe_fail, items, workers=2, progress=False)
    assert [o.key for o in out] == [k for k, _ in items]
    bad = [o for o in out if not o.ok]
    assert [o.key for o in bad] == ["k0", "k7", "k14", "k21", "k28", "k35"]
    assert bad[1].error == "FeatureError: negative item -8"
    assert [o.value for o in out if o.ok][:3] == [2, 4, 6]


def test_opensmile_after_tensorflow_in_one_process():
    """TF and openSMILE export clashing FFT symbols; tfvae loads openSMILE so it still works."""
    import subprocess
    import sys

    code = ("import tensorflow as tf\n"
            "from tfvae import synth\n"
            "from tfvae.features import FeatureExtractor\n"
            "x = synth.synthesize(synth.make_voice(1), 'sad', 0)\n"
            "v = FeatureExtractor('IS10')(x, 16000)\n"
            "print('DIM', v.shape[0], bool((v == v).all()))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DIM 1582 True" in r.stdout


def test_extract_file_reads_audio_or_says_why(tmp_path):
    from tfvae.features import extract_file

    x = _speechlike(seconds=2.0)
    sf.write(tmp_path / "ok.flac", x, 16000)
    out = extract_file(("eGeMAPSv02", str(tmp_path / "ok.flac")))
    assert out["features"].shape == (88,) and out["duration"] == pytest.approx(len(x) / 16000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00garbage" * 20)
    with pytest.raises(FeatureError, match="cannot read audio"):
        extract_file(("eGeMAPSv02", str(tmp_path / "bad.wav")))
    with pytest.raises(FeatureError, match="file not found"):
        extract_file(("eGeMAPSv02", str(tmp_path / "nope.wav")))


def test_an_encoder_feature_set_is_named_in_one_place():
    from tfvae.features import FeatureError, encoder_name, feature_tag, is_encoder
    from tfvae.table1 import feature_label

    assert encoder_name("xvector@saved_models/xvector-ravdess/3") == ("xvector", "xvector-ravdess")
    assert encoder_name("netvlad@/m/vlad/") == ("netvlad", "vlad") and encoder_name("x@3/4") == ("x", "")
    assert is_encoder("a@b") and not is_encoder("IS10") and not is_encoder("@b") and not is_encoder("a@ ")
    assert feature_tag("xvector@saved_models/xvector-ravdess/3") == "xvector-xvector-ravdess"
    assert feature_tag("x@3/4") == "x-encoder" and feature_tag("IS10") == "is10"
    assert feature_label({"feature_set": "xvector@saved_models/xvector-ravdess/3"}) == "xvector (xvector-ravdess)"
    assert feature_label({"feature_set": "x@3/4"}) == "x (3/4)" and feature_label({}) == "?"
    with pytest.raises(FeatureError, match="is not an encoder"):
        encoder_name("IS10")


def test_speed_perturbation_scales_pitch_by_the_factor(tmp_path):
    """A copy at speed f is the same utterance with pitch x f: eGeMAPS' mean F0 (semitones) moves by 12 log2 f."""
    from tfvae.features import SPEED_FACTORS, extract_file, read_audio, speed_perturbed

    sf.write(tmp_path / "ok.flac", _speechlike(seconds=2.0), 16000)
    x, _ = read_audio(str(tmp_path / "ok.flac"))
    out = extract_file(("eGeMAPSv02", str(tmp_path / "ok.flac"), SPEED_FACTORS))
    assert SPEED_FACTORS == (0.9, 1.1)
    assert out["speed_perturbed"].shape == (2, 88) and out["speed_perturbed"].dtype == np.float32
    ex = FeatureExtractor("eGeMAPSv02")
    np.testing.assert_allclose(out["features"], ex(x, 16000), rtol=1e-6)  # the original is unchanged
    f0 = ex.names.index("F0semitoneFrom27.5Hz_sma3nz_amean")
    for f, row in zip(SPEED_FACTORS, out["speed_perturbed"]):
        assert row[f0] - out["features"][f0] == pytest.approx(12 * np.log2(f), abs=0.35)
    assert "speed_perturbed" not in extract_file(("eGeMAPSv02", str(tmp_path / "ok.flac")))
    for bad in (1.0, 0.3, 2.5):
        with pytest.raises(FeatureError, match=f"speed factor {bad}: expected a factor in \\[0.5, 2\\] other than 1"):
            speed_perturbed(ex, x, 16000, (0.9, bad))
