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
- blur in B's exposure 20–70 px by default (``blur_b_px``; Eq. 2 gives tS for 2.5–5 px of blur
  in S at speeds of 1–8 m/s, and the ND transmittance τ = S blur / B blur), spin up to ±400 °/s
  for the round movers (ball, disc, planet, wheel).

``movers`` chooses the moving objects among :data:`MOVING_ASSETS` (default
:data:`DEFAULT_MOVERS`, the nine of the first recipe, so that a seed's scene never changes when
assets are added); ``exclude_assets`` keeps assets out of the moving objects and props (e.g.
``("pedestrian",)`` so that the ``pedestrian`` preset stays a scene-disjoint test scene).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hardware_sim.assets import BACKGROUND_NAMES, CUTOUT_NAMES
from hardware_sim.spec import OpticsSpec, SceneSpec, parse_scene

__all__ = ["RANDOM_PRESET", "MOVING_ASSETS", "DEFAULT_MOVERS", "SPINNING_ASSETS", "DEFAULT_BLUR_B_PX",
           "random_scene"]

#: The name that stands for "a random scene per seed" where preset names are accepted.
RANDOM_PRESET = "random"
#: Cut-outs that can move (the poster is a flat static prop).
MOVING_ASSETS = tuple(name for name in CUTOUT_NAMES if name != "poster")
#: The movers a random scene draws from by default (the first nine cut-outs; later assets are
#: opt-in through ``movers`` so that existing seeds keep their scenes).
DEFAULT_MOVERS = ("ball", "cameraman", "cat", "disc", "horse", "motorcycle", "pedestrian", "placard", "specimen")
#: Movers that may spin as they travel (round, thrown or rolling objects).
SPINNING_ASSETS = ("ball", "disc", "planet", "wheel")
#: Default range of the blur length in B (px at the full 2152-px sensor).
DEFAULT_BLUR_B_PX = (20.0, 70.0)

FULL_HEIGHT_PX = 1436


def random_scene(seed: int, exclude_assets: Iterable[str] = (), movers: Iterable[str] | None = None,
                 blur_b_px: tuple[float, float] = DEFAULT_BLUR_B_PX) -> SceneSpec:
    """A valid random scene at the full 2152×1436 sensor, determined by ``seed`` (int ≥ 0).

    The moving asset (among ``movers``, default :data:`DEFAULT_MOVERS`, less ``exclude_assets``)
    and the background follow the seed in turn (every pairing once in each run of
    ``len(movers) × len(backgrounds)`` seeds); the rest is drawn at random. ``blur_b_px``:
    (min, max) blur length in B, px at the full sensor, 1 ≤ min ≤ max.

    Raises ``ValueError`` when ``movers`` or ``exclude_assets`` names an unknown asset, when no
    moving asset is left to choose from, or when ``blur_b_px`` is not an ordered range ≥ 1 px.
    """
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    excluded = set(exclude_assets)
    unknown = excluded - set(CUTOUT_NAMES)
    if unknown:
        raise ValueError(f"unknown asset(s) {sorted(unknown)} in exclude_assets; known: {', '.join(CUTOUT_NAMES)}")
    chosen = DEFAULT_MOVERS if movers is None else tuple(movers)
    not_movers = set(chosen) - set(MOVING_ASSETS)
    if not_movers:
        raise ValueError(f"movers {sorted(not_movers)} cannot move; moving assets: {', '.join(MOVING_ASSETS)}")
    blur_lo, blur_hi = (float(v) for v in blur_b_px)
    if not 1.0 <= blur_lo <= blur_hi:
        raise ValueError(f"blur_b_px must be (min, max) with 1 ≤ min ≤ max px, got {tuple(blur_b_px)}")
    movers = [a for a in MOVING_ASSETS if a in chosen and a not in excluded]
    if not movers:
        raise ValueError(f"exclude_assets {sorted(excluded)} leaves no moving asset among {', '.join(chosen)}")
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
    b_blur_px = float(rng.uniform(blur_lo, blur_hi))
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
                     "nd_transmittance": round(sharp_blur_px / b_blur_px, 4)},
    })
