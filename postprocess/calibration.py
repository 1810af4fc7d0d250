"""Per-camera colour calibration on Bayer RAW (the paper's Eq. 3–5).

Each camera behind the beam splitter sees a location-dependent colour cast. It is corrected per
CFA colour channel c ∈ {R, G, B} (the two green sites share one fit) by

    P'(x, y) = α_c(x, y) · P(x, y)                                                     (Eq. 3)

with α_c the 10-term cubic of :mod:`core.polynomial` in normalised coordinates (Eq. 4–5).

Calibration (:func:`fit_colour_calibration`) takes one RAW of a uniform 6500 K lightbox:

1. black level subtracted, scaled to [0, 1] by the white level (float64);
2. split into ``patches = (K_rows, K_cols)`` rectangular patches; per patch k and channel c, the
   mean of the c sites and the centroid of their normalised coordinates;
3. α_k,c = mean(central patch, c) / mean(patch k, c), and a0..a9 by least squares over the K
   patches (the paper's method);
4. ``refinements`` extra passes (default 2): correct the lightbox with the current α, measure
   the corrected patch means again and refit α_k,c ← α(centroid)·mean(central)/mean(patch k).
   A patch mean is the mean of 1/α over the patch, not 1/α at its centroid; these passes remove
   that curvature bias (≈0.1 % with 9×13 patches on the twin's casts), so that the corrected
   lightbox is flat to the noise level.

Scale. Each fit is scaled so that α = 1 exactly at the central patch's centroid (the image
centre for the default grid), i.e. the *smooth fit* is pinned there, not the single central
patch mean: the fit averages all K patches, so its scale carries far less noise (on the
twin at 512×342 pinning the patch mean left α's scale off by up to 0.15 %, and it drifted
further with each refinement; that scale error enters β directly). Absolute brightness
differences between the cameras are left to β (:mod:`postprocess.photometric`).

A :class:`ColourCalibration` stores the coefficients (3, 10) (rows R, G, B; columns in
``core.polynomial.MONOMIALS`` order), the residuals, the patch grid, the frame size and a
content hash ``calibration_id``. Storing one per camera, and superseding rather than
overwriting an older one, is the caller's job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import polynomial
from core.dng import cfa_index_map
from core.errors import UserError

__all__ = [
    "CalibrationError",
    "CalibrationFormatError",
    "ColourCalibration",
    "FrameSizeMismatchError",
    "LightboxSaturatedError",
    "LightboxTooDarkError",
    "PatchGridError",
    "cast_map",
    "cast_spread",
    "correct_colour",
    "fit_colour_calibration",
    "patch_statistics",
    "residual_cast",
]

CHANNELS = ("R", "G", "B")
FORMAT_VERSION = 1
DEFAULT_PATCHES = (9, 13)
MAX_SATURATED_FRACTION = 1e-3
"""Largest fraction of lightbox pixels at the white level that calibration accepts."""
MIN_LEVEL = 0.05
"""Smallest mean signal (fraction of white − black) of every channel in the central patch."""


class CalibrationError(UserError, ValueError):
    """Base class of the errors raised by :mod:`postprocess.calibration`."""


class LightboxSaturatedError(CalibrationError):
    """Too many lightbox pixels read the white level: the fit would see a clipped field."""


class LightboxTooDarkError(CalibrationError):
    """The lightbox signal is too low for a reliable fit."""


class PatchGridError(CalibrationError):
    """The patch grid does not fit the frame (too many patches, bad central patch)."""


class FrameSizeMismatchError(CalibrationError):
    """Two arrays that must have the same shape do not (or a frame is not a 2-D CFA)."""


class CalibrationFormatError(CalibrationError):
    """A stored calibration dictionary is malformed or its ``calibration_id`` does not match."""


# --------------------------------------------------------------------------- helpers


def _check_cfa(cfa: np.ndarray, name: str = "cfa", min_size: int = 4) -> np.ndarray:
    cfa = np.asarray(cfa)
    if cfa.ndim != 2 or min(cfa.shape) < min_size:
        raise FrameSizeMismatchError(
            f"{name} must be a 2-D Bayer mosaic of at least {min_size}×{min_size} pixels; "
            f"got shape {cfa.shape}"
        )
    return cfa


def _patch_edges(n: int, k: int) -> np.ndarray:
    """k + 1 even-aligned patch edges over n pixels (each patch holds whole 2×2 tiles)."""
    edges = np.round(np.linspace(0, n, k + 1) / 2.0).astype(np.int64) * 2
    edges[-1] = n
    return edges


def _check_grid(shape: tuple[int, int], patches: tuple[int, int],
                central: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        rows, cols = (int(p) for p in patches)
    except (TypeError, ValueError):
        raise PatchGridError(f"patches must be (K_rows, K_cols), got {patches!r}") from None
    h, w = shape
    if rows < 1 or cols < 1 or rows * cols < polynomial.N_TERMS:
        raise PatchGridError(
            f"patches {patches!r}: need K_rows, K_cols >= 1 and at least {polynomial.N_TERMS} "
            "patches for the 10-term polynomial"
        )
    if 4 * rows > h or 4 * cols > w:
        raise PatchGridError(
            f"patches {patches!r} too fine for a {h}×{w} frame: each patch needs >= 4×4 pixels"
        )
    if central is None:
        central = (rows // 2, cols // 2)
    cr, cc = (int(c) for c in central)
    if not (0 <= cr < rows and 0 <= cc < cols):
        raise PatchGridError(f"central patch {central!r} outside the {rows}×{cols} grid")
    return (rows, cols), (cr, cc)


def patch_statistics(
    cfa: np.ndarray, pattern: str, patches: tuple[int, int] = DEFAULT_PATCHES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-patch, per-channel means of a CFA and the centroids of the sites averaged.

    cfa: (H, W) float (black-subtracted signal, any scale). pattern: a ``core.dng`` CFA
    pattern. patches: (K_rows, K_cols).
    Returns ``means`` (3, K_rows, K_cols) float64 and the normalised centroid coordinates
    ``xn``, ``yn`` (3, K_rows, K_cols) float64 in [-1, 1], channel order R, G, B.
    """
    cfa = _check_cfa(cfa)
    tile = cfa_index_map(pattern)
    (rows, cols), _ = _check_grid(cfa.shape, patches, None)
    h, w = cfa.shape
    ye, xe = _patch_edges(h, rows), _patch_edges(w, cols)
    means = np.zeros((3, rows, cols))
    xn = np.zeros((3, rows, cols))
    yn = np.zeros((3, rows, cols))
    counts = np.zeros((3, rows, cols))
    data = np.asarray(cfa, dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            c = int(tile[dy, dx])
            site = data[dy::2, dx::2]
            # Row/column sums per patch of this phase (patch edges are even, so each patch
            # holds the sites with y in [ye[a], ye[a+1]) at indices [ye[a]/2, ye[a+1]/2)).
            sums = np.add.reduceat(np.add.reduceat(site, ye[:-1] // 2, axis=0), xe[:-1] // 2, axis=1)
            ny = np.diff((ye + 1 - dy) // 2)  # number of phase rows y ≡ dy (mod 2) per patch
            nx = np.diff((xe + 1 - dx) // 2)
            ys = np.arange(dy, h, 2, dtype=np.float64)
            xs = np.arange(dx, w, 2, dtype=np.float64)
            ysum = np.add.reduceat(ys, ye[:-1] // 2)
            xsum = np.add.reduceat(xs, xe[:-1] // 2)
            n = np.outer(ny, nx)
            means[c] += sums
            counts[c] += n
            yn[c] += np.outer(ysum, nx)
            xn[c] += np.outer(ny, xsum)
    means /= counts
    xn, yn = polynomial.normalise_coords(xn / counts, yn / counts, h, w)
    return means, xn, yn


def cast_spread(
    cfa: np.ndarray,
    pattern: str,
    patches: tuple[int, int] = DEFAULT_PATCHES,
    central: tuple[int, int] | None = None,
) -> float:
    """The colour-cast statistic: max over patches and channels of |patch mean / central mean − 1|.

    cfa: (H, W) black-subtracted float CFA of a uniform field (e.g. the lightbox after
    :func:`correct_colour`). Returns a fraction (0.005 = 0.5 %).
    """
    return float(np.max(np.abs(cast_map(cfa, pattern, patches, central))))


def cast_map(
    cfa: np.ndarray,
    pattern: str,
    patches: tuple[int, int] = DEFAULT_PATCHES,
    central: tuple[int, int] | None = None,
) -> np.ndarray:
    """Per patch and channel, patch mean / central patch mean − 1: (3, K_rows, K_cols) float64,
    channels R, G, B, fractions (0.005 = 0.5 %). Of a corrected lightbox, the residual cast;
    :func:`cast_spread` is its largest magnitude."""
    cfa = _check_cfa(cfa)
    _, (cr, cc) = _check_grid(cfa.shape, patches, central)
    means, _, _ = patch_statistics(cfa, pattern, patches)
    return means / means[:, cr, cc][:, None, None] - 1.0


def residual_cast(lightbox_cfa_float: np.ndarray, calibration: ColourCalibration) -> np.ndarray:
    """The cast left on the calibration's own lightbox after :func:`correct_colour`, on the
    calibration's patch grid: (3, K_rows, K_cols) fractions (see :func:`cast_map`)."""
    corrected = correct_colour(lightbox_cfa_float, calibration, calibration.pattern)
    return cast_map(corrected, calibration.pattern, calibration.patches, calibration.central)


# --------------------------------------------------------------------------- the calibration


@dataclass(frozen=True)
class ColourCalibration:
    """One camera's colour correction α (Eq. 3–5).

    coefficients: (3, 10) float64, rows R, G, B; columns in ``MONOMIALS`` order.
    residual_rms, residual_max: (3,) RMS and max |α_k − α(centroid_k)| of the final fit over
        the patches (dimensionless, α ≈ 1).
    patches, central: the patch grid (K_rows, K_cols) and the central patch (row, col).
    height, width: the frame size calibrated (α is in normalised coordinates; a frame of
        another size is refused by :func:`correct_colour`).
    pattern, black_level, white_level: of the lightbox RAW.
    mean_level: (3,) mean signal of the central patch per channel, fraction of white − black.
    saturated_fraction: fraction of lightbox pixels at the white level.
    refinements: the refinement passes run after the paper's fit.
    calibration_id: sha256 (hex) of the canonical JSON of every other field.
    """

    coefficients: np.ndarray
    residual_rms: np.ndarray
    residual_max: np.ndarray
    patches: tuple[int, int]
    central: tuple[int, int]
    height: int
    width: int
    pattern: str
    black_level: float
    white_level: float
    mean_level: np.ndarray
    saturated_fraction: float
    refinements: int
    calibration_id: str = ""

    def __post_init__(self) -> None:
        coefficients = np.asarray(self.coefficients, dtype=np.float64)
        if coefficients.shape != (3, polynomial.N_TERMS) or not np.all(np.isfinite(coefficients)):
            raise CalibrationFormatError(
                f"coefficients must be a finite (3, {polynomial.N_TERMS}) array; "
                f"got shape {coefficients.shape}"
            )
        cfa_index_map(self.pattern)  # UnknownCfaPatternError on a bad pattern
        object.__setattr__(self, "coefficients", coefficients)
        for name in ("residual_rms", "residual_max", "mean_level"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(3))
        object.__setattr__(self, "patches", tuple(int(p) for p in self.patches))
        object.__setattr__(self, "central", tuple(int(p) for p in self.central))
        digest = hashlib.sha256(_canonical(self._content()).encode("ascii")).hexdigest()
        if self.calibration_id and self.calibration_id != digest:
            raise CalibrationFormatError(
                f"calibration_id {self.calibration_id!r} does not match the content ({digest})"
            )
        object.__setattr__(self, "calibration_id", digest)

    def _content(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "channels": list(CHANNELS),
            "monomials": list(polynomial.MONOMIALS),
            "coefficients": [[float(v) for v in row] for row in self.coefficients],
            "residual_rms": [float(v) for v in self.residual_rms],
            "residual_max": [float(v) for v in self.residual_max],
            "patches": list(self.patches),
            "central": list(self.central),
            "height": int(self.height),
            "width": int(self.width),
            "pattern": self.pattern,
            "black_level": float(self.black_level),
            "white_level": float(self.white_level),
            "mean_level": [float(v) for v in self.mean_level],
            "saturated_fraction": float(self.saturated_fraction),
            "refinements": int(self.refinements),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (lists, floats, ints, strings) including ``calibration_id``."""
        return {**self._content(), "calibration_id": self.calibration_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColourCalibration:
        """Inverse of :meth:`to_dict`; CalibrationFormatError when malformed or tampered with."""
        try:
            if data["format"] != FORMAT_VERSION:
                raise CalibrationFormatError(
                    f"unsupported calibration format {data['format']!r} (expected {FORMAT_VERSION})"
                )
            if list(data["monomials"]) != list(polynomial.MONOMIALS):
                raise CalibrationFormatError(f"unexpected monomial order {data['monomials']!r}")
            return cls(
                coefficients=np.asarray(data["coefficients"], dtype=np.float64),
                residual_rms=data["residual_rms"],
                residual_max=data["residual_max"],
                patches=tuple(data["patches"]),
                central=tuple(data["central"]),
                height=int(data["height"]),
                width=int(data["width"]),
                pattern=data["pattern"],
                black_level=float(data["black_level"]),
                white_level=float(data["white_level"]),
                mean_level=data["mean_level"],
                saturated_fraction=float(data["saturated_fraction"]),
                refinements=int(data["refinements"]),
                calibration_id=str(data["calibration_id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationFormatError(f"malformed calibration dictionary: {exc!r}") from exc

    def alpha(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """α of every channel at every pixel: (3, H, W) float32 (default: the calibrated size)."""
        return polynomial.evaluate_grid(self.coefficients, height or self.height, width or self.width)


def _canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _fit_channels(
    targets: np.ndarray, xn: np.ndarray, yn: np.ndarray, central: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares α per channel, scaled to 1 at the central patch's centroid."""
    coefficients = np.zeros((3, polynomial.N_TERMS))
    rms = np.zeros(3)
    worst = np.zeros(3)
    cr, cc = central
    for c in range(3):
        coefficients[c], _ = polynomial.fit(xn[c], yn[c], targets[c])
        coefficients[c] /= polynomial.evaluate(coefficients[c], xn[c, cr, cc], yn[c, cr, cc])
        residual = polynomial.evaluate(coefficients[c], xn[c], yn[c]) - targets[c]
        rms[c] = np.sqrt(np.mean(residual**2))
        worst[c] = np.max(np.abs(residual))
    return coefficients, rms, worst


def fit_colour_calibration(
    lightbox_cfa: np.ndarray,
    pattern: str,
    black_level: float,
    white_level: float,
    patches: tuple[int, int] = DEFAULT_PATCHES,
    central: tuple[int, int] | None = None,
    refinements: int = 2,
    max_saturated_fraction: float = MAX_SATURATED_FRACTION,
    min_level: float = MIN_LEVEL,
) -> ColourCalibration:
    """Fit α per CFA colour channel from a RAW of a uniform 6500 K lightbox (see the module doc).

    lightbox_cfa: (H, W) raw DN (uint16 or float), black level included.
    pattern: 'RGGB' | 'BGGR' | 'GRBG' | 'GBRG' (UnknownCfaPatternError otherwise).
    black_level, white_level: DN, black < white.
    patches: (K_rows, K_cols) grid, at least 10 patches, each >= 4×4 pixels (PatchGridError).
    central: the reference patch (row, col); default the middle one.
    refinements: extra fit passes on the corrected lightbox (0 = the paper's single fit).
    Raises LightboxSaturatedError when more than ``max_saturated_fraction`` of the pixels read
    the white level, LightboxTooDarkError when a channel's central mean is below ``min_level``
    of (white − black); both name the fraction or level found.
    """
    cfa = _check_cfa(lightbox_cfa, "lightbox_cfa")
    cfa_index_map(pattern)
    if not float(white_level) > float(black_level):
        raise CalibrationError(f"white_level ({white_level}) must exceed black_level ({black_level})")
    grid, (cr, cc) = _check_grid(cfa.shape, patches, central)
    if refinements < 0:
        raise CalibrationError(f"refinements must be >= 0, got {refinements}")
    saturated = float(np.count_nonzero(cfa >= white_level)) / cfa.size
    if saturated > max_saturated_fraction:
        raise LightboxSaturatedError(
            f"{saturated:.2%} of the lightbox pixels read the white level {white_level:g} "
            f"(at most {max_saturated_fraction:.2%} allowed): lower the exposure or the lightbox"
        )
    signal = (np.asarray(cfa, dtype=np.float64) - float(black_level)) / (float(white_level) - float(black_level))
    means, xn, yn = patch_statistics(signal, pattern, grid)
    level = means[:, cr, cc]
    if np.any(level < min_level):
        worst = int(np.argmin(level))
        raise LightboxTooDarkError(
            f"the lightbox's central {CHANNELS[worst]} level is {level[worst]:.2%} of the white "
            f"range (at least {min_level:.2%} needed): raise the exposure or the lightbox"
        )
    targets = level[:, None, None] / means
    coefficients, rms, worst = _fit_channels(targets, xn, yn, (cr, cc))
    h, w = cfa.shape
    for _ in range(refinements):
        corrected = correct_colour(signal, coefficients, pattern)
        cmeans, _, _ = patch_statistics(corrected, pattern, grid)
        current = np.stack([polynomial.evaluate(coefficients[c], xn[c], yn[c]) for c in range(3)])
        targets = current * cmeans[:, cr, cc][:, None, None] / cmeans
        coefficients, rms, worst = _fit_channels(targets, xn, yn, (cr, cc))
    return ColourCalibration(
        coefficients=coefficients,
        residual_rms=rms,
        residual_max=worst,
        patches=grid,
        central=(cr, cc),
        height=h,
        width=w,
        pattern=pattern,
        black_level=float(black_level),
        white_level=float(white_level),
        mean_level=level,
        saturated_fraction=saturated,
        refinements=int(refinements),
    )


def correct_colour(
    cfa_float: np.ndarray, calibration: ColourCalibration | np.ndarray, pattern: str
) -> np.ndarray:
    """Eq. 3 on a CFA: P' = α_c(x, y)·P at every site of colour c.

    cfa_float: (H, W) black-subtracted float CFA (e.g. :func:`postprocess.isp.normalise_raw`).
    calibration: a :class:`ColourCalibration` (whose frame size must equal H×W:
    FrameSizeMismatchError otherwise) or raw coefficients (3, 10).
    Returns (H, W) float32.
    """
    cfa = _check_cfa(cfa_float, "cfa_float", min_size=2)
    tile = cfa_index_map(pattern)
    h, w = cfa.shape
    if isinstance(calibration, ColourCalibration):
        if (calibration.height, calibration.width) != (h, w):
            raise FrameSizeMismatchError(
                f"the calibration {calibration.calibration_id[:12]} is for "
                f"{calibration.height}×{calibration.width} frames; got a {h}×{w} CFA"
            )
        coefficients = calibration.coefficients
    else:
        coefficients = np.asarray(calibration, dtype=np.float64)
        if coefficients.shape != (3, polynomial.N_TERMS):
            raise CalibrationFormatError(f"coefficients must be (3, 10); got {coefficients.shape}")
    alpha = polynomial.evaluate_grid(coefficients, h, w)
    out = np.empty((h, w), np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            c = int(tile[dy, dx])
            np.multiply(cfa[dy::2, dx::2], alpha[c, dy::2, dx::2], out=out[dy::2, dx::2],
                        casting="unsafe")
    return out
