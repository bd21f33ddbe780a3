import math

import keras
import numpy as np
import pytest

from tfvae.schedules import (PROFILE_FAMILIES, LambdaSchedule, attribute_keep_rates, band_keep_rates,
                             keep_rates)

FAMILIES = ["linear", "exponential", "sigmoid", "cosine"]


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


def _reference_keep_rates(n, schedule, side, p_min, p_max, steepness=6.0):
    """The two-sided keep_rates as it stood before band profiles (frozen copy, float64)."""
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    k = float(steepness)
    if schedule == "linear":
        d = 1.0 - t
    elif schedule == "exponential":
        d = (np.exp(-k * t) - math.exp(-k)) / (1.0 - math.exp(-k))
    elif schedule == "sigmoid":
        s = 1.0 / (1.0 + np.exp(k * (t - 0.5)))
        lo, hi = 1.0 / (1.0 + math.exp(k * 0.5)), 1.0 / (1.0 + math.exp(-k * 0.5))
        d = (s - lo) / (hi - lo)
    else:
        d = 0.5 * (1.0 + np.cos(np.pi * t))
    p = p_min + (p_max - p_min) * np.clip(d, 0.0, 1.0)
    return p[::-1] if side == "identity" else p


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("p_min,p_max", [(0.0, 1.0), (0.1, 0.9), (0.25, 0.25), (0.0, 0.5)])
def test_two_bands_reproduce_two_sided_keep_rates(family, n, p_min, p_max):
    for position, side in enumerate(("emotion", "identity")):
        expect = _reference_keep_rates(n, family, side, p_min, p_max)
        band = band_keep_rates(n, family, position, 2, p_min, p_max)
        assert band.dtype == np.float32 and band.shape == (n,)
        np.testing.assert_allclose(band, expect, atol=1e-6, rtol=0)
        np.testing.assert_allclose(keep_rates(n, family, side, p_min, p_max), expect, atol=1e-6, rtol=0)
    for k in (2.0, 11.0):
        np.testing.assert_allclose(band_keep_rates(n, family, 0, 2, p_min, p_max, steepness=k),
                                   _reference_keep_rates(n, family, "emotion", p_min, p_max, k), atol=1e-6, rtol=0)


def test_two_band_values_written_out():
    # cosine, n=5, p in [0.1, 0.9]: 0.1 + 0.8 * 0.5 * (1 + cos(pi t)), t = 0, .25, .5, .75, 1
    cos = [0.9, 0.1 + 0.4 * (1 + math.sqrt(0.5)), 0.5, 0.1 + 0.4 * (1 - math.sqrt(0.5)), 0.1]
    np.testing.assert_allclose(band_keep_rates(5, "cosine", 0, 2, 0.1, 0.9), cos, atol=1e-6)
    np.testing.assert_allclose(band_keep_rates(5, "cosine", 1, 2, 0.1, 0.9), cos[::-1], atol=1e-6)
    np.testing.assert_allclose(band_keep_rates(5, "cosine", 0, 2, 0.1, 0.9),
                               [0.9, 0.7828427, 0.5, 0.2171573, 0.1], atol=1e-6)
    # exponential, n=3, k=6: middle node (e^-3 - e^-6) / (1 - e^-6)
    np.testing.assert_allclose(band_keep_rates(3, "exponential", 0, 2),
                               [1.0, (math.exp(-3) - math.exp(-6)) / (1 - math.exp(-6)), 0.0], atol=1e-6)
    np.testing.assert_allclose(band_keep_rates(3, "exponential", 0, 2), [1.0, 0.0474259, 0.0], atol=1e-6)
    np.testing.assert_allclose(band_keep_rates(5, "linear", 1, 2), [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-7)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [9, 33, 65])
def test_middle_band_peaks_at_centre_and_is_symmetric(family, n):
    p = band_keep_rates(n, family, 1, 3, p_min=0.1, p_max=0.9)
    mid = n // 2
    assert p[mid] == pytest.approx(0.9, abs=1e-6) and p.max() == p[mid]
    assert p[0] == pytest.approx(0.1, abs=1e-6) and p[-1] == pytest.approx(0.1, abs=1e-6)
    np.testing.assert_allclose(p, p[::-1], atol=1e-6)
    assert np.all(np.diff(p[: mid + 1]) >= -1e-7), "non-decreasing up to the centre"
    assert np.all(np.diff(p[mid:]) <= 1e-7), "non-increasing after the centre"
    assert p[mid - 1] < p[mid] and p[mid + 1] < p[mid]


@pytest.mark.parametrize("family", FAMILIES)
def test_end_bands_reach_floor_at_the_neighbouring_centre(family):
    n, mid = 9, 4
    emo = band_keep_rates(n, family, 0, 3, p_min=0.2, p_max=0.8)
    idn = band_keep_rates(n, family, 2, 3, p_min=0.2, p_max=0.8)
    assert emo[0] == pytest.approx(0.8, abs=1e-6) and np.all(np.diff(emo) <= 1e-7)
    assert emo[mid - 1] > 0.2 + 1e-4
    np.testing.assert_allclose(emo[mid:], 0.2, atol=1e-6)
    np.testing.assert_allclose(idn, emo[::-1], atol=1e-6)
    np.testing.assert_allclose(idn[: mid + 1], 0.2, atol=1e-6)
    wide = band_keep_rates(n, family, 0, 3, p_min=0.2, p_max=0.8, width=2.0)
    assert wide.sum() > emo.sum() and np.all(wide >= emo - 1e-7)
    assert wide[mid + 1] > 0.2 + 1e-4, "width=2 reaches past the neighbouring centre"
    mid_wide = band_keep_rates(n, family, 1, 3, p_min=0.2, p_max=0.8, width=2.0)
    assert mid_wide.sum() > band_keep_rates(n, family, 1, 3, p_min=0.2, p_max=0.8).sum()


def test_linear_band_values_for_three_attributes():
    p = attribute_keep_rates(9, 3, "linear")
    assert p.shape == (3, 9) and p.dtype == np.float32
    np.testing.assert_allclose(p[0], [1, .75, .5, .25, 0, 0, 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(p[1], [0, .25, .5, .75, 1, .75, .5, .25, 0], atol=1e-7)
    np.testing.assert_allclose(p[2], [0, 0, 0, 0, 0, .25, .5, .75, 1], atol=1e-7)
    np.testing.assert_allclose(band_keep_rates(9, "linear", 0, 3, width=2.0),
                               [1, .875, .75, .625, .5, .375, .25, .125, 0], atol=1e-7)


def test_custom_centres_place_the_bands():
    # centres 0, 0.25, 1 on n=9 (t = i/8): the middle band peaks on node 2, falls to 0 on node 0
    # (gap 0.25 before) and on node 8 (gap 0.75 after).
    p = band_keep_rates(9, "linear", 1, 3, centres=(0.0, 0.25, 1.0))
    np.testing.assert_allclose(p, [0, 0.5, 1, 1 - 1 / 6, 1 - 2 / 6, 0.5, 1 / 3, 1 / 6, 0], atol=1e-6)
    # an end attribute whose centre is not at the end uses its one neighbour's gap beyond it
    q = band_keep_rates(5, "linear", 0, 2, centres=(0.25, 0.75))
    np.testing.assert_allclose(q, [0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(attribute_keep_rates(9, 3, "cosine", centres=[0.0, 0.5, 1.0]),
                               attribute_keep_rates(9, 3, "cosine"), atol=0)


@pytest.mark.parametrize("centres", [(0.0, 0.5, 0.5), (0.0, 0.7, 0.4), (0.0, 0.5, 1.2), (-0.1, 0.5, 1.0),
                                     (0.0, 1.0), (0.0, 0.3, 0.6, 1.0), (0.0, float("nan"), 1.0)])
def test_centres_must_not_overlap(centres):
    with pytest.raises(ValueError, match="overlapping bands"):
        band_keep_rates(16, "linear", 0, 3, centres=centres)
    with pytest.raises(ValueError, match="overlapping bands"):
        attribute_keep_rates(16, 3, "linear", centres=centres)


def test_band_keep_rates_reject_bad_arguments():
    with pytest.raises(ValueError, match="n >= 1"):
        band_keep_rates(0)
    with pytest.raises(ValueError, match="count >= 1"):
        band_keep_rates(8, count=0)
    for position in (-1, 3):
        with pytest.raises(ValueError, match="position"):
            band_keep_rates(8, position=position, count=3)
    with pytest.raises(ValueError, match="p_min"):
        band_keep_rates(8, p_min=0.6, p_max=0.5)
    with pytest.raises(ValueError, match="p_min"):
        band_keep_rates(8, p_min=-0.1)
    with pytest.raises(ValueError, match="p_min"):
        band_keep_rates(8, p_max=1.5)
    for width in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="width"):
            band_keep_rates(8, count=3, width=width)
    with pytest.raises(ValueError, match="keep-rate schedule 'quadratic' is unknown"):
        band_keep_rates(8, "quadratic", count=3)
    with pytest.raises(ValueError, match="unknown"):
        band_keep_rates(8, "quadratic", count=1)
    with pytest.raises(ValueError, match="steepness"):
        band_keep_rates(8, "exponential", steepness=0.0)
    with pytest.raises(ValueError, match="count >= 1"):
        attribute_keep_rates(8, 0)


def test_single_attribute_or_single_node_keeps_everything_at_p_max():
    np.testing.assert_array_equal(band_keep_rates(7, "sigmoid", 0, 1, 0.2, 0.7), np.full(7, 0.7, np.float32))
    np.testing.assert_array_equal(attribute_keep_rates(1, 3, "linear", 0.2, 0.7), np.full((3, 1), 0.7, np.float32))


@pytest.mark.parametrize("n", [2, 7, 64, 65])
def test_mean_keep_rates(n):
    # K=2 linear: a straight line from 1 to 0, mean exactly 1/2; sigmoid and cosine are point-symmetric too.
    for family in ("linear", "sigmoid", "cosine"):
        for position in (0, 1):
            assert float(np.mean(band_keep_rates(n, family, position, 2), dtype=np.float64)) == \
                pytest.approx(0.5, abs=1e-6)
    assert float(np.mean(keep_rates(64, "linear"), dtype=np.float64)) == pytest.approx(0.5, abs=1e-7)
    # K=3 linear middle band: a hat of area 1/2 sampled on n nodes; mean (n-1)/(2n) for odd n,
    # (n-2)/(2(n-1)) for even n, i.e. ~0.5 for large n.
    expect = (n - 1) / (2 * n) if n % 2 else (n - 2) / (2 * (n - 1))
    mid = band_keep_rates(n, "linear", 1, 3)
    assert float(np.mean(mid, dtype=np.float64)) == pytest.approx(expect, abs=1e-6)
    # exponential is convex: it keeps less than the line on average
    assert np.mean(band_keep_rates(n, "exponential", 0, 2)) < 0.5 or n == 2


@pytest.mark.parametrize("family", ["linear", "sigmoid", "cosine"])
@pytest.mark.parametrize("n", [2, 9, 64, 65])
@pytest.mark.parametrize("count", [2, 3, 5])
def test_band_profiles_partition_unity(family, n, count):
    # width=1, p in [0, 1]: between centres c_k and c_k+1 only bands k and k+1 are non-zero, with
    # distances d and 1-d, and f(d) + f(1-d) = 1 for these families.
    p = attribute_keep_rates(n, count, family)
    assert p.shape == (count, n)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-6)


def test_exponential_bands_do_not_partition_unity():
    assert np.min(attribute_keep_rates(9, 3, "exponential").sum(axis=0)) < 0.9


def test_profile_families_documented():
    import tfvae.schedules as schedules

    assert PROFILE_FAMILIES == ("linear", "exponential", "sigmoid", "cosine")
    doc = schedules.__doc__
    assert "PROFILE_FAMILIES" in doc and "eq. 2" in doc
    for word in (*PROFILE_FAMILIES, "position", "count", "width", "centres", "p_min", "p_max", "steepness"):
        assert word in doc, word


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


def test_paper_profiles_are_bit_identical_to_the_two_sided_formula():
    """The two-attribute profiles are exactly the paper model's: the emotion side from the formula, the
    identity side its mirror image (equal bits, not just close values)."""
    for schedule in ("linear", "exponential", "sigmoid", "cosine"):
        for n in (7, 64, 128):
            emo = band_keep_rates(n, schedule, 0, 2)
            ident = band_keep_rates(n, schedule, 1, 2)
            assert np.array_equal(ident, emo[::-1])
            three = attribute_keep_rates(n, 3, schedule)
            assert np.array_equal(three[2], three[0][::-1]) and np.array_equal(three[1], three[1][::-1])
