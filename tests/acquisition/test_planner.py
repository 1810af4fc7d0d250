"""The exposure planner against hand-computed Eq. 2 cases, and its refusals."""

from __future__ import annotations

import pytest

from acquisition.planner import (
    BlurOutOfRangeError,
    ExposureOutOfRangeError,
    PlanError,
    PlanRequest,
    PulseWidthError,
    SharpTimingError,
    lightbox_plan,
    plan_exposures,
    sharp_delay,
)
from acquisition.synchronizer import TICKS_PER_S, representable


def test_eq2_by_hand_with_focal_length():
    # d = 10 m, f = 50 mm → l' = 1 / (1/0.05 − 1/10) = 50.2512563 mm.
    # tS = c·n·d / (l'·v) = 4.5e-6 · 6 · 10 / (0.0502512563 · 2) = 2.686500 ms.
    plan = plan_exposures(PlanRequest(object_distance_m=10, speed_mps=2, pixel_pitch_um=4.5, focal_length_mm=50))
    assert plan.image_distance_m == pytest.approx(0.0502512563, rel=1e-9)
    assert plan.short_exposure_s == pytest.approx(2.6865e-3, rel=1e-6)
    assert plan.blur_s_px == pytest.approx(6.0, rel=1e-6)
    # Blur in B = 6/τ: 24 (τ=.25), 48 (τ=.125), 60 (τ=.1) lie in 15–70 px; 48 is nearest the 42.5 px middle.
    assert plan.nd_transmittance == 0.125
    assert plan.long_exposure_s == pytest.approx(2.6865e-3 / 0.125, rel=1e-6)
    assert plan.blur_b_px == pytest.approx(48.0, rel=1e-6)
    assert (plan.pulse_width_b_s, plan.pulse_width_s_s) == (plan.long_exposure_s, plan.short_exposure_s)
    usable = {o.transmittance for o in plan.options if o.problem is None}
    assert usable == {0.25, 0.125, 0.1}


def test_eq2_by_hand_with_image_distance_and_a_target_blur():
    # l' = 51 mm given directly: tS = 4.5e-6 · 4 · 20 / (0.051 · 5) = 1.4117647 ms
    plan = plan_exposures(PlanRequest(object_distance_m=20, speed_mps=5, pixel_pitch_um=4.5, image_distance_mm=51,
                                      sharp_blur_px=4, target_blur_px=64))
    assert plan.short_exposure_s == pytest.approx(1.4117647e-3, rel=1e-6)
    assert plan.nd_transmittance == 0.0625  # 4 / 0.0625 = 64 px
    assert plan.blur_b_px == pytest.approx(64.0, rel=1e-6)


def test_exposures_are_representable_pulse_widths():
    from acquisition.synchronizer import quantise, representable

    plan = plan_exposures(PlanRequest(object_distance_m=7.3, speed_mps=1.7, pixel_pitch_um=3.45, focal_length_mm=35))
    for t in (plan.short_exposure_s, plan.long_exposure_s):
        assert representable(t) and quantise(t) == t


def test_no_filter_in_range_is_refused_with_every_option_listed():
    with pytest.raises(BlurOutOfRangeError) as err:
        plan_exposures(PlanRequest(object_distance_m=10, speed_mps=2, pixel_pitch_um=4.5, focal_length_mm=50,
                                   nd_filters=(1.0, 0.5)))
    assert "τ=1: blur in B 6.0 px outside [15, 70] px" in str(err.value)
    assert "τ=0.5: blur in B 12.0 px" in str(err.value)


def test_exposure_outside_the_camera_range_is_refused():
    with pytest.raises(ExposureOutOfRangeError, match="ExposureTime range"):
        plan_exposures(PlanRequest(object_distance_m=10, speed_mps=1e-6, pixel_pitch_um=4.5, focal_length_mm=50))
    with pytest.raises(ExposureOutOfRangeError, match="tS"):
        plan_exposures(PlanRequest(object_distance_m=10, speed_mps=500, pixel_pitch_um=4.5, focal_length_mm=50,
                                   sharp_blur_px=0.5))


def test_long_exposure_beyond_the_camera_is_a_problem_of_that_filter():
    # tS = 6 / (0.005 · 1116.69) = 1.0746 s: τ = 0.25 → 4.3 s and 0.125 → 8.6 s fit, τ = 0.1 → 10.7 s does not.
    plan = plan_exposures(PlanRequest(object_distance_m=10, speed_mps=0.005, pixel_pitch_um=4.5, focal_length_mm=50,
                                      exposure_range_s=(2e-5, 10.0)))
    problems = {o.transmittance: o.problem for o in plan.options}
    assert plan.nd_transmittance == 0.125 and plan.long_exposure_s <= 10.0
    assert "ExposureTime range" in problems[0.1]


def test_a_width_the_generator_cannot_make_is_refused():
    # tS = 6 / (2.6865e-5 · 1116.69) = 200 s is a valid pulse; tL = 1600 s is beyond the 575's 1000 s.
    with pytest.raises(BlurOutOfRangeError, match="not representable"):
        plan_exposures(PlanRequest(object_distance_m=10, speed_mps=2.6865e-5, pixel_pitch_um=4.5, focal_length_mm=50,
                                   exposure_range_s=(2e-5, 1e5), nd_filters=(0.125,)))
    with pytest.raises(PulseWidthError, match="tS"):
        plan_exposures(PlanRequest(object_distance_m=10, speed_mps=5e-6, pixel_pitch_um=4.5, focal_length_mm=50,
                                   exposure_range_s=(2e-5, 1e5)))


@pytest.mark.parametrize("changes, message", [
    ({"focal_length_mm": 50, "image_distance_mm": 51}, "exactly one"),
    ({}, "exactly one"),
    ({"focal_length_mm": 50, "object_distance_m": 0.04}, "must exceed the focal length"),
    ({"focal_length_mm": 50, "speed_mps": -1}, "speed_mps must be > 0"),
    ({"focal_length_mm": 50, "nd_filters": (0.5, 1.5)}, "(0, 1]"),
])
def test_bad_requests_are_named(changes, message):
    request = {"object_distance_m": 10, "speed_mps": 2, "pixel_pitch_um": 4.5, **changes}
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        plan_exposures(PlanRequest(**request))


# ------------------------------------------------------------------------- sharp timing
EQ2 = {"object_distance_m": 10, "speed_mps": 2, "pixel_pitch_um": 4.5, "focal_length_mm": 50}


def test_centre_delays_camera_s_by_half_the_exposure_difference_on_the_generators_grid():
    plan = plan_exposures(PlanRequest(**EQ2))  # centre is the default
    assert plan.sharp_timing == "centre"
    half = (plan.long_exposure_s - plan.short_exposure_s) / 2
    assert plan.sharp_delay_s == round(half * TICKS_PER_S) / TICKS_PER_S
    assert abs(plan.sharp_delay_s - half) <= 125e-12 and representable(plan.sharp_delay_s, "delay")
    # S's window [delay, delay + tS] is centred in B's [0, tL] (to the generator's 250 ps).
    assert abs(plan.sharp_delay_s + plan.short_exposure_s / 2 - plan.long_exposure_s / 2) <= 125e-12
    # tS = 2.6865 ms, tL = 21.492 ms (τ = 0.125): (tL − tS)/2 = 9.40275 ms, on the grid already.
    assert plan.sharp_delay_s == pytest.approx(9.40275e-3, abs=1e-12)
    assert plan.as_dict()["sharp_delay_s"] == plan.sharp_delay_s


def test_an_odd_number_of_ticks_is_rounded_to_the_grid():
    t_short, t_long = 1000 / TICKS_PER_S, 2001 / TICKS_PER_S  # (tL − tS)/2 = 500.5 ticks
    delay = sharp_delay(t_long, t_short, "centre")
    assert delay * TICKS_PER_S == 500  # half to even, like the instrument
    assert representable(delay, "delay") and delay + t_short <= t_long


def test_start_gives_no_delay():
    plan = plan_exposures(PlanRequest(**EQ2, sharp_timing="start"))
    assert (plan.sharp_timing, plan.sharp_delay_s) == ("start", 0.0)
    centre = plan_exposures(PlanRequest(**EQ2))
    assert (plan.short_exposure_s, plan.long_exposure_s) == (centre.short_exposure_s, centre.long_exposure_s)
    assert lightbox_plan(0.01, 0.1).sharp_delay_s == 0.0
    assert lightbox_plan(0.01, 0.1, "centre").sharp_delay_s == pytest.approx(0.045, abs=1e-12)


def test_an_equal_exposure_centres_with_no_delay():
    assert sharp_delay(0.004, 0.004, "centre") == 0.0


@pytest.mark.parametrize("timing", ["centre", "start"])
def test_a_sharp_exposure_longer_than_the_blurred_one_is_refused(timing):
    with pytest.raises(SharpTimingError) as error:
        sharp_delay(0.002, 0.003, timing)
    assert isinstance(error.value, PlanError)
    assert f"sharp_timing {timing!r} cannot be honoured" in str(error.value)
    assert "tS = 0.003 s is longer than camera B's tL = 0.002 s" in str(error.value)


def test_a_delay_beyond_the_generators_range_is_refused():
    # tL = 2500 s, tS = 1 s: (tL − tS)/2 = 1249.5 s, beyond the 575's 999.99999999975 s delay.
    with pytest.raises(SharpTimingError, match=r"1249\.5 s is beyond the pulse generator's delay range"):
        sharp_delay(2500.0, 1.0, "centre")
    assert sharp_delay(2500.0, 1.0, "start") == 0.0


def test_an_unknown_sharp_timing_is_refused_with_the_allowed_values():
    with pytest.raises(SharpTimingError, match="one of centre, start; got 'middle'"):
        plan_exposures(PlanRequest(**EQ2, sharp_timing="middle"))
    with pytest.raises(SharpTimingError, match="one of centre, start"):
        sharp_delay(0.02, 0.002, "end")
