"""Evaluation metrics as released with ReLoBlur / LBAG: PSNR, SSIM, PSNRw, SSIMw, PSNRa.

Inputs are numpy arrays ``H×W×3`` (RGB) or ``H×W`` (gray): floats in [0, 1] or ``uint8``
(divided by 255). Masks are ``H×W`` (or ``H×W×1``/``H×W×C``, reduced with "any" over the last
axis), binarised as ``mask > 0``. All metrics are computed in float64.

- PSNR = ``10·log10(1 / MSE)`` (data range 1; ``inf`` for identical images).
- SSIM = scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` (RGB: mean over channels): Gaussian 11×11 window
  (σ 1.5, ``truncate=3.5``), ``C1 = 0.01²``, ``C2 = 0.03²``, averaged over the valid region (the
  map cropped by 5 px on each side). :func:`ssim_map` returns that cropped map.
- PSNRw: PSNR from the MSE over the pixels where ``mask > 0`` (all channels).
- SSIMw: the SSIM map averaged over the pixels where ``mask > 0``, the mask being cropped by 5 px
  like the map (valid region).
- PSNRa: RealBlur's evaluation: least-squares gain, ECC homography (100 iterations) from the
  output to the ground truth, cubic warp, PSNR over the pixels that stay inside after warping.

Weighted metrics of an empty mask are undefined: ``None`` (never NaN); :func:`format_table`
prints "undefined".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "METRIC_KEYS",
    "average_metrics",
    "evaluate_pair",
    "format_table",
    "psnr",
    "psnr_aligned",
    "psnr_weighted",
    "quantise_8bit",
    "ssim",
    "ssim_map",
    "ssim_weighted",
]

METRIC_KEYS: tuple[str, ...] = ("PSNR", "SSIM", "PSNRw", "SSIMw", "PSNRa")

_SIGMA = 1.5
_TRUNCATE = 3.5
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)  # 5: half-width of the 11×11 window
_K1, _K2 = 0.01, 0.03


def _as_float(img: np.ndarray) -> np.ndarray:
    """uint8 → /255; anything else → float64 (values kept as given)."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"expected a numeric image, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_float(pred), _as_float(gt)
    if p.shape != g.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs gt {g.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"expected H×W or H×W×C images, got shape {p.shape}")
    return p, g


def _binary_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``H×W`` boolean mask (``mask > 0``; a trailing channel axis is reduced with any)."""
    m = np.asarray(mask)
    m = (m > 0).any(axis=-1) if m.ndim == 3 else m > 0
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"mask shape {m.shape} does not match image size {tuple(shape[:2])}")
    return m


def quantise_8bit(img: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and round to 8 bits: ``round(clip(x)·255)/255`` (float64, same shape)."""
    arr = _as_float(img)
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0) / 255.0


def _psnr_from_mse(mse: float) -> float:
    if mse <= 0:
        return math.inf
    return float(10.0 * math.log10(1.0 / mse))


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB on data range 1: ``10·log10(1 / mean((pred − gt)²))``."""
    p, g = _pair(pred, gt)
    return _psnr_from_mse(float(np.mean((p - g) ** 2)))


def psnr_weighted(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR of the MSE over the pixels where ``mask > 0`` (all channels); ``None`` if empty."""
    p, g = _pair(pred, gt)
    m = _binary_mask(mask, p.shape)
    if not m.any():
        return None
    return _psnr_from_mse(float(np.mean((p[m] - g[m]) ** 2)))


def ssim_map(pred: np.ndarray, gt: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """SSIM map on the valid region: ``(H−10)×(W−10)`` (``×C`` for colour images), float64.

    Gaussian window σ 1.5 (``truncate=3.5``, 11×11), population covariances,
    ``C1 = (0.01·data_range)²``, ``C2 = (0.03·data_range)²``; identical to scikit-image's map
    (``gaussian_weights=True, use_sample_covariance=False``) cropped by 5 px on each side.
    """
    x, y = _pair(pred, gt)
    if min(x.shape[:2]) < 2 * _RADIUS + 1:
        raise ValueError(f"images must be at least 11×11 for SSIM, got {x.shape}")
    sigma = (_SIGMA, _SIGMA) if x.ndim == 2 else (_SIGMA, _SIGMA, 0.0)

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=sigma, truncate=_TRUNCATE, mode="reflect")

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    r = _RADIUS
    return s[r:-r, r:-r]


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM over the valid region (colour: mean over channels), as scikit-image."""
    return float(ssim_map(pred, gt, data_range).mean(dtype=np.float64))


def ssim_weighted(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float | None:
    """SSIM map averaged where ``mask > 0``, the mask cropped by 5 px to the valid region.

    ``None`` when no masked pixel lies in the valid region.
    """
    p, g = _pair(pred, gt)
    m = _binary_mask(mask, p.shape)
    r = _RADIUS
    m = m[r:-r, r:-r]
    if not m.any():
        return None
    return float(ssim_map(p, g)[m].mean(dtype=np.float64))


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[..., 0]
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def psnr_aligned(
    pred: np.ndarray, gt: np.ndarray, iterations: int = 100, return_warp: bool = False
) -> float | None | tuple[float | None, np.ndarray]:
    """PSNRa as RealBlur's ``evaluate_RealBlur.py`` (after Köhler et al.).

    1. gain: ``pred ← (Σ gt·pred / Σ pred²) · pred`` (least squares);
    2. ECC homography (``cv2.findTransformECC``, ``MOTION_HOMOGRAPHY``, ``iterations``
       iterations, eps 0, ``gaussFiltSize=5``) between the gray images, ground truth as template;
    3. ``cv2.warpPerspective(INTER_CUBIC + WARP_INVERSE_MAP, BORDER_REFLECT)`` of the output; the
       valid region is a nearest-neighbour warp of ones with a zero border;
    4. PSNR = ``10·log10(1 / (Σ_valid (warped − gt)² / #valid))``.

    Computed in float32 (OpenCV). If ECC raises (e.g. a flat image, no convergence) the identity
    warp is used. ``None`` if no pixel stays inside after warping. ``return_warp=True`` also
    returns the 3×3 warp matrix.
    """
    p, g = _pair(pred, gt)
    z = p.astype(np.float32)
    x = g.astype(np.float32)
    zz = float(np.sum(z.astype(np.float64) ** 2))
    gain = float(np.sum(x.astype(np.float64) * z) / zz) if zz > 0 else 1.0
    zs = (gain * z).astype(np.float32)

    warp = np.eye(3, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 0)
    try:
        _, warp = cv2.findTransformECC(
            _gray(x), _gray(zs), warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 5
        )
    except cv2.error:
        warp = np.eye(3, 3, dtype=np.float32)

    h, w = x.shape[:2]
    zr = cv2.warpPerspective(
        zs,
        warp,
        (w, h),
        flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    cr = cv2.warpPerspective(
        np.ones_like(zs, dtype=np.float32),
        warp,
        (w, h),
        flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    zr = zr.reshape(x.shape).astype(np.float64)
    cr = cr.reshape(x.shape).astype(np.float64)
    valid = float(np.sum(cr))
    value: float | None
    if valid <= 0:
        value = None  # no pixel stays inside: undefined
    else:
        err = float(np.sum(((zr - x) * cr) ** 2)) / valid
        value = _psnr_from_mse(err)
    if return_warp:
        return value, np.asarray(warp, dtype=np.float64)
    return value


def mask_iou(predicted: np.ndarray, true_mask: np.ndarray, threshold: float = 0.5) -> float | None:
    """Intersection over union of a predicted blur mask and the true one, in [0, 1].

    ``predicted``: ``H×W`` soft mask (the LBAG gate, [0, 1] floats, or uint8 0..255, binarised
    at ``threshold`` of full scale); ``true_mask``: ``H×W`` (``> 0`` = blurred). ``None`` when
    both are empty (the IoU is undefined)."""
    pred = np.asarray(predicted)
    scale = 255.0 if pred.dtype == np.uint8 else 1.0
    p = pred.astype(np.float32) >= threshold * scale
    t = _binary_mask(true_mask, p.shape)
    union = np.logical_or(p, t).sum()
    if union == 0:
        return None
    return float(np.logical_and(p, t).sum() / union)


def evaluate_pair(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    quantise: bool = True,
    aligned: bool = True,
) -> dict[str, float | None]:
    """All metrics of one output/ground-truth pair: keys PSNR, SSIM, PSNRw, SSIMw, PSNRa.

    ``pred``, ``gt``: ``H×W×3`` floats in [0, 1] (or uint8); ``mask``: ``H×W`` blur mask
    (``> 0`` = blurred); without a mask, or with an empty one, PSNRw and SSIMw are ``None``.
    ``quantise`` (default, as released) rounds both images to 8 bits first
    (:func:`quantise_8bit`). ``aligned=False`` skips the (slower) PSNRa, reported as ``None``.
    """
    p, g = _pair(pred, gt)
    if quantise:
        p, g = quantise_8bit(p), quantise_8bit(g)
    out: dict[str, float | None] = {"PSNR": psnr(p, g), "SSIM": ssim(p, g)}
    if mask is None:
        out["PSNRw"] = None
        out["SSIMw"] = None
    else:
        out["PSNRw"] = psnr_weighted(p, g, mask)
        out["SSIMw"] = ssim_weighted(p, g, mask)
    out["PSNRa"] = psnr_aligned(p, g) if aligned else None  # type: ignore[assignment]
    return out


def average_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """Mean of each metric over ``rows``, ignoring ``None`` (undefined); ``None`` if never
    defined. Keys holding text (e.g. a ``"name"`` column) are left out."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    keys: list[str] = []
    textual: set[str] = set()
    for row in rows:
        for k, v in row.items():
            if k not in counts:
                keys.append(k)
                counts[k] = 0
                sums[k] = 0.0
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                textual.add(k)
            elif not math.isnan(float(v)):
                sums[k] += float(v)
                counts[k] += 1
    return {k: (sums[k] / counts[k] if counts[k] else None) for k in keys if k not in textual}


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | np.floating | np.integer):
        v = float(value)
        if math.isnan(v):
            return "undefined"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if isinstance(value, int | np.integer):
            return str(int(value))
        return f"{v:.4f}" if key.upper().startswith("SSIM") else f"{v:.2f}"
    return str(value).replace("|", "\\|")


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Markdown table of metric rows (e.g. ``{"name": ..., **evaluate_pair(...)}``).

    Columns: ``columns`` or the keys in order of first appearance. SSIM-like columns get 4
    decimals, other floats 2; ``None`` (and NaN) print as "undefined"; missing cells are blank.
    """
    if columns is None:
        cols: list[str] = []
        for row in rows:
            cols.extend(k for k in row if k not in cols)
    else:
        cols = list(columns)
    lines = [
        "| " + " | ".join(cols) + " |",
        "| " + " | ".join("---" for _ in cols) + " |",
    ]
    for row in rows:
        cells = [_cell(c, row[c]) if c in row else "" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
