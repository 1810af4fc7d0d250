"""Captures: list and inspect; start a scene session on a rig (a capture job; 409 while busy)."""

from __future__ import annotations

import threading

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from acquisition.rig import load_rig_config
from api.deps import (
    IdPath,
    IdQuery,
    Limit,
    Offset,
    SessionDep,
    SettingsDep,
    ViewerToken,
)
from api.jobparams import CaptureParams, JobParamsError, LightboxParams, validate_params
from api.routes.jobs import ACCEPTED, SubmitDep, Submitter
from api.routes.rigs import ensure_rig_free
from api.schemas import CaptureDetail, CaptureOut, ErrorOut, JobAccepted
from core.models import Capture, CaptureKind, CaptureStatus, JobKind, Scene

router = APIRouter(tags=["captures"])
_submit_lock = threading.Lock()  # the busy check and the new job row, one request at a time


@router.get("/captures", response_model=list[CaptureOut], summary="List captures")
def list_captures(
    session: SessionDep,
    _: ViewerToken,
    scene: str | None = None,
    kind: CaptureKind | None = None,
    capture_status: CaptureStatus | None = None,
    rig_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CaptureOut]:
    q = select(Capture).order_by(Capture.id)
    if scene is not None:
        q = q.join(Scene, Capture.scene_id == Scene.id).where(Scene.name == scene)
    if kind is not None:
        q = q.where(Capture.kind == kind)
    if capture_status is not None:
        q = q.where(Capture.status == capture_status)
    if rig_id is not None:
        q = q.where(Capture.rig_id == rig_id)
    return [CaptureOut.model_validate(c) for c in session.scalars(q.limit(limit).offset(offset))]


@router.get(
    "/captures/{capture_id}", response_model=CaptureDetail, summary="One capture and its frames"
)
def get_capture(capture_id: IdPath, session: SessionDep, _: ViewerToken) -> CaptureDetail:
    row = session.get(Capture, capture_id)
    if row is None:
        raise HTTPException(404, f"no capture with id {capture_id}")
    return CaptureDetail.model_validate(row)


ON_A_RIG = {
    **ACCEPTED,
    "responses": {
        **ACCEPTED["responses"],
        409: {"model": ErrorOut, "description": "The rig is busy."},
    },
}


def _start_on_rig(kind: JobKind, body: CaptureParams | LightboxParams, settings,
                  submit: Submitter) -> JobAccepted:
    """Submit a job that uses the rig ``body.rig``: its file must exist in the app's rigs_dir
    and describe that rig (422 otherwise); 409 while the rig is busy."""
    validate_params(kind, body.model_dump(mode="json"), settings)
    rig = body.rig
    cfg = load_rig_config(settings.rigs_dir / f"{rig}.yaml")  # RigConfigError: 422
    if cfg.name != rig:
        raise JobParamsError(
            f"rig: {rig}.yaml in {settings.rigs_dir} describes rig {cfg.name!r}, not "
            f"{rig!r}: a rig file must be named after its rig (name: {rig})"
        )
    with _submit_lock:
        ensure_rig_free(submit.session, settings, rig)
        return submit(kind, body)


@router.post(
    "/captures",
    summary="Start a scene session on a rig: whiteboard, reference, then the pairs",
    **ON_A_RIG,
)
def start_capture(body: CaptureParams, settings: SettingsDep, submit: SubmitDep) -> JobAccepted:
    """The rig is ``<rigs_dir>/<rig>.yaml`` (422 when there is no such file), and that file must
    describe the rig ``rig``. One capture at a time per rig: 409 while a capture is queued or
    running on it. Progress: the job (``GET /jobs/{id}``)."""
    return _start_on_rig(JobKind.CAPTURE, body, settings, submit)


@router.post(
    "/captures/lightbox",
    summary="Capture one lightbox flat field per camera of a rig (colour calibration)",
    **ON_A_RIG,
)
def start_lightbox(body: LightboxParams, settings: SettingsDep, submit: SubmitDep) -> JobAccepted:
    """The rig's lightbox frames, from which ``postprocess`` fits each camera's colour
    calibration (a newer lightbox supersedes). Camera S exposes ``exposure_ms``, camera B
    ``exposure_ms / nd``. 422 without the rig file; 409 while the rig is busy."""
    return _start_on_rig(JobKind.LIGHTBOX, body, settings, submit)
