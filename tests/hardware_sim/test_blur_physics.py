"""Blur lengths obey Eq. 2; S's exposure starts with B's (``start``) or sits at the centre of
B's (``centre``); the true mask matches the swept region."""

from __future__ import annotations

import numpy as np
import pytest

from core.dng import cfa_index_map
from hardware_sim.scene import Scene
from hardware_sim.spec import load_preset
from hardware_sim.twin import RigTwin

from .conftest import NO_CAST, NO_MISALIGNMENT, card_scene, make_spec


def green_row_profile(cfa: np.ndarray, rows: slice, pattern: str = "RGGB") -> np.ndarray:
    """Mean green DN per column over a band of rows (each column has green on every other row)."""
    cfa_map = cfa_index_map(pattern)
    y0 = rows.start - rows.start % 2
    band = cfa[y0 : rows.stop - rows.stop % 2].astype(np.float64)
    profile = np.zeros(cfa.shape[1])
    for dy in (0, 1):
        for dx in (0, 1):
            if cfa_map[dy, dx] == 1:
                profile[dx::2] = band[dy::2, dx::2].mean(axis=0)
    return profile


def rising_ramp_length(profile: np.ndarray, low: float, high: float) -> float:
    """Length (px) of the first ramp from `low` to `high`: 1 / slope of a least-squares line
    through its 15–85 % part (robust to noise, unlike two threshold crossings)."""
    q = (profile - low) / (high - low)
    first_high = int(np.argmax(q > 0.85))
    start = first_high
    while start > 0 and q[start - 1] > 0.15:
        start -= 1
    x = np.arange(start, first_high)
    slope, _ = np.polyfit(x, q[start:first_high], 1)
    return 1.0 / slope


@pytest.mark.parametrize("blur_b, tau", [(20.0, 0.2), (40.0, 0.1), (64.0, 0.0625)])
def test_moving_edge_blur_in_b_and_s_matches_eq2(blur_b, tau):
    spec = make_spec(
        width=480, height=200,
        optics={"pixel_pitch_um": 4.5, "object_distance_m": 10.0, "lens_psf_sigma_px": 0.0},
        objects=[{"asset": "ball", "height_m": 0.05,
                  "trajectory": {"start": [0.35, 0.5], "end": [0.65, 0.5], "speed_mps": 2.0}}],
        exposure={"short_s": None, "sharp_blur_px": blur_b * tau, "nd_transmittance": tau},
        camera_b={"serial": "B", **NO_CAST}, camera_s={"serial": "S", **NO_CAST},
        misalignment=NO_MISALIGNMENT, trigger_jitter_frac=0.0,
    )
    twin = RigTwin(spec, seed=5, scene_factory=card_scene(size=(48, 100)))  # wider than any blur
    shot = twin.pair(0, 1)
    expected_b = spec.blur_px(spec.long_exposure_s)
    expected_s = spec.blur_px(spec.short_exposure_s)
    assert expected_b == pytest.approx(blur_b)
    rows = slice(90, 110)  # inside the card's 48-px height around y = 99.5
    for role, expected in (("B", expected_b), ("S", expected_s)):
        profile = green_row_profile(shot.frames[role].cfa, rows)
        low = np.median(profile[:60])
        high = np.median(np.sort(profile)[-8:])  # the card's plateau (the card outlasts the blur)
        measured = rising_ramp_length(profile, low, high)
        # Ramp includes the one-texel anti-aliased card edge (≈ 0.6 px in 10–90 % terms).
        assert measured == pytest.approx(expected, abs=1.0), f"{role}: {measured:.2f} px vs Eq. 2 {expected:.2f} px"
    assert expected_s <= 6.0


def sliding_card_spec(sharp_timing: str):
    return make_spec(
        width=480, height=200,
        optics={"pixel_pitch_um": 4.5, "object_distance_m": 10.0, "lens_psf_sigma_px": 0.0},
        objects=[{"asset": "ball", "height_m": 0.05,
                  "trajectory": {"start": [0.35, 0.5], "end": [0.65, 0.5], "speed_mps": 2.0}}],
        exposure={"short_s": None, "sharp_blur_px": 4.0, "nd_transmittance": 0.1, "sharp_timing": sharp_timing},
        camera_b={"serial": "B", **NO_CAST}, camera_s={"serial": "S", **NO_CAST},
        misalignment=NO_MISALIGNMENT, trigger_jitter_frac=0.0,
    )


def coverage_centroid(image: np.ndarray, background: float = 0.2, card: float = 0.8) -> tuple[float, float]:
    """(x, y) centroid of the card's time-averaged coverage in a noise-free linear image."""
    coverage = np.clip((image[..., 1] - background) / (card - background), 0.0, 1.0)
    ys, xs = np.indices(coverage.shape)
    return float((xs * coverage).sum() / coverage.sum()), float((ys * coverage).sum() / coverage.sum())


def mask_centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def test_exposures_start_at_the_trigger_together_with_sharp_timing_start():
    """``sharp_timing: start`` (the paper's timing): the sharp image is the first tS of the
    blurred window: the card's trailing edge (which starts moving at the trigger) sits at the
    same place in B and S."""
    spec = sliding_card_spec("start")
    twin = RigTwin(spec, seed=1, scene_factory=card_scene(size=(48, 100)))
    assert twin.sharp_delay_s == 0.0
    shot = twin.pair(0, 1)
    covered_b = np.nonzero(shot.blurred_linear[100, :, 1] > 0.2 + 1e-4)[0]
    covered_s = np.nonzero(shot.sharp_linear[100, :, 1] > 0.2 + 1e-4)[0]
    # Trailing edge: where the card was at the trigger instant, identical in both cameras.
    assert abs(int(covered_b[0]) - int(covered_s[0])) <= 1
    # Leading edge: B's window runs on for tL − tS after S's closes.
    extra = spec.blur_px(spec.long_exposure_s) - spec.blur_px(spec.short_exposure_s)
    assert int(covered_b[-1]) - int(covered_s[-1]) == pytest.approx(extra, abs=1.0)


def test_sharp_timing_centre_puts_the_sharp_image_at_the_middle_of_the_blur_trail():
    """``centre`` (the default): S's exposure is [(tL − tS)/2, (tL + tS)/2] of B's window, so
    the card in the sharp image stands where it was at the middle of B's exposure: at the
    centroid of the blurred image's true mask, 18 px (half of 40 − 4 px) from either end."""
    spec = sliding_card_spec("centre")
    assert make_spec().exposure.sharp_timing == "centre"  # the default
    twin = RigTwin(spec, seed=1, scene_factory=card_scene(size=(48, 100)))
    assert twin.sharp_delay_s == pytest.approx((spec.long_exposure_s - spec.short_exposure_s) / 2)
    shot = twin.pair(0, 1)
    assert shot.info["sharp_timing"] == "centre" and shot.info["sharp_delay_s"] == twin.sharp_delay_s
    x_mid, y_mid, _ = twin.scene.objects[0].pose(shot.trigger_time_s + spec.long_exposure_s / 2)
    x_s, y_s = coverage_centroid(shot.sharp_linear)
    assert (x_s, y_s) == (pytest.approx(float(x_mid), abs=0.25), pytest.approx(float(y_mid), abs=0.25))
    x_b, y_b = mask_centroid(shot.mask)
    assert (x_s, y_s) == (pytest.approx(x_b, abs=1.0), pytest.approx(y_b, abs=1.0))
    x_blur, _ = coverage_centroid(shot.blurred_linear)
    assert x_s == pytest.approx(x_blur, abs=0.25)
    # Both ends of the trail lie (tL − tS)/2 of motion beyond the sharp card's edges.
    covered_b = np.nonzero(shot.blurred_linear[100, :, 1] > 0.2 + 1e-4)[0]
    covered_s = np.nonzero(shot.sharp_linear[100, :, 1] > 0.2 + 1e-4)[0]
    half_extra = (spec.blur_px(spec.long_exposure_s) - spec.blur_px(spec.short_exposure_s)) / 2
    assert half_extra == pytest.approx(18.0)
    assert int(covered_s[0]) - int(covered_b[0]) == pytest.approx(half_extra, abs=1.0)
    assert int(covered_b[-1]) - int(covered_s[-1]) == pytest.approx(half_extra, abs=1.0)


def test_sharp_timing_start_puts_the_sharp_image_at_the_start_of_the_trail():
    spec = sliding_card_spec("start")
    twin = RigTwin(spec, seed=1, scene_factory=card_scene(size=(48, 100)))
    shot = twin.pair(0, 1)
    x_start, _, _ = twin.scene.objects[0].pose(shot.trigger_time_s + spec.short_exposure_s / 2)
    x_mid, _, _ = twin.scene.objects[0].pose(shot.trigger_time_s + spec.long_exposure_s / 2)
    x_s, _ = coverage_centroid(shot.sharp_linear)
    assert x_s == pytest.approx(float(x_start), abs=0.25)
    assert float(x_mid) - x_s == pytest.approx(18.0, abs=0.5)  # the trail's start, not its middle


@pytest.mark.parametrize("preset", ["car", "pedestrian", "ball"])
def test_centred_sharp_image_of_a_preset_is_the_pose_at_the_middle_of_bs_window(preset):
    """On the presets' real cut-outs: the centroid of what moved in the sharp image (against the
    static background) equals that of the object frozen at the middle of B's window; with
    ``start`` it is (tL − tS)/2 of motion away."""
    from hardware_sim.render import crop_frame, integrate
    from hardware_sim.spec import with_sharp_timing

    spec = make_spec(preset, width=480, height=320)
    results = {}
    for timing in ("centre", "start"):
        twin = RigTwin(with_sharp_timing(spec, timing), seed=3)
        shot = twin.pair(0, 1)
        static = crop_frame(twin.scene, twin._lens(twin.scene.static))
        moved = np.abs(shot.sharp_linear - static).sum(axis=2) > 0.02
        results[timing] = mask_centroid(moved)
    t_mid = shot.trigger_time_s + spec.long_exposure_s / 2
    frozen = integrate(twin.scene.still(t_mid), 0.0, 1e-6)
    truth = crop_frame(twin.scene, frozen.max_alpha) >= 0.5
    x_mid, y_mid = mask_centroid(truth)
    x_c, y_c = results["centre"]
    assert (x_c, y_c) == (pytest.approx(x_mid, abs=1.0), pytest.approx(y_mid, abs=1.0))
    shift = np.hypot(results["start"][0] - x_mid, results["start"][1] - y_mid)
    half_trail = spec.blur_px((spec.long_exposure_s - spec.short_exposure_s) / 2)
    assert shift == pytest.approx(half_trail, rel=0.15, abs=1.0)


def test_true_mask_is_the_swept_region():
    spec = make_spec(
        width=480, height=200,
        optics={"pixel_pitch_um": 4.5, "object_distance_m": 10.0, "lens_psf_sigma_px": 0.0},
        objects=[{"asset": "ball", "height_m": 0.05,
                  "trajectory": {"start": [0.35, 0.5], "end": [0.65, 0.5], "speed_mps": 2.0}}],
        exposure={"short_s": None, "sharp_blur_px": 4.0, "nd_transmittance": 0.1},
        misalignment=NO_MISALIGNMENT, trigger_jitter_frac=0.0,
    )
    shot = RigTwin(spec, seed=1, scene_factory=card_scene(size=(48, 32))).pair(0, 1)
    width = shot.mask[100].sum()
    # card width (32 px) + Eq. 2 blur (40 px), to a pixel
    assert width == pytest.approx(32 + spec.blur_px(spec.long_exposure_s), abs=1.0)
    assert shot.mask[:, :].any(axis=1).sum() == pytest.approx(48, abs=1)
    # Outside the mask the blurred and sharp truths are the same static background.
    assert np.abs(shot.blurred_linear[~shot.mask] - shot.sharp_linear[~shot.mask]).max() < 0.2 * 0.6 + 1e-6
    assert shot.blurred_area_fraction == pytest.approx(shot.mask.mean())


@pytest.mark.parametrize("preset", ["pedestrian", "car", "ball"])
def test_presets_blur_in_the_papers_range_at_full_resolution(preset):
    spec = load_preset(preset)
    assert (spec.sensor.width, spec.sensor.height) == (2152, 1436)
    blur_b = spec.blur_px(spec.long_exposure_s)
    assert 15.0 <= blur_b <= 70.0
    assert spec.blur_px(spec.short_exposure_s) <= 6.0
    # spin adds speed at the rim: the fastest point of any object still blurs within 70 px
    scene = Scene.from_spec(spec, margin=0)
    fastest = max(o.max_pixel_speed() for o in scene.objects)
    assert fastest * spec.long_exposure_s <= 70.0 + 1e-6
