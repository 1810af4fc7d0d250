"""Applying a CMTF table: the numba gather (separable, nearest phase), the sharpening filter.

img (H, W, C) float32, flow (H, W, 2) float32 (dx, dy) px, ``output(x, y) = img(x + dx, y + dy)``;
samples outside the image are the nearest edge pixel (replicate), the sharpening reflects
(``BORDER_REFLECT_101``). The table comes from :func:`postprocess.warp.design.design_cmtf`.
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit, prange

from postprocess.warp.design import CMTFKernels, design_cmtf


# ---- the gather ------------------------------------------------------------------------------
@njit(parallel=True, cache=True, fastmath=False)
def _cmtf_gather_numba(img, flow, table, phases, first, out):  # pragma: no cover - compiled
    """img (H, W, C) float32, flow (H, W, 2) float32, table (P+1, N) float32 -> out (H, W, C)."""
    h, w, c = img.shape
    n = table.shape[1]
    for y in prange(h):
        rows = np.empty(c, np.float32)
        acc = np.empty(c, np.float32)
        for x in range(w):
            sx = x + flow[y, x, 0]
            sy = y + flow[y, x, 1]
            fx = np.floor(sx)
            fy = np.floor(sy)
            px = int((sx - fx) * phases + 0.5)
            py = int((sy - fy) * phases + 0.5)
            ix = int(fx) + first
            iy = int(fy) + first
            for ch in range(c):
                acc[ch] = 0.0
            if ix >= 0 and iy >= 0 and ix + n <= w and iy + n <= h:
                for j in range(n):
                    for ch in range(c):
                        rows[ch] = 0.0
                    for i in range(n):
                        wx = table[px, i]
                        for ch in range(c):
                            rows[ch] += wx * img[iy + j, ix + i, ch]
                    wy = table[py, j]
                    for ch in range(c):
                        acc[ch] += wy * rows[ch]
            else:
                for j in range(n):
                    yy = min(max(iy + j, 0), h - 1)
                    for ch in range(c):
                        rows[ch] = 0.0
                    for i in range(n):
                        xx = min(max(ix + i, 0), w - 1)
                        wx = table[px, i]
                        for ch in range(c):
                            rows[ch] += wx * img[yy, xx, ch]
                    wy = table[py, j]
                    for ch in range(c):
                        acc[ch] += wy * rows[ch]
            for ch in range(c):
                out[y, x, ch] = acc[ch]
    return out


@njit(parallel=True, cache=True, fastmath=False)
def _cmtf_gather3_numba(img, flow, table, phases, first, out):  # pragma: no cover - compiled
    """The 3-channel case of ``_cmtf_gather_numba`` with the channel loop unrolled."""
    h, w, _ = img.shape
    n = table.shape[1]
    for y in prange(h):
        for x in range(w):
            sx = x + flow[y, x, 0]
            sy = y + flow[y, x, 1]
            fx = np.floor(sx)
            fy = np.floor(sy)
            px = int((sx - fx) * phases + 0.5)
            py = int((sy - fy) * phases + 0.5)
            ix = int(fx) + first
            iy = int(fy) + first
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            if ix >= 0 and iy >= 0 and ix + n <= w and iy + n <= h:  # interior: no clamping
                for j in range(n):
                    r0 = np.float32(0.0)
                    r1 = np.float32(0.0)
                    r2 = np.float32(0.0)
                    for i in range(n):
                        wx = table[px, i]
                        r0 += wx * img[iy + j, ix + i, 0]
                        r1 += wx * img[iy + j, ix + i, 1]
                        r2 += wx * img[iy + j, ix + i, 2]
                    wy = table[py, j]
                    a0 += wy * r0
                    a1 += wy * r1
                    a2 += wy * r2
            else:  # near the border: replicate the edge pixels
                for j in range(n):
                    yy = min(max(iy + j, 0), h - 1)
                    r0 = np.float32(0.0)
                    r1 = np.float32(0.0)
                    r2 = np.float32(0.0)
                    for i in range(n):
                        xx = min(max(ix + i, 0), w - 1)
                        wx = table[px, i]
                        r0 += wx * img[yy, xx, 0]
                        r1 += wx * img[yy, xx, 1]
                        r2 += wx * img[yy, xx, 2]
                    wy = table[py, j]
                    a0 += wy * r0
                    a1 += wy * r1
                    a2 += wy * r2
            out[y, x, 0] = a0
            out[y, x, 1] = a1
            out[y, x, 2] = a2
    return out


def _phase_indices(flow: np.ndarray, phases: int, first: int):
    """Integer sample origin and phase row per pixel, exactly as the numba gather computes them."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx = xs + flow[..., 0]
    sy = ys + flow[..., 1]
    fx = np.floor(sx)
    fy = np.floor(sy)
    px = ((sx - fx) * phases + np.float32(0.5)).astype(np.int64)
    py = ((sy - fy) * phases + np.float32(0.5)).astype(np.int64)
    return fx.astype(np.int64) + first, fy.astype(np.int64) + first, px, py


def _bounded(flow: np.ndarray, taps: int) -> np.ndarray:
    """Flow clipped to +-(max(H, W) + 2 taps): beyond that every tap is a replicated edge pixel
    anyway, and the clip keeps the integer conversion of absurd flows in range."""
    bound = float(max(flow.shape[0], flow.shape[1]) + 2 * taps)
    if float(np.abs(flow).max()) > bound:
        return np.clip(flow, -bound, bound)
    return flow


def cmtf_gather_reference(img: np.ndarray, flow: np.ndarray, kernels: CMTFKernels) -> np.ndarray:
    """Slow numpy reference of the CMTF gather (before sharpening), for tests.

    img (H, W, C) float32, flow (H, W, 2) float32 -> (H, W, C) float32 (float64 accumulation).
    """
    h, w = img.shape[:2]
    first = int(kernels.offsets[0])
    ix, iy, px, py = _phase_indices(_bounded(flow, kernels.taps), kernels.phases, first)
    table = kernels.table.astype(np.float64)
    out = np.zeros(img.shape, np.float64)
    for j in range(kernels.taps):
        yy = np.clip(iy + j, 0, h - 1)
        rows = np.zeros(img.shape, np.float64)
        for i in range(kernels.taps):
            xx = np.clip(ix + i, 0, w - 1)
            rows += table[px, i][..., None] * img[yy, xx]
        out += table[py, j][..., None] * rows
    return out.astype(np.float32)


def _sharpen(img: np.ndarray, kernels: CMTFKernels) -> np.ndarray:
    k = np.asarray(kernels.sharpen, np.float32)
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)


def warp_cmtf(img: np.ndarray, flow: np.ndarray, kernels: CMTFKernels | None = None) -> np.ndarray:
    """CMTF warp of a checked (H, W, C) float32 image by a checked (H, W, 2) float32 flow with
    ``kernels`` (default ``design_cmtf()``): the gather, then the sharpening; (H, W, C) float32."""
    h, w, c = img.shape
    k = design_cmtf() if kernels is None else kernels
    flw = _bounded(flow, k.taps)
    out = np.empty_like(img)
    if c == 3:
        _cmtf_gather3_numba(img, flw, k.table, k.phases, int(k.offsets[0]), out)
    else:
        _cmtf_gather_numba(img, flw, k.table, k.phases, int(k.offsets[0]), out)
    return _sharpen(out, k).reshape(h, w, c)
