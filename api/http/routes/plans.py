"""Exposure-plan preview (Eq. 2): computes, stores nothing."""

from __future__ import annotations

from fastapi import APIRouter

from acquisition.rig_plan import plan_for_rig
from api.http.deps import SettingsDep, ViewerToken
from api.http.rig_service import find_rig
from api.http.schemas import PlanIn, PlanOut

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
    cfg = find_rig(settings, body.rig)[1] if body.rig is not None else None
    plan = plan_for_rig(
        cfg, distance_m=body.distance_m, speed_mps=body.speed_mps, pixel_pitch_um=body.pixel_pitch_um,
        focal_length_mm=body.focal_length_mm, image_distance_mm=body.image_distance_mm,
        nd_filters=body.nd_filters, sharp_blur_px=body.sharp_blur_px,
        blur_range_px=(body.blur_min_px, body.blur_max_px), target_blur_px=body.target_blur_px,
        sharp_timing=body.sharp_timing,
    )
    return PlanOut.model_validate(plan.as_dict())
