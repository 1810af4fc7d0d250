"""Developing one RAW frame without a scene's calibration: the plain ISP.

What the API applies to a DNG it is given (the synchronous deblur preview, and a deblur job's
DNG inputs, through ``api.http.uploads``): white balance from the file's AsShotNeutral (green
gain 1), the camera → linear-sRGB matrix from its ColorMatrix1 (the identity without one), then
:func:`postprocess.isp.run_isp` without colour calibration or β (Menon demosaicing) and the sRGB
transfer curve. The scene pipeline instead balances on the whiteboard it captured.
"""

from __future__ import annotations

import numpy as np

from core.dng import RawMetadata
from postprocess.isp import camera_to_srgb_matrix, run_isp, srgb_encode

PLAIN_ISP = "plain ISP (AsShotNeutral white balance, ColorMatrix1, Menon demosaic)"
"""How :func:`develop_raw` develops, in words (a deblur job's result names it)."""


def as_shot_gains(meta: RawMetadata) -> np.ndarray:
    """White-balance gains (3,) float64 from AsShotNeutral: ``neutral[G] / neutral[c]``."""
    neutral = np.asarray(meta.as_shot_neutral, dtype=np.float64)
    return neutral[1] / neutral


def as_shot_ccm(meta: RawMetadata) -> np.ndarray:
    """The camera → linear-sRGB matrix (3×3) from ColorMatrix1; the identity without one."""
    if meta.color_matrix_1 is None:
        return np.eye(3)
    return camera_to_srgb_matrix(np.asarray(meta.color_matrix_1, dtype=np.float64))


def develop_raw(cfa: np.ndarray, meta: RawMetadata) -> np.ndarray:
    """The ``H×W`` CFA mosaic ``cfa`` (with its ``meta``) as ``H×W×3`` float32 sRGB in [0, 1]."""
    linear = run_isp(cfa, meta, None, as_shot_gains(meta), as_shot_ccm(meta))
    return np.clip(srgb_encode(np.clip(linear, 0.0, 1.0)), 0.0, 1.0).astype(np.float32)
