"""The warp methods by name (the registry ``alignment.warp_method`` picks from), and ``warp``.

:data:`WARP_METHODS` maps each name to a function ``(img, flow, kernels) -> out``: img (H, W, C)
float32, flow (H, W, 2) float32 (dx, dy) px, both checked; out (H, W, C) float32 with
``out(x, y) = img(x + dx, y + dy)``; ``kernels`` is the CMTF table (only ``cmtf`` reads it).
A new method is one entry. Borders: :mod:`postprocess.warp`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy import ndimage

from core.errors import UserError
from postprocess.warp.cmtf import warp_cmtf
from postprocess.warp.design import CMTFKernels

WarpMethod = Callable[[np.ndarray, np.ndarray, CMTFKernels | None], np.ndarray]


class WarpInputError(UserError, ValueError):
    """Bad input to ``warp``: wrong shapes, dtypes or non-finite values."""


def _remap(img: np.ndarray, flw: np.ndarray, inter: int) -> np.ndarray:
    """OpenCV ``remap`` (``BORDER_REFLECT_101``), four channels at a time."""
    h, w, c = img.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = xs + flw[..., 0]
    map_y = ys + flw[..., 1]
    planes = [cv2.remap(img[..., i0:i0 + 4], map_x, map_y, inter,
                        borderMode=cv2.BORDER_REFLECT_101) for i0 in range(0, c, 4)]
    return np.concatenate([p.reshape(h, w, -1) for p in planes], axis=2)


def warp_lanczos4(img: np.ndarray, flw: np.ndarray, kernels: CMTFKernels | None = None) -> np.ndarray:
    """OpenCV Lanczos-4 remap."""
    return _remap(img, flw, cv2.INTER_LANCZOS4)


def warp_linear(img: np.ndarray, flw: np.ndarray, kernels: CMTFKernels | None = None) -> np.ndarray:
    """OpenCV bilinear remap."""
    return _remap(img, flw, cv2.INTER_LINEAR)


def warp_spline(img: np.ndarray, flw: np.ndarray, kernels: CMTFKernels | None = None) -> np.ndarray:
    """scipy order-5 B-spline (``map_coordinates``, ``mode="mirror"``), channel by channel."""
    h, w, c = img.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = np.stack([ys + flw[..., 1], xs + flw[..., 0]])
    return np.stack([ndimage.map_coordinates(img[..., i], coords, order=5, mode="mirror")
                     for i in range(c)], axis=-1).astype(np.float32)


#: name -> implementation, in the order the names are listed to users.
WARP_METHODS: dict[str, WarpMethod] = {
    "cmtf": warp_cmtf,
    "lanczos4": warp_lanczos4,
    "spline": warp_spline,
    "linear": warp_linear,
}
METHODS = tuple(WARP_METHODS)


def _check(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    image = np.asarray(image)
    flow = np.asarray(flow)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise WarpInputError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if flow.shape != (*image.shape[:2], 2):
        raise WarpInputError(f"flow must have shape {(*image.shape[:2], 2)}, got {flow.shape}")
    if not np.issubdtype(image.dtype, np.number) or not np.issubdtype(flow.dtype, np.number):
        raise WarpInputError("image and flow must be numeric arrays")
    flow32 = np.ascontiguousarray(flow, np.float32)
    if not np.all(np.isfinite(flow32)):
        raise WarpInputError("flow contains NaN or infinite values")
    img32 = np.asarray(image, np.float32)
    if not np.all(np.isfinite(img32)):
        raise WarpInputError("image contains NaN or infinite values")
    squeeze = img32.ndim == 2
    if squeeze:
        img32 = img32[..., None]
    return np.ascontiguousarray(img32), flow32, squeeze


def warp(image: np.ndarray, flow: np.ndarray, method: str = "cmtf",
         kernels: CMTFKernels | None = None) -> np.ndarray:
    """Warp ``image`` by ``flow``: ``output(x, y) = image(x + dx, y + dy)``.

    image: (H, W) or (H, W, C) real array (any range; computed in float32).
    flow: (H, W, 2) (dx, dy) in pixels, finite.
    method: a key of :data:`WARP_METHODS`: "cmtf" (default; the designed table, ``kernels`` or
        ``design_cmtf()``), "lanczos4" / "linear" (OpenCV remap), "spline" (scipy order-5 B-spline).
    Returns float32 with the shape of ``image``. Borders: see :mod:`postprocess.warp`.
    Raises WarpInputError on shape mismatch or non-finite values, ValueError on an unknown method.
    """
    implementation = WARP_METHODS.get(method) if isinstance(method, str) else None
    if implementation is None:
        raise ValueError(f"unknown method {method!r}; choose one of {tuple(WARP_METHODS)}")
    img, flw, squeeze = _check(image, flow)
    out = implementation(img, flw, kernels)
    return out[..., 0] if squeeze else out


def mtf_at(method: str, frequency: float, phase: float, kernels: CMTFKernels | None = None,
           axis: int = 0) -> float:
    """Measured amplitude response of ``warp(method)`` to a sinusoid, at a sub-pixel shift.

    A 32 x 512 image ``cos(2 pi frequency x)`` (along ``axis``: 0 = x, 1 = y, transposed) is
    warped by the constant flow ``phase`` px along that axis; the amplitude of the output at
    ``frequency`` is fitted by least squares (cos and sin) over the central 384 columns.
    Returns output amplitude / input amplitude (1.0 = unchanged).
    """
    n = 512
    x = np.arange(n, dtype=np.float64)
    row = np.cos(2 * np.pi * frequency * x).astype(np.float32)
    img = np.tile(row, (32, 1))
    flow = np.zeros((32, n, 2), np.float32)
    flow[..., 0] = phase
    if axis == 1:
        img = np.ascontiguousarray(img.T)
        flow = np.ascontiguousarray(flow.transpose(1, 0, 2)[..., ::-1])
    out = warp(img, flow, method, kernels)
    line = (out if axis == 0 else out.T)[16, 64:n - 64].astype(np.float64)
    xs = x[64:n - 64] + phase
    design = np.stack([np.cos(2 * np.pi * frequency * xs), np.sin(2 * np.pi * frequency * xs),
                       np.ones_like(xs)], axis=1)
    coef, *_ = np.linalg.lstsq(design, line, rcond=None)
    return float(np.hypot(coef[0], coef[1]))
