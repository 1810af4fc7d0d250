"""Exposure-plan preview (Eq. 2): computes, stores nothing."""

from __future__ import annotations

from fastapi import APIRouter

from acquisition.planner import (
    DEFAULT_ND_FILTERS,
    DEFAULT_SHARP_TIMING,
    PlanError,
    PlanRequest,
    plan_exposures,
)
from api.deps import SettingsDep, ViewerToken
from api.routes.rigs import find_rig
from api.schemas import PlanIn, PlanOut

router = APIRouter(tags=["plans"])


@router.post(
    "/plans/preview",
    response_model=PlanOut,
    summary="Preview an exposure plan: tS, ND filter, tL, blur and pulse widths",
)
def preview_plan(body: PlanIn, settings: SettingsDep, _: ViewerToken) -> PlanOut:
    """A ``rig`` supplies pixel pitch, focal length, ND filters, exposure limits and the sharp
    timing (and, for a simulated rig, distance and speed); fields given in the body win. The plan
    shows camera S's trigger delay (``sharp_delay_s``). Bad inputs, and a ``sharp_timing`` the rig
    cannot honour: 422."""
    pitch, focal, nd = body.pixel_pitch_um, body.focal_length_mm, body.nd_filters
    distance, speed = body.distance_m, body.speed_mps
    exposure_range = (2e-5, 10.0)
    sharp_timing = body.sharp_timing
    if body.rig is not None:
        _, cfg = find_rig(settings, body.rig)
        o = cfg.optics
        pitch = pitch or o.pixel_pitch_um
        if body.image_distance_mm is None:
            focal = focal or o.focal_length_mm
        nd = nd or list(o.nd_filters)
        exposure_range = o.exposure_range_s
        sharp_timing = sharp_timing or cfg.sharp_timing
        if (distance is None or speed is None) and cfg.simulation is not None:
            from hardware_sim.rig import scene_for_rig

            spec = scene_for_rig(cfg)
            distance = distance or spec.optics.object_distance_m
            speed = speed or spec.fastest_speed_mps
    if distance is None or speed is None or pitch is None:
        raise PlanError(
            "give distance_m, speed_mps and pixel_pitch_um (or a rig that provides them)"
        )
    if focal is None and body.image_distance_mm is None:
        raise PlanError("give focal_length_mm or image_distance_mm (or a rig that provides them)")
    plan = plan_exposures(
        PlanRequest(
            object_distance_m=distance,
            speed_mps=speed,
            pixel_pitch_um=pitch,
            focal_length_mm=focal,
            image_distance_mm=body.image_distance_mm,
            sharp_blur_px=body.sharp_blur_px,
            nd_filters=tuple(nd) if nd else DEFAULT_ND_FILTERS,
            blur_range_px=(body.blur_min_px, body.blur_max_px),
            target_blur_px=body.target_blur_px,
            exposure_range_s=exposure_range,
            sharp_timing=sharp_timing or DEFAULT_SHARP_TIMING,
        )
    )
    return PlanOut.model_validate(plan.as_dict())
