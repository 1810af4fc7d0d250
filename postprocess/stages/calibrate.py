"""Stage 1: a camera's colour calibration (Eq. 3–5) from its rig's newest lightbox frame.

A fit is recorded in ``calibrations`` under the hash of the camera, the lightbox frame's sha256
and ``params.calibration``; a recorded fit is reused, a newer lightbox supersedes, older fits stay.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.models import Calibration, CameraRecord, Capture, CaptureKind, CaptureStatus, Frame
from postprocess.calibration import (
    ColourCalibration,
    cast_spread,
    correct_colour,
    fit_colour_calibration,
)
from postprocess.isp import normalise_raw
from postprocess.params import PIPELINE_VERSION, PipelineParams, params_hash
from postprocess.stages.common import MissingCalibrationError, ProductStore
from postprocess.stages.frames import load_frame


def calibration_for(store: ProductStore, params: PipelineParams,
                    camera: CameraRecord) -> tuple[ColourCalibration, bool]:
    """The camera's calibration from its rig's newest lightbox frame: (calibration, made)."""
    p = params.calibration
    with store.sessions() as session:
        frame = session.scalar(
            select(Frame).join(Capture)
            .where(Frame.camera_id == camera.id, Capture.kind == CaptureKind.LIGHTBOX,
                   Capture.status == CaptureStatus.COMPLETE)
            .order_by(Capture.started_at.desc(), Capture.id.desc()).limit(1)
        )
        if frame is None:
            raise MissingCalibrationError(
                f"camera {camera.role} ({camera.serial}) has no lightbox frame to calibrate from: "
                "capture one (`reloblur capture-lightbox`) or import one (`reloblur import`)"
            )
        h = params_hash({"stage": "calibration", "camera": camera.id, "lightbox": frame.sha256,
                         "calibration": params.section("calibration")})
        row = session.scalar(select(Calibration).where(Calibration.camera_id == camera.id,
                                                       Calibration.params_hash == h))
        if row is not None:
            return ColourCalibration.from_dict(row.content), False
        cfa, meta = load_frame(store.data_dir, frame)
        calibration = fit_colour_calibration(cfa, meta.cfa_pattern, meta.black_level, meta.white_level,
                                             patches=p.patches, refinements=p.refinements)
        corrected = correct_colour(normalise_raw(cfa, meta.black_level, meta.white_level),
                                   calibration, meta.cfa_pattern)
        spread = cast_spread(corrected, meta.cfa_pattern, calibration.patches, calibration.central)
        session.add(Calibration(
            camera_id=camera.id, lightbox_frame_id=frame.id, calibration_id=calibration.calibration_id,
            params_hash=h, pipeline_version=PIPELINE_VERSION, content=calibration.to_dict(),
            cast_spread=spread, residual_rms_max=float(np.max(calibration.residual_rms)),
        ))
        try:
            session.commit()
        except IntegrityError:  # fitted by another process meanwhile: the same result
            session.rollback()
        return calibration, True
