"""tfvae.audio (waveform loading for the audio16k configs), feature_kind and parallel_imap."""

import numpy as np
import pytest
import soundfile as sf

from tfvae import synth
from tfvae.audio import check_audio_file, from_int16, load_audio, load_audio_file, resample, to_int16
from tfvae.features import FeatureError, feature_kind, parallel_imap, split_encoder


def _speech(seconds=0.5, rate=16000):
    x = synth.synthesize(synth.make_voice(4), "happy", 1)
    return resample(x, 16000, rate)[: int(round(seconds * rate))]


def test_resample_48k_to_16k_length_and_content(tmp_path):
    x48 = _speech(0.5, 48000)
    assert x48.shape == (24000,)
    sf.write(tmp_path / "a.wav", x48, 48000, subtype="PCM_16")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == (8000,)
    ref = _speech(0.5, 16000)
    # the band-limited content survives the 48 -> 16 kHz round trip
    assert np.corrcoef(ref[200:-200], y[200:-200])[0, 1] > 0.97
    # odd lengths: ceil(n * 16000 / rate) samples
    sf.write(tmp_path / "b.wav", _speech(0.31, 44100)[:13231], 44100)
    assert load_audio(tmp_path / "b.wav").shape == (4801,)  # ceil(13231 * 16000 / 44100)
    out = load_audio_file((str(tmp_path / "a.wav"), 16000))
    assert out["audio"].dtype == np.int16 and out["audio"].shape == (8000,) and out["duration"] == pytest.approx(0.5)
    assert check_audio_file((str(tmp_path / "a.wav"), 16000)) == {"duration": np.float32(0.5), "samples": 8000}
    assert load_audio(tmp_path / "a.wav", rate=8000).shape == (4000,)


def test_stereo_is_mixed_down_by_the_mean(tmp_path):
    x = _speech(0.4)
    sf.write(tmp_path / "st.wav", np.stack([x, 0.5 * x], axis=1), 16000, subtype="FLOAT")
    y = load_audio(tmp_path / "st.wav")
    assert y.shape == x.shape
    np.testing.assert_allclose(y, 0.75 * x, atol=1e-6)


@pytest.mark.parametrize("signal, reason", [
    (np.zeros(0, np.float32), "empty signal (0 samples)"),
    (np.zeros(16000, np.float32), "silent signal (peak amplitude below 0.0001)"),
    (np.full(1600, 5e-5, np.float32), "silent signal"),
    (np.array([0.1, np.nan] * 800, np.float32), "NaN or infinite samples"),
    (np.array([0.1, np.inf] * 800, np.float32), "NaN or infinite samples"),
])
def test_bad_audio_says_why(tmp_path, signal, reason):
    sf.write(tmp_path / "x.wav", signal, 16000, subtype="FLOAT")
    with pytest.raises(FeatureError) as e:
        load_audio(tmp_path / "x.wav")
    assert reason in str(e.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FeatureError, match="file not found"):
        load_audio(tmp_path / "none.wav")
    (tmp_path / "c.wav").write_bytes(b"RIFF not really a wav file at all" * 10)
    with pytest.raises(FeatureError, match="cannot read audio"):
        load_audio(tmp_path / "c.wav")


def test_int16_round_trip_and_clipping():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0, 1 / 32768], np.float32)
    y = to_int16(x)
    assert y.dtype == np.int16
    assert y.tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 1]
    z = from_int16(y)
    assert z.dtype == np.float32 and z[1] == 0.5 and z[4] == -1.0
    w = _speech(0.3)
    assert np.max(np.abs(from_int16(to_int16(w)) - w)) <= 0.5 / 32768 + 1e-7


def test_feature_kind():
    assert feature_kind("IS10") == feature_kind("eGeMAPSv02") == "opensmile"
    assert feature_kind("audio16k") == "audio"
    assert feature_kind("embeddings") == "embeddings"
    assert feature_kind("xvector@/models/xvector") == "encoder"
    assert split_encoder("ecapa@runs/enc@v2/1") == ("ecapa", "runs/enc@v2/1")
    for bad in ("is10", "audio8k", "@/path", "xvector@", "mfcc"):
        with pytest.raises(FeatureError, match="unknown; choose an openSMILE set"):
            feature_kind(bad)
    with pytest.raises(FeatureError, match="not an encoder"):
        split_encoder("IS10")


def _square(x):
    if x == 7:
        raise ValueError("seven is bad")
    return x * x


def test_parallel_imap_in_order_with_failures_and_early_stop():
    items = [(f"k{i}", i) for i in range(40)]
    out = list(parallel_imap(_square, items, workers=2, chunksize=3, ahead=1, progress=False))
    assert [o.key for o in out] == [k for k, _ in items]
    assert [o.value for o in out if o.ok] == [i * i for i in range(40) if i != 7]
    assert [o.error for o in out if not o.ok] == ["ValueError: seven is bad"]
    gen = parallel_imap(_square, items, workers=2, chunksize=2, progress=False)
    assert next(gen).value == 0
    gen.close()  # stops the pool without running the rest
    assert [o.value for o in parallel_imap(_square, items[:3], workers=2, progress=False)] == [0, 1, 4]  # inline
