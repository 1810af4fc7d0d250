"""Captures: list and inspect; start a scene session on a rig (a capture job; 409 while busy)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from acquisition.rig import RigConfigError, load_rig
from api.http.deps import (
    DbDep,
    IdPath,
    IdQuery,
    Limit,
    Offset,
    SettingsDep,
    ViewerToken,
)
from api.http.rig_service import ensure_rig_free
from api.http.schemas import CaptureDetail, CaptureOut, ErrorOut, JobAccepted
from api.http.submit import ACCEPTED, SubmitDep, Submitter
from api.jobs.params import CaptureParams, JobParamsError, LightboxParams, validate_params
from core.models import Capture, CaptureKind, CaptureStatus, JobKind, Scene

router = APIRouter(tags=["captures"])
_submit_lock = threading.Lock()


@contextlib.contextmanager
def _one_submission_at_a_time(data_dir: Path) -> Iterator[None]:
    """The busy check and the new job row, one request at a time in every HTTP worker process
    of this data directory (a thread lock, then an exclusive ``flock``)."""
    lock_dir = Path(data_dir) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _submit_lock:
        fd = os.open(lock_dir / "capture-submit.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@router.get("/captures", response_model=list[CaptureOut], summary="List captures")
async def list_captures(
    request: Request,
    db: DbDep,
    _: ViewerToken,
    scene: str | None = None,
    kind: CaptureKind | None = None,
    capture_status: CaptureStatus | None = None,
    rig_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CaptureOut]:
    return await db.read(request, _list_captures, scene, kind, capture_status, rig_id, limit, offset)


def _list_captures(session: Session, scene: str | None, kind: CaptureKind | None,
                   capture_status: CaptureStatus | None, rig_id: int | None, limit: int,
                   offset: int) -> list[CaptureOut]:
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
    "/captures/{capture_id:int}", response_model=CaptureDetail, summary="One capture and its frames"
)
async def get_capture(
    capture_id: IdPath, request: Request, db: DbDep, _: ViewerToken
) -> CaptureDetail:
    return await db.read(request, _get_capture, capture_id)


def _get_capture(session: Session, capture_id: int) -> CaptureDetail:
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
    try:
        load_rig(settings.rigs_dir, rig)
    except RigConfigError as exc:
        raise JobParamsError(f"rig: {exc}") from None
    with _one_submission_at_a_time(settings.data_dir):
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
