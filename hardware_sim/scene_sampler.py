"""Randomised scenes for the twin: many distinct training scenes from the bundled assets.

The three presets are three fixed scenes; a deblurring model trained on two of them learns those
scenes' content rather than how to undo motion blur. :func:`random_scene` draws a new, valid
:class:`~hardware_sim.spec.SceneSpec` from a seed: a background, one moving cut-out (optionally
a static poster), its distance, size, path, speed and spin, and the pair's exposures. The
same seed always gives the same scene.

Ranges (at the full 2152×1436 sensor; with :func:`~hardware_sim.spec.with_sensor_size` every
length in pixels scales with the width):

- object distance 5–25 m, imaged object height 15–45 % of the frame height;
- a straight or bowed path across 30–60 % of the frame width, left to right or back;
- blur in B's exposure 20–70 px (Eq. 2 gives tS for 2.5–5 px of blur in S at speeds of
  1–8 m/s, and the ND transmittance τ = S blur / B blur), spin up to ±400 °/s for the ball and the disc.

``exclude_assets`` keeps assets out of the moving objects and props (e.g. ``("pedestrian",)``
so that the ``pedestrian`` preset stays a scene-disjoint test scene).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hardware_sim.assets import BACKGROUND_NAMES, CUTOUT_NAMES
from hardware_sim.spec import OpticsSpec, SceneSpec, parse_scene

__all__ = ["RANDOM_PRESET", "MOVING_ASSETS", "SPINNING_ASSETS", "random_scene"]

#: The name that stands for "a random scene per seed" where preset names are accepted.
RANDOM_PRESET = "random"
#: Cut-outs that can move (the poster is a flat static prop).
MOVING_ASSETS = tuple(name for name in CUTOUT_NAMES if name != "poster")
#: Movers that may spin as they travel (round, thrown objects).
SPINNING_ASSETS = ("ball", "disc")

FULL_HEIGHT_PX = 1436


def random_scene(seed: int, exclude_assets: Iterable[str] = ()) -> SceneSpec:
    """A valid random scene at the full 2152×1436 sensor, determined by ``seed`` (int ≥ 0).

    The moving asset and the background follow the seed in turn (every pairing once in each
    run of ``len(moving assets) × len(backgrounds)`` seeds); the rest is drawn at random.

    Raises ``ValueError`` when ``exclude_assets`` names an unknown asset or leaves no moving
    asset to choose from.
    """
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    excluded = set(exclude_assets)
    unknown = excluded - set(CUTOUT_NAMES)
    if unknown:
        raise ValueError(f"unknown asset(s) {sorted(unknown)} in exclude_assets; known: {', '.join(CUTOUT_NAMES)}")
    movers = [a for a in MOVING_ASSETS if a not in excluded]
    if not movers:
        raise ValueError(f"exclude_assets {sorted(excluded)} leaves no moving asset")
    rng = np.random.default_rng([seed, 0x5CE1E])

    # Object and background cycle through every combination (stratified rather than drawn), so
    # that any run of len(movers) × len(backgrounds) consecutive seeds holds each pairing once.
    asset = movers[seed % len(movers)]
    background = BACKGROUND_NAMES[(seed // len(movers)) % len(BACKGROUND_NAMES)]
    distance_m = float(rng.uniform(5.0, 25.0))
    optics = OpticsSpec(focal_length_mm=50.0, pixel_pitch_um=4.5, object_distance_m=distance_m)
    height_px = rng.uniform(0.15, 0.45) * FULL_HEIGHT_PX
    height_m = float(height_px / optics.pixels_per_metre)

    span = rng.uniform(0.30, 0.60)
    x0 = rng.uniform(0.12, 0.88 - span)
    y0, y1 = rng.uniform(0.35, 0.70, size=2)
    start, end = (x0, y0), (x0 + span, y1)
    if rng.random() < 0.5:
        start, end = end, start
    speed = float(rng.uniform(1.0, 8.0))
    spin = float(rng.uniform(-400.0, 400.0)) if asset in SPINNING_ASSETS else 0.0
    bow = float(rng.uniform(-0.15, 0.15)) if rng.random() < 0.5 else 0.0

    sharp_blur_px = float(rng.uniform(2.5, 5.0))
    blur_b_px = float(rng.uniform(20.0, 70.0))
    props = []
    if rng.random() < 0.5 and "poster" not in excluded:
        props.append({
            "asset": "poster",
            "centre": [round(float(rng.uniform(0.15, 0.85)), 4), round(float(rng.uniform(0.12, 0.3)), 4)],
            "height_frac": round(float(rng.uniform(0.15, 0.3)), 4),
        })
    return parse_scene({
        "name": f"{RANDOM_PRESET}-{int(seed)}",
        "description": f"Random scene {int(seed)}: a {asset} at {distance_m:.1f} m, {speed:.1f} m/s.",
        "optics": optics.model_dump(),
        "background": background,
        "props": props,
        "objects": [{
            "asset": asset,
            "height_m": round(height_m, 4),
            "trajectory": {
                "start": [round(float(v), 4) for v in start],
                "end": [round(float(v), 4) for v in end],
                "bow": round(bow, 4),
                "speed_mps": round(speed, 3),
                "spin_dps": round(spin, 1),
            },
        }],
        "exposure": {"sharp_blur_px": round(sharp_blur_px, 3),
                     "nd_transmittance": round(sharp_blur_px / blur_b_px, 4)},
    })
