"""The exposure plan for a rig: one function behind ``reloblur plan``, ``POST /plans/preview``
and capture jobs.

:func:`rig_plan_request` fills a :class:`~acquisition.planner.PlanRequest` from what the caller
gives and, for the rest, from the rig file: pixel pitch, focal length (unless an image distance
is given), ND filters, the cameras' exposure limits, the sharp timing, and (where a backend
knows the world in front of the rig: the simulator) the object's distance and speed. Given
values always win. Without a rig, the planner's defaults apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from acquisition.backends import motion_hint
from acquisition.planner import (
    DEFAULT_ND_FILTERS,
    DEFAULT_SHARP_TIMING,
    SHARP_TIMINGS,
    ExposurePlan,
    PlanError,
    PlanRequest,
    SharpTimingError,
    plan_exposures,
)
from acquisition.rig import RigConfig

__all__ = ["DEFAULT_EXPOSURE_RANGE_S", "plan_for_rig", "rig_plan_request"]

#: The exposure limits assumed without a rig file (s).
DEFAULT_EXPOSURE_RANGE_S = (2e-5, 10.0)


def rig_plan_request(
    rig: RigConfig | None,
    *,
    distance_m: float | None = None,
    speed_mps: float | None = None,
    pixel_pitch_um: float | None = None,
    focal_length_mm: float | None = None,
    image_distance_mm: float | None = None,
    nd_filters: Sequence[float] | None = None,
    sharp_blur_px: float = 6.0,
    blur_range_px: tuple[float, float] = (15.0, 70.0),
    target_blur_px: float | None = None,
    sharp_timing: str | None = None,
    names: dict[str, str] | None = None,
) -> PlanRequest:
    """The planner's request from the caller's values and ``rig``'s (see the module docstring).

    ``names`` maps the parameters to how the caller's user knows them (``--distance``,
    ``distance_m``) for the error that names what is missing. Raises
    :class:`~acquisition.planner.PlanError` when distance, speed, pixel pitch or the lens is
    neither given nor known from the rig, and :class:`~acquisition.planner.SharpTimingError` for
    an unknown ``sharp_timing``.
    """
    names = {"distance_m": "distance_m", "speed_mps": "speed_mps", "pixel_pitch_um": "pixel_pitch_um",
             "focal_length_mm": "focal_length_mm", "image_distance_mm": "image_distance_mm",
             "sharp_timing": "sharp_timing", "rig": "rig", **(names or {})}
    if sharp_timing is not None and sharp_timing not in SHARP_TIMINGS:
        raise SharpTimingError(
            f"{names['sharp_timing']} must be one of {', '.join(SHARP_TIMINGS)}; got {sharp_timing!r}"
        )
    exposure_range = DEFAULT_EXPOSURE_RANGE_S
    if rig is not None:
        o = rig.optics
        pixel_pitch_um = pixel_pitch_um or o.pixel_pitch_um
        if image_distance_mm is None:
            focal_length_mm = focal_length_mm or o.focal_length_mm
        nd_filters = nd_filters or tuple(o.nd_filters)
        exposure_range = o.exposure_range_s
        sharp_timing = sharp_timing or rig.sharp_timing
        hint = motion_hint(rig) if distance_m is None or speed_mps is None else None
        if hint is not None:
            distance_m = distance_m or hint.object_distance_m
            speed_mps = speed_mps or hint.speed_mps
    if distance_m is None or speed_mps is None or pixel_pitch_um is None:
        raise PlanError(
            f"give {names['distance_m']}, {names['speed_mps']} and {names['pixel_pitch_um']} "
            f"(or a {names['rig']} that provides them)"
        )
    if focal_length_mm is None and image_distance_mm is None:
        raise PlanError(
            f"give {names['focal_length_mm']} or {names['image_distance_mm']} (or a {names['rig']} that provides them)"
        )
    return PlanRequest(
        object_distance_m=distance_m, speed_mps=speed_mps, pixel_pitch_um=pixel_pitch_um,
        focal_length_mm=focal_length_mm, image_distance_mm=image_distance_mm, sharp_blur_px=sharp_blur_px,
        nd_filters=tuple(nd_filters) if nd_filters else DEFAULT_ND_FILTERS, blur_range_px=blur_range_px,
        target_blur_px=target_blur_px, exposure_range_s=exposure_range,
        sharp_timing=sharp_timing or DEFAULT_SHARP_TIMING,
    )


def plan_for_rig(rig: RigConfig | None, **values) -> ExposurePlan:
    """:func:`~acquisition.planner.plan_exposures` of :func:`rig_plan_request` (same arguments)."""
    return plan_exposures(rig_plan_request(rig, **values))
