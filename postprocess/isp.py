"""The RAW → linear sRGB pipeline (ISP) and a fast Menon (2007) demosaicing.

Chain (:func:`run_isp`), every step on one frame:

1. :func:`normalise_raw`: (DN − black) / (white − black) → float32, clipped to [0, 1];
2. colour correction α (:func:`postprocess.calibration.correct_colour`), then optionally the
   photometric gain β (:func:`postprocess.photometric.apply_beta`) on the CFA;
3. :func:`demosaic_menon`: DDFAPD, Menon, Andriani & Calvagno (2007);
4. white balance: per-channel gains from the scene's whiteboard (:func:`white_balance_gains`);
5. the camera → linear-sRGB matrix (:func:`camera_to_srgb_matrix`);
6. for display or export: :func:`srgb_encode` (IEC 61966-2-1 transfer curve), then
   :func:`to_uint8` / :func:`to_uint16`.

Demosaicing. ``colour_demosaicing.demosaicing_CFA_Bayer_Menon2007`` (colour-demosaicing
0.2.x) is the reference: :func:`demosaic_menon` reproduces it operation for operation in
float64, in the same order of floating-point operations (scipy's ``convolve1d`` on symmetric
kernels computes ``x[0]·w[0] + (x[-1] + x[1])·w[1]``; ``convolve`` with the decision kernel
accumulates the flipped kernel's non-zero taps in raster order from 0.0), with the same
boundary handling (``mode="mirror"`` for the 1-D filters, zeros outside for the 2-D decision
sums, ``np.pad(mode="reflect")`` for the colour-difference gradients) and the refining step
on by default, as in the reference. The result is bit-identical to the reference on the
tests' random and twin data, all four Bayer patterns, with and without refining.

Speed comes from a row pipeline compiled with numba: the image is cut into horizontal bands
(run in parallel); within a band each of the algorithm's eight stages runs one row behind
the stage it depends on, holding its rows in small ring buffers (8 rows × (W + 4) columns,
mirror-padded by two columns), so the intermediates stay in cache and the frame is read and
the output written once. A band recomputes the 6 rows of context above it. Loops step over
one CFA phase at a time (scalar float64 code: no fast-math, so LLVM keeps IEEE order). A
unit-stride variant that computes both phases and selects, which LLVM vectorises with
AVX-512, was measured slower on the 2-core development machine and dropped. The first call
in a fresh checkout compiles (≈10 s on 2 cores); numba caches the result in __pycache__.
"""

from __future__ import annotations

import numba
import numpy as np

from core import srgb
from core.dng import RawMetadata, cfa_index_map
from postprocess.calibration import (
    CalibrationError,
    ColourCalibration,
    FrameSizeMismatchError,
    correct_colour,
)
from postprocess.photometric import apply_beta

__all__ = [
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "IspError",
    "WhiteboardSaturatedError",
    "WhiteboardTooDarkError",
    "camera_to_srgb_matrix",
    "demosaic_menon",
    "normalise_raw",
    "run_isp",
    "srgb_encode",
    "to_uint8",
    "to_uint16",
    "white_balance_gains",
]

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


class IspError(CalibrationError):
    """Base class of the ISP's own errors."""


class WhiteboardSaturatedError(IspError):
    """Too many whiteboard pixels are clipped: the gains would be biased."""


class WhiteboardTooDarkError(IspError):
    """The whiteboard signal is too low for reliable gains."""


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


# --------------------------------------------------------------------------- Menon (2007)

_HALO = 6  # rows of context a band recomputes above its first output row
_LAG = 8  # rows between the first and the last stage of the row pipeline
_THIRD = 1.0 / 3.0  # scipy's FIR taps: np.ones(3) / 3
_ZERO = 8  # ring slot kept at zero: rows outside the image in the decision sums
_ROWS_PER_BAND = 96


def _mirror_index(idx: np.ndarray, n: int) -> np.ndarray:
    """scipy's 'mirror' extension (d c b | a b c d | c b a) of integer indices, any n >= 1."""
    idx = np.asarray(idx, np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


@numba.njit(cache=True, inline="always")
def _pads(row, src):
    """Mirror padding of one ring row (2 columns each side): row[p] = row[src[p]]."""
    w4 = row.shape[0]
    row[0] = row[src[0]]
    row[1] = row[src[1]]
    row[w4 - 2] = row[src[2]]
    row[w4 - 1] = row[src[3]]


@numba.njit(cache=True)
def _band(cfa, cmap, yi, src, refine, b0, b1, rings, dring, mring, out):
    """Run the row pipeline over the output rows [b0, b1). cfa: (H, W + 4) mirror-padded."""
    h = cfa.shape[0]
    w = cfa.shape[1] - 4
    gh, gv, g, r, b, g2, r2, b2 = (rings[0], rings[1], rings[2], rings[3], rings[4],
                                   rings[5], rings[6], rings[7])
    dh, dv = dring[0], dring[1]
    m = mring
    t = _THIRD
    s0 = max(b0 - _HALO, 0)
    last = _LAG if refine else 6
    for k in range(s0, b1 + last):
        # ---- S0, row k: G_H and G_V at the non-green sites
        i = k
        if i < h:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            s = i & 7
            c = cfa[i]
            u2, u1, d1, d2 = cfa[yi[0, i]], cfa[yi[1, i]], cfa[yi[3, i]], cfa[yi[4, i]]
            for q in range(jn + 2, w + 2, 2):
                x = c[q]
                gh[s, q] = (c[q - 1] + c[q + 1]) * 0.5 + (x * 0.5 + (c[q - 2] + c[q + 2]) * -0.25)
                gv[s, q] = (u1[q] + d1[q]) * 0.5 + (x * 0.5 + (u2[q] + d2[q]) * -0.25)
            _pads(gh[s], src)
            _pads(gv[s], src)
        # ---- S1, row k-2: D_H, D_V at the non-green sites
        i = k - 2
        if s0 <= i < h:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            s = i & 7
            ip2 = yi[4, i]
            sp2 = ip2 & 7
            c = cfa[i]
            c2 = cfa[ip2]
            for q in range(jn + 2, w + 2, 2):
                x = c[q]
                dh[s, q] = abs((x - gh[s, q]) - (c[q + 2] - gh[s, q + 2]))
                dv[s, q] = abs((x - gv[s, q]) - (c2[q] - gv[sp2, q]))
        # ---- S2, row k-4: the decision M and the green plane
        i = k - 4
        if s0 <= i < h:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            s = i & 7
            a2 = (i - 2) & 7 if i >= 2 else _ZERO
            a1 = (i - 1) & 7 if i >= 1 else _ZERO
            e1 = (i + 1) & 7 if i + 1 < h else _ZERO
            e2 = (i + 2) & 7 if i + 2 < h else _ZERO
            c = cfa[i]
            for q in range(3 - jn, w + 2, 2):
                g[s, q] = c[q]
            for q in range(jn + 2, w + 2, 2):
                # scipy convolve(mode="constant"): flipped kernel, raster order, zeros outside
                sh = dh[a2, q - 2] + dh[a2, q]
                sh += dh[a1, q - 1]
                sh += dh[s, q - 2] * 3.0
                sh += dh[s, q] * 3.0
                sh += dh[e1, q - 1]
                sh += dh[e2, q - 2]
                sh += dh[e2, q]
                sv = dv[a2, q - 2] + dv[a2, q] * 3.0
                sv += dv[a2, q + 2]
                sv += dv[a1, q - 1]
                sv += dv[a1, q + 1]
                sv += dv[s, q - 2]
                sv += dv[s, q] * 3.0
                sv += dv[s, q + 2]
                hor = sv >= sh
                m[s, q] = hor
                g[s, q] = gh[s, q] if hor else gv[s, q]
            _pads(g[s], src)
        # ---- S3, row k-5: R and B at the green sites, the CFA at the row's own sites
        i = k - 5
        if s0 <= i < h:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            red_row = cmap[pi, jn] == 0
            s = i & 7
            im, ip = yi[1, i], yi[3, i]
            sm, sp = im & 7, ip & 7
            c, cu, cd = cfa[i], cfa[im], cfa[ip]
            own, hrow, vrow = (r, r, b) if red_row else (b, b, r)
            for q in range(jn + 2, w + 2, 2):
                own[s, q] = c[q]
            for q in range(3 - jn, w + 2, 2):
                x = c[q]
                hrow[s, q] = (x + (c[q - 1] + c[q + 1]) * 0.5) - (g[s, q - 1] + g[s, q + 1]) * 0.5
                vrow[s, q] = (x + (cu[q] + cd[q]) * 0.5) - (g[sm, q] + g[sp, q]) * 0.5
            _pads(r[s], src)
            _pads(b[s], src)
        # ---- S4, row k-6: R at the blue sites, B at the red sites
        i = k - 6
        if s0 <= i < h:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            red_row = cmap[pi, jn] == 0
            s = i & 7
            im, ip = yi[1, i], yi[3, i]
            sm, sp = im & 7, ip & 7
            kn, fl = (r, b) if red_row else (b, r)  # known colour at the site, colour to fill
            for q in range(jn + 2, w + 2, 2):
                x = kn[s, q]
                hor = (x + (fl[s, q - 1] + fl[s, q + 1]) * 0.5) - (kn[s, q - 1] + kn[s, q + 1]) * 0.5
                ver = (x + (fl[sm, q] + fl[sp, q]) * 0.5) - (kn[sm, q] + kn[sp, q]) * 0.5
                fl[s, q] = hor if m[s, q] else ver
            _pads(r[s], src)
            _pads(b[s], src)
            if not refine and b0 <= i < b1:
                for j in range(w):
                    out[i, j, 0] = r[s, j + 2]
                    out[i, j, 1] = g[s, j + 2]
                    out[i, j, 2] = b[s, j + 2]
            if refine:
                # ---- S5, row k-6: refined green at the red and blue sites
                for q in range(3 - jn, w + 2, 2):
                    g2[s, q] = g[s, q]
                for q in range(jn + 2, w + 2, 2):
                    v = kn[s, q]
                    d0 = v - g[s, q]
                    hor = d0 * t + ((kn[s, q - 1] - g[s, q - 1]) + (kn[s, q + 1] - g[s, q + 1])) * t
                    ver = d0 * t + ((kn[sm, q] - g[sm, q]) + (kn[sp, q] - g[sp, q])) * t
                    g2[s, q] = v - (hor if m[s, q] else ver)
                _pads(g2[s], src)
        if not refine:
            continue
        # ---- S6, row k-7: refined R and B at the green sites
        i = k - 7
        if s0 <= i < h:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            red_row = cmap[pi, jn] == 0
            s = i & 7
            im, ip = yi[1, i], yi[3, i]
            sm, sp = im & 7, ip & 7
            hx, vx, ho, vo = (r, b, r2, b2) if red_row else (b, r, b2, r2)
            for q in range(3 - jn, w + 2, 2):
                v = g2[s, q]
                ho[s, q] = v + ((hx[s, q - 1] - g2[s, q - 1]) + (hx[s, q + 1] - g2[s, q + 1])) * 0.5
                vo[s, q] = v + ((vx[sm, q] - g2[sm, q]) + (vx[sp, q] - g2[sp, q])) * 0.5
            _pads(r2[s], src)
            _pads(b2[s], src)
        # ---- S7, row k-8: refined R at blue / B at red sites; the output row
        i = k - 8
        if b0 <= i < b1:
            pi = i & 1
            jn = 1 if cmap[pi, 0] == 1 else 0
            red_row = cmap[pi, jn] == 0
            s = i & 7
            im, ip = yi[1, i], yi[3, i]
            sm, sp = im & 7, ip & 7
            o = out[i]
            for q in range(3 - jn, w + 2, 2):
                o[q - 2, 0] = r2[s, q]
                o[q - 2, 1] = g2[s, q]
                o[q - 2, 2] = b2[s, q]
            for q in range(jn + 2, w + 2, 2):
                rv = r[s, q]
                bv = b[s, q]
                d0 = rv - bv
                hor = d0 * t + ((r2[s, q - 1] - b2[s, q - 1]) + (r2[s, q + 1] - b2[s, q + 1])) * t
                ver = d0 * t + ((r2[sm, q] - b2[sm, q]) + (r2[sp, q] - b2[sp, q])) * t
                f = hor if m[s, q] else ver
                if red_row:
                    bv = rv - f
                else:
                    rv = bv + f
                o[q - 2, 0] = rv
                o[q - 2, 1] = g2[s, q]
                o[q - 2, 2] = bv


@numba.njit(parallel=True, cache=True)
def _menon_bands(cfa, cmap, yi, src, refine, bounds, out):
    w4 = cfa.shape[1]
    nb = bounds.shape[0] - 1
    rings = np.empty((nb, 8, 8, w4))
    drings = np.zeros((nb, 2, 9, w4))
    mrings = np.zeros((nb, 8, w4), np.bool_)
    for band in numba.prange(nb):
        _band(cfa, cmap, yi, src, refine, bounds[band], bounds[band + 1], rings[band],
              drings[band], mrings[band], out)



def demosaic_menon(
    cfa01: np.ndarray, pattern: str, refining_step: bool = True, dtype: type = np.float64
) -> np.ndarray:
    """Menon (2007) DDFAPD demosaicing, equal to colour-demosaicing's (see the module doc).

    cfa01: (H, W) float CFA, H, W >= 2 (typically :func:`normalise_raw` output in [0, 1]; any
    finite values work, nothing is clipped). pattern: 'RGGB' | 'BGGR' | 'GRBG' | 'GBRG'
    (UnknownCfaPatternError otherwise). refining_step: the reference's default, True.
    dtype: of the output; the arithmetic is float64 either way (float32 output rounds the
    float64 result, ≤ 6e-8 relative, at the cost of one conversion pass).
    Returns (H, W, 3) linear RGB in the camera's space, channels R, G, B.
    """
    cfa = np.asarray(cfa01)
    if cfa.ndim != 2 or min(cfa.shape) < 2:
        raise FrameSizeMismatchError(f"demosaic_menon needs a 2-D CFA of at least 2×2; got {cfa.shape}")
    if cfa.dtype.kind not in "fiu":
        raise IspError(f"demosaic_menon needs a real-valued CFA; got dtype {cfa.dtype}")
    cmap = cfa_index_map(pattern)
    h, w = cfa.shape
    cols = _mirror_index(np.arange(-2, w + 2), w)
    padded = np.empty((h, w + 4), np.float64)  # float64 like the reference, 2 mirror columns
    padded[:, 2 : w + 2] = cfa
    edge = np.array([0, 1, w + 2, w + 3])
    padded[:, edge] = cfa[:, cols[edge]]
    yi = np.stack([_mirror_index(np.arange(h) + k - 2, h) for k in range(5)])
    src = _mirror_index(np.array([-2, -1, w, w + 1]), w) + 2
    n_bands = int(min(max(h // _ROWS_PER_BAND, 1), 64))
    bounds = np.linspace(0, h, n_bands + 1).astype(np.int64)
    out = np.empty((h, w, 3), dtype=np.float64)  # one compiled specialisation only
    _menon_bands(padded, cmap, yi, src, bool(refining_step), bounds, out)
    return out.astype(dtype, copy=False)


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
