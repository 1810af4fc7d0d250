"""Colour calibrations (read only; they are fitted by post-processing jobs or the CLI)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.http.calibration_images import residual_heatmap_png
from api.http.deps import (
    DbDep,
    IdPath,
    IdQuery,
    Limit,
    Offset,
    SessionDep,
    SettingsDep,
    ViewerToken,
)
from api.http.schemas import CalibrationDetail, CalibrationOut
from core.models import Calibration, Frame

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


@router.get(
    "/calibrations/{calibration_id:int}/residual.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "R | G | B heat maps"}},
    summary="The cast left on the calibration's lightbox after correction, as a heat map",
)
def calibration_residual_png(
    calibration_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    _: ViewerToken,
    range_pct: Annotated[float, Query(gt=0, le=100, description="% at full colour")] = 1.0,
) -> Response:
    """Per patch of the calibration's grid and per channel (R | G | B panels), the corrected
    lightbox's mean over the central patch's, − 1, blue (−``range_pct`` %) to red (+); the header
    ``X-Residual-Max-Pct`` gives the largest magnitude (the stored ``cast_spread``, in %)."""
    from postprocess.calibration import ColourCalibration, residual_cast
    from postprocess.isp import normalise_raw
    from postprocess.stages.frames import load_frame

    row = session.get(Calibration, calibration_id)
    if row is None:
        raise HTTPException(404, f"no calibration with id {calibration_id}")
    frame = session.get(Frame, row.lightbox_frame_id)
    cfa, meta = load_frame(settings.data_dir, frame)
    calibration = ColourCalibration.from_dict(row.content)
    residual = residual_cast(normalise_raw(cfa, meta.black_level, meta.white_level), calibration)
    png = residual_heatmap_png(residual, range_pct)
    return Response(png, media_type="image/png", headers={
        "X-Residual-Max-Pct": f"{100 * float(np.max(np.abs(residual))):.4f}",
        "Cache-Control": "private, max-age=3600"})
