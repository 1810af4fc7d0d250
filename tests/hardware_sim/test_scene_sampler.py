"""Random twin scenes: deterministic per seed, valid, spread over every asset and background,
within their stated ranges, and rendered by the twin with the blur the spec promises."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hardware_sim.assets import BACKGROUND_NAMES, CUTOUT_NAMES, cutout
from hardware_sim.scene_sampler import DEFAULT_MOVERS, MOVING_ASSETS, SPINNING_ASSETS, random_scene
from hardware_sim.spec import with_sensor_size
from hardware_sim.twin import RigTwin

EXCLUDE = ("pedestrian",)


def test_same_seed_same_scene_other_seed_other_scene():
    assert random_scene(7, EXCLUDE) == random_scene(7, EXCLUDE)
    assert random_scene(7, EXCLUDE) != random_scene(8, EXCLUDE)
    assert random_scene(7, EXCLUDE).name == "random-7"


def test_consecutive_seeds_cover_every_object_and_background():
    movers = [a for a in DEFAULT_MOVERS if a not in EXCLUDE]
    n = len(movers) * len(BACKGROUND_NAMES)
    pairings = {(s.objects[0].asset, s.background) for s in (random_scene(i, EXCLUDE) for i in range(n))}
    assert pairings == set(itertools.product(movers, BACKGROUND_NAMES))


def test_chosen_movers_are_cycled_and_the_default_scenes_do_not_change():
    """``movers`` picks the objects (every pairing once per cycle); naming the default movers
    gives exactly the default scenes, so adding assets leaves existing seeds' scenes alone."""
    assert set(DEFAULT_MOVERS) < set(MOVING_ASSETS)
    extra = sorted(set(MOVING_ASSETS) - set(DEFAULT_MOVERS))
    movers = ["ball", *extra]
    n = len(movers) * len(BACKGROUND_NAMES)
    pairings = {(s.objects[0].asset, s.background) for s in (random_scene(i, (), movers) for i in range(n))}
    assert pairings == set(itertools.product(movers, BACKGROUND_NAMES))
    for seed in range(12):
        assert random_scene(seed, EXCLUDE, DEFAULT_MOVERS) == random_scene(seed, EXCLUDE)
        assert random_scene(seed, EXCLUDE, MOVING_ASSETS).objects[0].asset in MOVING_ASSETS


def test_the_blur_range_is_honoured_and_bad_ranges_are_named():
    blurs = [random_scene(seed, EXCLUDE, blur_b_px=(60, 90)) for seed in range(30)]
    lengths = [spec.blur_px(spec.long_exposure_s) for spec in blurs]
    assert min(lengths) >= 59.9 and max(lengths) <= 90.1 and max(lengths) > 80
    with pytest.raises(ValueError, match="blur_b_px"):
        random_scene(0, blur_b_px=(50, 20))
    with pytest.raises(ValueError, match="blur_b_px"):
        random_scene(0, blur_b_px=(0.5, 20))
    with pytest.raises(ValueError, match="cannot move"):
        random_scene(0, movers=["poster"])
    with pytest.raises(ValueError, match="cannot move"):
        random_scene(0, movers=["unicorn"])


def test_scenes_stay_within_the_documented_ranges():
    for seed in range(60):
        spec = random_scene(seed, EXCLUDE)
        obj = spec.objects[0]
        assert obj.asset != "pedestrian"
        assert 5.0 <= spec.optics.object_distance_m <= 25.0
        height_frac = obj.height_m * spec.optics.pixels_per_metre / spec.sensor.height
        assert 0.149 <= height_frac <= 0.451
        assert 1.0 <= obj.trajectory.speed_mps <= 8.0
        assert 0.29 <= abs(obj.trajectory.end[0] - obj.trajectory.start[0]) <= 0.61
        assert 19.9 <= spec.blur_px(spec.long_exposure_s) <= 70.1
        assert 2.49 <= spec.blur_px(spec.short_exposure_s) <= 5.01
        lo, hi = spec.sensor.exposure_range_s
        assert lo <= spec.short_exposure_s < spec.long_exposure_s <= hi
        if obj.asset not in SPINNING_ASSETS:
            assert obj.trajectory.spin_dps == 0.0


def test_excluded_assets_never_appear_and_bad_exclusions_are_named():
    for seed in range(24):
        excluded = ("pedestrian", "poster", "horse")
        spec = random_scene(seed, excluded)
        assert {o.asset for o in spec.objects} <= set(MOVING_ASSETS) - set(excluded)
        assert spec.props == ()
    with pytest.raises(ValueError, match="unknown asset"):
        random_scene(0, ("unicorn",))
    with pytest.raises(ValueError, match="no moving asset"):
        random_scene(0, DEFAULT_MOVERS)
    with pytest.raises(ValueError, match="seed"):
        random_scene(-1)


@pytest.mark.parametrize("name", CUTOUT_NAMES)
def test_every_cutout_is_a_valid_linear_image_with_an_alpha(name):
    """Every asset: linear RGB and alpha in [0, 1], cropped to its alpha (opaque somewhere,
    transparent or cut at every border row/column within the crop's 2-texel pad)."""
    c = cutout(name)
    assert c.rgb.dtype == np.float32 and c.alpha.dtype == np.float32
    assert c.rgb.shape[:2] == c.alpha.shape and c.rgb.shape[2] == 3
    assert c.rgb.min() >= 0.0 and c.rgb.max() <= 1.0
    assert c.alpha.min() >= 0.0 and c.alpha.max() <= 1.0 and c.alpha.max() > 0.99
    assert c.alpha.mean() > 0.3


def test_the_pedestrian_photograph_is_not_in_any_other_asset(monkeypatch):
    """The pedestrian stays a photograph-disjoint test object: every other asset builds with
    the astronaut photograph made unavailable."""
    import skimage.data

    from hardware_sim import assets

    def forbidden():
        raise AssertionError("the pedestrian's photograph was read")

    monkeypatch.setattr(skimage.data, "astronaut", forbidden)
    for name, factory in assets._CUTOUTS.items():
        if name != "pedestrian":
            assert factory().name in (name, "poster")
    with pytest.raises(AssertionError, match="pedestrian's photograph"):
        assets._CUTOUTS["pedestrian"]()


@pytest.mark.parametrize("seed", [0, 4, 11])
def test_the_twin_renders_the_promised_blur(seed):
    """The blurred and sharp ground truths differ only where the true mask says, and the mask
    is as long along the path as the object plus B's blur (Eq. 2, scaled to the sensor)."""
    width, height = 384, 256
    spec = with_sensor_size(random_scene(seed, EXCLUDE), width, height)
    shot = RigTwin(spec, seed).pair(0, 1)
    mask = shot.mask
    assert 0.002 < mask.mean() < 0.5
    diff = np.abs(shot.blurred_linear - shot.sharp_linear).max(axis=2)
    assert diff[mask].mean() > 5 * diff[~mask].mean()
    blur_b = spec.blur_px(spec.long_exposure_s)
    assert 3.5 <= blur_b <= 12.6  # 20–70 px at 2152 px wide, scaled to 384
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    extent = max(cols[-1] - cols[0], rows[-1] - rows[0]) + 1
    size_px = spec.objects[0].height_m * spec.optics.pixels_per_metre
    assert extent >= 0.5 * size_px + 0.5 * blur_b
