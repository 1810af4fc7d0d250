"""A stored RAW frame, checked against its recorded sha256, and its camera RGB.

CFA frames are (H, W) uint16 with their :class:`core.dng.RawMetadata`; camera RGB is (H, W, 3)
float32 on the white range (black 0, white 1), colour-corrected and demosaiced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.dng import RawMetadata
from core.filestore import sha256_file
from core.models import Frame
from core.rawio import read_raw
from postprocess.calibration import ColourCalibration, correct_colour
from postprocess.isp import demosaic_menon, normalise_raw
from postprocess.stages.common import CorruptFrameError


def load_frame(data_dir: Path, frame: Frame) -> tuple[np.ndarray, RawMetadata]:
    """A stored RAW frame as (H, W) uint16 CFA and metadata, after checking its sha256."""
    path = data_dir / frame.path
    if not path.is_file():
        raise CorruptFrameError(f"RAW frame {frame.path} is missing from the data directory {data_dir}")
    digest = sha256_file(path)
    if digest != frame.sha256:
        raise CorruptFrameError(
            f"RAW frame {frame.path} has changed since it was stored (sha256 {digest[:12]}…, "
            f"recorded {frame.sha256[:12]}…): restore the original file"
        )
    return read_raw(path, default_exposure_s=frame.exposure_s)


def camera_rgb(cfa: np.ndarray, meta: RawMetadata, calibration: ColourCalibration) -> np.ndarray:
    """Normalised, colour-corrected, demosaiced camera RGB (H, W, 3) float32."""
    corrected = correct_colour(normalise_raw(cfa, meta.black_level, meta.white_level), calibration,
                               meta.cfa_pattern)
    return demosaic_menon(corrected, meta.cfa_pattern, dtype=np.float32)


def to_srgb_linear(rgb: np.ndarray, wb: np.ndarray, ccm: np.ndarray) -> np.ndarray:
    """Camera RGB (H, W, 3) white-balanced by ``wb`` (3,) and mapped by ``ccm`` (3, 3) to
    linear sRGB (H, W, 3) float32."""
    combined = (ccm @ np.diag(wb)).astype(np.float32)
    h, w = rgb.shape[:2]
    return (rgb.reshape(-1, 3) @ combined.T).reshape(h, w, 3)
