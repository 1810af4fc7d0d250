"""Captures: list and inspect; start a scene session on a rig (a capture job; 409 while busy)."""

from __future__ import annotations

import threading

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import select

from acquisition.rig import load_rig_config
from api.deps import (
    IdPath,
    IdQuery,
    Limit,
    Offset,
    OperatorToken,
    RunnerDep,
    SessionDep,
    SettingsDep,
    ViewerToken,
)
from api.jobparams import CaptureParams, JobParamsError, LightboxParams, validate_params
from api.routes.jobs import ACCEPTED, submit
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


def _check_rig_name(settings, rig: str) -> None:
    """JobParamsError (422) unless ``<rigs_dir>/<rig>.yaml`` describes the rig ``rig``."""
    cfg = load_rig_config(settings.rigs_dir / f"{rig}.yaml")  # RigConfigError: 422
    if cfg.name != rig:
        raise JobParamsError(
            f"rig: {rig}.yaml in {settings.rigs_dir} describes rig {cfg.name!r}, not "
            f"{rig!r}: a rig file must be named after its rig (name: {rig})"
        )


@router.post(
    "/captures",
    summary="Start a scene session on a rig: whiteboard, reference, then the pairs",
    **{
        **ACCEPTED,
        "responses": {
            **ACCEPTED["responses"],
            409: {"model": ErrorOut, "description": "The rig is busy."},
        },
    },
)
def start_capture(
    body: CaptureParams,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    runner: RunnerDep,
    token: OperatorToken,
) -> JobAccepted:
    """The rig is ``<rigs_dir>/<rig>.yaml`` (422 when there is no such file), and that file must
    describe the rig ``rig``. One capture at a time per rig: 409 while a capture is queued or
    running on it. Progress: the job (``GET /jobs/{id}``)."""
    params = body.model_dump(mode="json")
    validate_params(JobKind.CAPTURE, params, settings)  # the rig file, in the app's rigs_dir
    _check_rig_name(settings, body.rig)
    with _submit_lock:
        ensure_rig_free(session, settings, body.rig)
        return submit(request, response, session, runner, token, JobKind.CAPTURE, params)


@router.post(
    "/captures/lightbox",
    summary="Capture one lightbox flat field per camera of a rig (colour calibration)",
    **{
        **ACCEPTED,
        "responses": {
            **ACCEPTED["responses"],
            409: {"model": ErrorOut, "description": "The rig is busy."},
        },
    },
)
def start_lightbox(
    body: LightboxParams,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    runner: RunnerDep,
    token: OperatorToken,
) -> JobAccepted:
    """The rig's lightbox frames, from which ``postprocess`` fits each camera's colour
    calibration (a newer lightbox supersedes). Camera S exposes ``exposure_ms``, camera B
    ``exposure_ms / nd``. 422 without the rig file; 409 while the rig is busy."""
    params = body.model_dump(mode="json")
    validate_params(JobKind.LIGHTBOX, params, settings)
    _check_rig_name(settings, body.rig)
    with _submit_lock:
        ensure_rig_free(session, settings, body.rig)
        return submit(request, response, session, runner, token, JobKind.LIGHTBOX, params)
