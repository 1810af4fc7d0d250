"""The RAW → linear sRGB chain (ISP): levels, colour, white balance, the sRGB matrix and curve.

Chain (:func:`run_isp`), every step on one frame:

1. :func:`normalise_raw`: (DN − black) / (white − black) → float32, clipped to [0, 1];
2. colour correction α (:func:`postprocess.calibration.correct_colour`), then optionally the
   photometric gain β (:func:`postprocess.photometric.apply_beta`) on the CFA;
3. :func:`demosaic_menon`: DDFAPD, Menon, Andriani & Calvagno (2007);
4. white balance: per-channel gains from the scene's whiteboard (:func:`white_balance_gains`);
5. the camera → linear-sRGB matrix (:func:`camera_to_srgb_matrix`);
6. for display or export: :func:`srgb_encode` (IEC 61966-2-1 transfer curve), then
   :func:`to_uint8` / :func:`to_uint16`.

Demosaicing: :mod:`postprocess.isp.menon`.
"""

from __future__ import annotations

import numpy as np

from core import srgb
from core.dng import RawMetadata
from postprocess.calibration import ColourCalibration, FrameSizeMismatchError, correct_colour
from postprocess.isp.errors import IspError, WhiteboardSaturatedError, WhiteboardTooDarkError
from postprocess.isp.menon import demosaic_menon
from postprocess.photometric import apply_beta

XYZ_TO_SRGB = np.array(
    [
        [3.2404542, -1.5371385, -0.4985314],
        [-0.9692660, 1.8760108, 0.0415560],
        [0.0556434, -0.2040259, 1.0572252],
    ]
)
"""CIE XYZ (D65) → linear sRGB, IEC 61966-2-1."""
SRGB_TO_XYZ = np.linalg.inv(XYZ_TO_SRGB)
"""Linear sRGB → CIE XYZ (D65): the inverse of :data:`XYZ_TO_SRGB`."""

MAX_CLIPPED_FRACTION = 0.01
"""Largest fraction of whiteboard pixels at the clip level that white balance accepts."""
MIN_WHITEBOARD_LEVEL = 0.02
"""Smallest mean whiteboard level (fraction of the white range) in every channel."""


# --------------------------------------------------------------------------- levels


def normalise_raw(cfa_uint16: np.ndarray, black: float, white: float, clip: bool = True) -> np.ndarray:
    """(DN − black) / (white − black) as float32: (H, W), in [0, 1] when ``clip`` (the default).

    ``clip=False`` keeps the negative read noise below black and values above white, which
    unbiased means (calibration, β) prefer.
    """
    cfa = np.asarray(cfa_uint16)
    if cfa.ndim != 2:
        raise FrameSizeMismatchError(f"a CFA must be 2-D; got shape {cfa.shape}")
    black, white = float(black), float(white)
    if not white > black:
        raise IspError(f"white level ({white:g}) must exceed black level ({black:g})")
    out = cfa.astype(np.float32)
    out -= np.float32(black)
    out *= np.float32(1.0 / (white - black))
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


# --------------------------------------------------------------------------- colour


def white_balance_gains(
    whiteboard_rgb: np.ndarray,
    region: tuple[int, int, int, int] | np.ndarray | None = None,
    clip_level: float = 0.999,
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION,
    min_level: float = MIN_WHITEBOARD_LEVEL,
) -> np.ndarray:
    """Gains (3,) float64, green = 1, that make the whiteboard neutral: g_c = mean_G / mean_c.

    whiteboard_rgb: (H, W, 3) linear camera RGB of the board (demosaiced, colour-corrected,
    on the [0, 1] white range of :func:`normalise_raw`). region: (y0, y1, x0, x1) or an
    (H, W) bool mask of the board; default the central half of the frame in each direction.
    Colour correction scales clipped pixels by α, so pass ``clip_level`` scaled accordingly (or
    an RGB demosaiced before colour correction) if α < 1 anywhere on the board.
    A pixel is clipped when any channel reaches ``clip_level``; WhiteboardSaturatedError when
    more than ``max_clipped_fraction`` of the region is, WhiteboardTooDarkError when a
    channel's mean is below ``min_level``; both name the fraction or level found.
    """
    rgb = np.asarray(whiteboard_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FrameSizeMismatchError(f"whiteboard_rgb must be (H, W, 3); got {rgb.shape}")
    h, w = rgb.shape[:2]
    if region is None:
        pixels = rgb[h // 4 : h - h // 4, w // 4 : w - w // 4].reshape(-1, 3)
    elif isinstance(region, np.ndarray) and region.dtype == bool:
        if region.shape != (h, w):
            raise FrameSizeMismatchError(f"region mask {region.shape} does not match the image {(h, w)}")
        pixels = rgb[region]
    else:
        y0, y1, x0, x1 = (int(v) for v in region)
        pixels = rgb[y0:y1, x0:x1].reshape(-1, 3)
    if pixels.shape[0] == 0:
        raise IspError(f"the whiteboard region {region!r} holds no pixels")
    clipped = float(np.mean(np.any(pixels >= clip_level, axis=1)))
    if clipped > max_clipped_fraction:
        raise WhiteboardSaturatedError(
            f"{clipped:.2%} of the whiteboard pixels are clipped at {clip_level:g} "
            f"(at most {max_clipped_fraction:.2%} allowed): lower the exposure"
        )
    means = pixels.mean(axis=0, dtype=np.float64)
    if np.any(means < min_level):
        c = int(np.argmin(means))
        raise WhiteboardTooDarkError(
            f"the whiteboard's mean {'RGB'[c]} level is {means[c]:.2%} of the white range "
            f"(at least {min_level:.2%} needed)"
        )
    return means[1] / means


def camera_to_srgb_matrix(color_matrix_1_xyz_to_camera: np.ndarray) -> np.ndarray:
    """Camera RGB (white-balanced) → linear sRGB, 3×3 float64, from DNG ColorMatrix1.

    ColorMatrix1 C maps CIE XYZ (D65) to camera RGB, so A = C · SRGB_TO_XYZ maps linear sRGB
    to camera RGB. Normalisation: white balance divides camera channel c by A·1 (the camera
    response to sRGB white, up to a common factor), so the matrix applied after it is

        CCM = inv(A) · diag(A · 1),

    which maps the white-balanced neutral (1, 1, 1) to sRGB white (1, 1, 1) (its rows sum to
    1). It does not depend on the scale of C, which DNG leaves free.
    """
    c = np.asarray(color_matrix_1_xyz_to_camera, dtype=np.float64)
    if c.shape != (3, 3) or not np.all(np.isfinite(c)):
        raise IspError(f"ColorMatrix1 must be a finite 3×3 matrix; got shape {c.shape}")
    a = c @ SRGB_TO_XYZ
    if abs(np.linalg.det(a)) < 1e-12:
        raise IspError("ColorMatrix1 is singular: no camera → sRGB matrix")
    white = a @ np.ones(3)
    if np.any(white <= 0):
        raise IspError(f"ColorMatrix1 maps sRGB white to a non-positive camera response {white}")
    return np.linalg.inv(a) @ np.diag(white)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 transfer curve: linear [0, 1] → encoded [0, 1] (input clipped first);
    :func:`core.srgb.encode`. Same shape; float32."""
    return srgb.encode(linear)


def to_uint8(encoded: np.ndarray) -> np.ndarray:
    """[0, 1] → uint8 0..255, rounded (values outside are clipped); :func:`core.srgb.to_uint8`."""
    return srgb.to_uint8(encoded)


def to_uint16(encoded: np.ndarray) -> np.ndarray:
    """[0, 1] → uint16 0..65535, rounded (values outside are clipped)."""
    x = np.clip(np.asarray(encoded, dtype=np.float64), 0.0, 1.0)
    return np.rint(x * 65535.0).astype(np.uint16)


_SRGB8_LUT: np.ndarray | None = None


def encode_srgb(linear: np.ndarray, bits: int = 8) -> np.ndarray:
    """Linear sRGB (any shape, nominally [0, 1]; clipped) → sRGB-encoded uint8 or uint16.

    bits 16: :func:`srgb_encode` then :func:`to_uint16`. bits 8: the linear value is rounded to
    1/65535 and looked up in a 65536-entry table of the exact curve (≈ 8× faster than the
    power law; equal to ``to_uint8(srgb_encode(x))`` except, rarely, 1 code next to a
    rounding boundary).
    """
    global _SRGB8_LUT
    if bits == 16:
        return to_uint16(srgb_encode(linear))
    if bits != 8:
        raise IspError(f"output bits must be 8 or 16, got {bits}")
    if _SRGB8_LUT is None:
        x = np.arange(65536, dtype=np.float64) / 65535.0
        curve = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
        _SRGB8_LUT = np.rint(curve * 255.0).astype(np.uint8)
    x = np.asarray(linear, dtype=np.float32) * np.float32(65535.0)
    np.add(x, np.float32(0.5), out=x)
    np.clip(x, 0.0, 65535.0, out=x)
    return _SRGB8_LUT[x.astype(np.uint16)]


def run_isp(
    cfa_uint16: np.ndarray,
    meta: RawMetadata,
    calibration: ColourCalibration | None,
    wb_gains: np.ndarray,
    ccm: np.ndarray,
    beta: np.ndarray | None = None,
) -> np.ndarray:
    """RAW → linear sRGB: black/white → α (if ``calibration``) → β (if given) → Menon → WB → CCM.

    cfa_uint16: (H, W) DN; meta: its RawMetadata (cfa_pattern, black_level, white_level).
    wb_gains: (3,) from :func:`white_balance_gains`; ccm: 3×3 from :func:`camera_to_srgb_matrix`.
    Returns (H, W, 3) float32 linear sRGB on the white range (1.0 = the white level), not
    clipped, so that highlights above sRGB white survive until :func:`srgb_encode`.
    """
    pattern = meta.cfa_pattern
    cfa = normalise_raw(cfa_uint16, meta.black_level, meta.white_level)
    if calibration is not None:
        cfa = correct_colour(cfa, calibration, pattern)
    if beta is not None:
        cfa = apply_beta(cfa, beta, pattern)
    rgb = demosaic_menon(cfa, pattern)
    gains = np.asarray(wb_gains, dtype=np.float64).reshape(-1)
    if gains.shape != (3,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise IspError(f"wb_gains must be 3 finite positive gains; got {gains}")
    matrix = np.asarray(ccm, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise IspError(f"ccm must be 3×3; got shape {matrix.shape}")
    combined = matrix @ np.diag(gains)  # WB then CCM in one product
    h, w = rgb.shape[:2]
    out = rgb.reshape(-1, 3) @ combined.T
    return out.reshape(h, w, 3).astype(np.float32)
