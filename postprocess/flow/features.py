"""The Pyflow method's Gaussian pyramid and data-term features (OpenCV filters, numba stacking).

Images are (h, w) or (h, w, 3) float32; features are (h, w, C) float32 with C = 5 for RGB
(L, dL/dx, dL/dy, G − R, G − B) and 3 for grey. See :mod:`postprocess.flow.pyflow`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit, prange

from postprocess.flow.common import _LUMA

_SMOOTH_TAPS = np.array([0.02, 0.11, 0.74, 0.11, 0.02], np.float32)
_DERIV_TAPS = np.array([1.0, -8.0, 0.0, 8.0, -1.0], np.float64) / 12.0


# ---- pyramid and features (OpenCV) -------------------------------------------------------


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing truncated at 3σ (as the C++), replicated borders."""
    if sigma <= 0:
        return image
    ksize = 2 * int(math.ceil(3.0 * sigma)) + 1
    return cv2.GaussianBlur(image, (ksize, ksize), sigma, borderType=cv2.BORDER_REPLICATE)


def _pyramid(image: np.ndarray, ratio: float, min_width: int) -> list[np.ndarray]:
    """Gaussian pyramid, finest first (level 0 = ``image``); see :mod:`postprocess.flow.pyflow`."""
    h, w = image.shape[:2]
    n_levels = max(1, int(math.log(min_width / w) / math.log(ratio))) if w > min_width else 1
    base_sigma = 1.0 / ratio - 1.0
    n = int(math.log(0.25) / math.log(ratio))
    levels = [image]
    for i in range(1, n_levels):
        scale = ratio**i
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        if scale < 0.25 and n >= 1:
            smooth = _gaussian(levels[i - n], base_sigma * n)
        else:
            smooth = _gaussian(image, base_sigma * i)
        levels.append(cv2.resize(smooth, size, interpolation=cv2.INTER_LINEAR))
    return levels


def _features(image: np.ndarray) -> np.ndarray:
    """(h, w, C) float32 data-term channels: L, dL/dx, dL/dy[, G − R, G − B]."""
    # (numba kernels for the luminance and the stacking; same float32 arithmetic as numpy)
    grey = image if image.ndim == 2 else _grey_nb(image)
    kx = _DERIV_TAPS.astype(np.float32)
    one = np.ones(1, np.float32)
    gx = cv2.sepFilter2D(grey, -1, kx, one, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(grey, -1, one, kx, borderType=cv2.BORDER_REPLICATE)
    if image.ndim == 3:
        return _stack_features_nb(image, grey, gx, gy)
    return np.ascontiguousarray(np.stack([grey, gx, gy], axis=2), dtype=np.float32)


def _smooth5(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The C++'s 5-tap pre-smoothing of the derivative images (replicated borders), into
    ``out`` if given. (Filtering the (h, w, C) image at once, not plane by plane: OpenCV's
    results differ in the last bit between the two on some sizes.)"""
    return cv2.sepFilter2D(image, -1, _SMOOTH_TAPS, _SMOOTH_TAPS, dst=out,
                           borderType=cv2.BORDER_REPLICATE)


@njit(parallel=True, cache=True, fastmath=False)
def _grey_nb(image):
    """Luminance of an (h, w, 3) float32 image, in float32 as numpy computes
    ``0.299 * R + 0.587 * G + 0.114 * B`` (weak Python scalars: float32 products and sums)."""
    h, w, _ = image.shape
    c0 = np.float32(_LUMA[0])
    c1 = np.float32(_LUMA[1])
    c2 = np.float32(_LUMA[2])
    out = np.empty((h, w), np.float32)
    for i in prange(h):
        for j in range(w):
            out[i, j] = c0 * image[i, j, 0] + c1 * image[i, j, 1] + c2 * image[i, j, 2]
    return out


@njit(parallel=True, cache=True, fastmath=False)
def _stack_features_nb(image, grey, gx, gy):
    """(h, w, 5) float32: grey, gx, gy, G − R, G − B of an (h, w, 3) image."""
    h, w, _ = image.shape
    out = np.empty((h, w, 5), np.float32)
    for i in prange(h):
        for j in range(w):
            out[i, j, 0] = grey[i, j]
            out[i, j, 1] = gx[i, j]
            out[i, j, 2] = gy[i, j]
            out[i, j, 3] = image[i, j, 1] - image[i, j, 0]
            out[i, j, 4] = image[i, j, 1] - image[i, j, 2]
    return out
