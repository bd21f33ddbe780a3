import math

import keras
import numpy as np
import pytest

from tfvae.schedules import LambdaSchedule, keep_rates


@pytest.mark.parametrize("family", ["linear", "exponential", "sigmoid", "cosine"])
def test_keep_rates_monotone_with_exact_end_points(family):
    p = keep_rates(64, family, "emotion", p_min=0.1, p_max=0.9)
    assert p.shape == (64,) and p.dtype == np.float32
    assert np.all(np.diff(p) <= 1e-7), "emotion side must keep the top most"
    assert p[0] == pytest.approx(0.9) and p[-1] == pytest.approx(0.1)
    q = keep_rates(64, family, "identity", p_min=0.1, p_max=0.9)
    np.testing.assert_array_equal(q, p[::-1])


def test_keep_rate_families_differ_in_shape():
    lin = keep_rates(11, "linear")
    np.testing.assert_allclose(lin, np.linspace(1, 0, 11), atol=1e-7)
    exp = keep_rates(11, "exponential")
    assert exp[5] < lin[5], "exponential decay is convex: below the line in the middle"
    sig = keep_rates(11, "sigmoid")
    assert sig[5] == pytest.approx(0.5, abs=1e-6) and sig[1] > lin[1] and sig[9] < lin[9]
    cos = keep_rates(11, "cosine")
    assert cos[5] == pytest.approx(0.5, abs=1e-6)


def test_keep_rates_reject_bad_arguments():
    with pytest.raises(ValueError, match="unknown"):
        keep_rates(8, "quadratic")
    with pytest.raises(ValueError, match="side"):
        keep_rates(8, "linear", side="speaker")
    with pytest.raises(ValueError, match="p_min"):
        keep_rates(8, "linear", p_min=0.6, p_max=0.5)


def test_dann_lambda_ramp_values():
    s = LambdaSchedule("dann", max_lambda=0.5, total_steps=100, gamma=10.0)
    for step in (0, 25, 50, 100, 400):
        p = min(step / 100, 1.0)
        expect = 0.5 * (2 / (1 + math.exp(-10 * p)) - 1)
        assert float(s(step)) == pytest.approx(expect, rel=1e-5, abs=1e-7)
    assert float(LambdaSchedule("constant", 0.3, 10)(0)) == pytest.approx(0.3)
    assert float(LambdaSchedule("linear", 2.0, 10)(5)) == pytest.approx(1.0)


def test_lambda_schedule_serializes():
    s = LambdaSchedule("linear", 0.7, 33, 5.0)
    t = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert t.get_config() == s.get_config()
    with pytest.raises(ValueError, match="unknown"):
        LambdaSchedule("cosine")
