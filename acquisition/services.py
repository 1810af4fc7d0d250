"""The acquisition use cases behind every front door: a scene session and a lightbox capture.

One request model (:mod:`acquisition.requests`) and one function each: ``SceneCaptureRequest``
→ :func:`capture_scene`, ``LightboxRequest`` → :func:`capture_lightbox`. ``reloblur capture`` / ``capture-lightbox``
build the request from their options, the capture and lightbox job handlers from the job's
parameters (:mod:`api.jobs.params`: these models plus the rig's name, which is how the API
knows a rig), and both call these functions with the rig's :class:`~acquisition.rig.RigConfig`.

The exposure plan comes from :func:`acquisition.rig_plan.plan_for_rig`: what the request gives
wins, the rest comes from the rig file (and, on the simulated rig, the object's distance and
speed from its scene). A plan the rig cannot take is refused (:class:`~acquisition.planner.PlanError`)
before the rig is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from acquisition.capture import SceneCapture
from acquisition.capture_outcome import CaptureOutcome
from acquisition.planner import ExposurePlan, lightbox_plan
from acquisition.requests import DEFAULT_SHARP_BLUR_PX, LightboxRequest, SceneCaptureRequest
from acquisition.rig import RigConfig, Stage, build_rig
from acquisition.rig_plan import plan_for_rig

__all__ = [
    "capture_lightbox",
    "capture_scene",
    "plan_scene_capture",
]

def plan_scene_capture(rig: RigConfig, request: SceneCaptureRequest,
                       names: dict[str, str] | None = None) -> ExposurePlan:
    """The exposure plan a scene session on ``rig`` runs with. ``names``: how the caller spells
    the parameters (``--distance``) in the error that names a missing one (PlanError)."""
    return plan_for_rig(
        rig, distance_m=request.distance_m, speed_mps=request.speed_mps,
        sharp_blur_px=request.sharp_blur or DEFAULT_SHARP_BLUR_PX, target_blur_px=request.target_blur_px,
        sharp_timing=request.sharp_timing, names=names,
    )


def capture_scene(
    rig: RigConfig,
    request: SceneCaptureRequest,
    data_dir: Path,
    engine: Engine,
    *,
    plan: ExposurePlan | None = None,
    on_stored: Callable[[int, Stage], None] | None = None,
) -> tuple[ExposurePlan, CaptureOutcome]:
    """Plan (unless ``plan`` is given, from :func:`plan_scene_capture`), open the rig and capture
    the session; returns the plan and the outcome. Raises PlanError before the rig is opened,
    the rig's SynchronizerError / CameraError when it cannot be opened, and CaptureError (the
    stored pairs kept) when a trigger fails."""
    plan = plan if plan is not None else plan_scene_capture(rig, request)
    with build_rig(rig) as opened:
        outcome = SceneCapture(opened, plan, data_dir, engine).capture_scene(
            request.scene, request.pairs, resume=request.resume, on_stored=on_stored,
            object_distance_m=request.distance_m)
    return plan, outcome


def capture_lightbox(rig: RigConfig, request: LightboxRequest, data_dir: Path, engine: Engine,
                     ) -> tuple[ExposurePlan, CaptureOutcome]:
    """Open the rig and capture one lightbox trigger; returns the plan and the outcome."""
    plan = lightbox_plan(request.exposure_ms * 1e-3, request.nd)
    with build_rig(rig) as opened:
        outcome = SceneCapture(opened, plan, data_dir, engine).capture_lightbox()
    return plan, outcome
