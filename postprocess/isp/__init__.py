"""The RAW → linear sRGB pipeline (ISP) and a fast Menon (2007) demosaicing.

:func:`run_isp` takes one (H, W) uint16 CFA frame with its metadata to (H, W, 3) float32
linear sRGB on the white range: black/white levels, colour correction α, β, Menon demosaicing,
white balance, the camera → sRGB matrix; :func:`encode_srgb` / :func:`srgb_encode` apply the
sRGB curve for display and export.

Modules: :mod:`~postprocess.isp.chain` (the chain, its steps and their constants),
:mod:`~postprocess.isp.menon` (:func:`demosaic_menon`, bit-identical to colour-demosaicing's
Menon 2007, as a numba row pipeline), :mod:`~postprocess.isp.errors` (the named errors).
"""

from __future__ import annotations

from postprocess.isp.chain import (
    MAX_CLIPPED_FRACTION,
    MIN_WHITEBOARD_LEVEL,
    SRGB_TO_XYZ,
    XYZ_TO_SRGB,
    camera_to_srgb_matrix,
    encode_srgb,
    normalise_raw,
    run_isp,
    srgb_encode,
    to_uint8,
    to_uint16,
    white_balance_gains,
)
from postprocess.isp.errors import IspError, WhiteboardSaturatedError, WhiteboardTooDarkError
from postprocess.isp.menon import demosaic_menon

__all__ = [
    "MAX_CLIPPED_FRACTION",
    "MIN_WHITEBOARD_LEVEL",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "IspError",
    "WhiteboardSaturatedError",
    "WhiteboardTooDarkError",
    "camera_to_srgb_matrix",
    "demosaic_menon",
    "encode_srgb",
    "normalise_raw",
    "run_isp",
    "srgb_encode",
    "to_uint8",
    "to_uint16",
    "white_balance_gains",
]
