"""Colour calibrations (read only; they are fitted by post-processing jobs or the CLI)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.http.deps import DbDep, IdPath, IdQuery, Limit, Offset, ViewerToken
from api.http.schemas import CalibrationDetail, CalibrationOut
from core.models import Calibration

router = APIRouter(tags=["calibrations"])


@router.get("/calibrations", response_model=list[CalibrationOut], summary="List calibrations")
async def list_calibrations(
    request: Request,
    db: DbDep,
    _: ViewerToken,
    camera_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[CalibrationOut]:
    return await db.read(request, _list_calibrations, camera_id, limit, offset)


def _list_calibrations(session: Session, camera_id: int | None, limit: int,
                       offset: int) -> list[CalibrationOut]:
    q = select(Calibration).order_by(Calibration.id)
    if camera_id is not None:
        q = q.where(Calibration.camera_id == camera_id)
    return [
        CalibrationOut.model_validate(c) for c in session.scalars(q.limit(limit).offset(offset))
    ]


@router.get(
    "/calibrations/{calibration_id:int}",
    response_model=CalibrationDetail,
    summary="One calibration with its coefficients",
)
async def get_calibration(
    calibration_id: IdPath, request: Request, db: DbDep, _: ViewerToken
) -> CalibrationDetail:
    return await db.read(request, _get_calibration, calibration_id)


def _get_calibration(session: Session, calibration_id: int) -> CalibrationDetail:
    row = session.get(Calibration, calibration_id)
    if row is None:
        raise HTTPException(404, f"no calibration with id {calibration_id}")
    return CalibrationDetail.model_validate(row)
