"""Per-pixel numba kernels of the variational solver: warp, mix, smoothness weight, linear system.

Arrays are float32: images and features (h, w, C), flow components u, v, du, dv and the weights
φ' (h, w); the system is written either per pixel (a12, b1, b2, ω/d1, ω/d2, each (h, w)) or
straight into the colour-split layout of :mod:`postprocess.flow.sor`. The arithmetic is the
method's (:mod:`postprocess.flow.pyflow`); :mod:`postprocess.flow.reference` has numpy twins.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# ---- numba kernels -----------------------------------------------------------------------


def _warp_bilinear_nb(im1, im2, u, v):
    """im2 (h, w, C) sampled at (x + u, y + v), bilinear; outside the image: im1's value."""
    out = np.empty_like(im2)
    _warp_into_nb(im1, im2, u, v, out)
    return out


@njit(parallel=True, cache=True, fastmath=False)
def _warp_into_nb(im1, im2, u, v, out):
    """:func:`_warp_bilinear_nb` into ``out`` (h, w, C)."""
    h, w, c = im2.shape
    for i in prange(h):
        for j in range(w):
            x = j + np.float64(u[i, j])
            y = i + np.float64(v[i, j])
            if not (x >= 0.0 and x <= w - 1.0 and y >= 0.0 and y <= h - 1.0):
                for k in range(c):
                    out[i, j, k] = im1[i, j, k]
                continue
            x0 = int(math.floor(x))
            y0 = int(math.floor(y))
            fx = x - x0
            fy = y - y0
            x1 = min(x0 + 1, w - 1)
            y1 = min(y0 + 1, h - 1)
            for k in range(c):
                top = (1.0 - fx) * im2[y0, x0, k] + fx * im2[y0, x1, k]
                bottom = (1.0 - fx) * im2[y1, x0, k] + fx * im2[y1, x1, k]
                out[i, j, k] = (1.0 - fy) * top + fy * bottom


@njit(parallel=True, cache=True, fastmath=False)
def _mix_nb(f1s, f2s):
    """(mix, it): 0.4 f1s + 0.6 f2s and f2s − f1s, (h, w, C) float32, in one pass."""
    h, w, c = f1s.shape
    mix = np.empty_like(f1s)
    it = np.empty_like(f1s)
    a = np.float32(0.4)
    b = np.float32(0.6)
    for i in prange(h):
        for j in range(w):
            for k in range(c):
                mix[i, j, k] = a * f1s[i, j, k] + b * f2s[i, j, k]
                it[i, j, k] = f2s[i, j, k] - f1s[i, j, k]
    return mix, it


@njit(parallel=True, cache=True, fastmath=False)
def _smoothness_weight_nb(uu, vv, eps2):
    """φ' (h, w) = 0.5 / sqrt(ux² + uy² + vx² + vy² + ε²), forward differences (0 at the far
    edge), of the flow uu, vv."""
    h, w = uu.shape
    phi = np.empty((h, w), np.float32)
    for i in prange(h):
        for j in range(w):
            ux = 0.0
            vx = 0.0
            uy = 0.0
            vy = 0.0
            if j < w - 1:
                ux = np.float64(uu[i, j + 1]) - uu[i, j]
                vx = np.float64(vv[i, j + 1]) - vv[i, j]
            if i < h - 1:
                uy = np.float64(uu[i + 1, j]) - uu[i, j]
                vy = np.float64(vv[i + 1, j]) - vv[i, j]
            phi[i, j] = 0.5 / math.sqrt(ux * ux + uy * uy + vx * vx + vy * vy + eps2)
    return phi


@njit(cache=True, fastmath=False, inline="always")
def smoothness_at(phi, u, v, i, j, h, w):
    """(L(u), L(v), Σφ'_nb) at pixel (i, j) of an h×w grid: L(f) = −div(φ'∇f) with forward
    differences, in float64, in the one operation order the reference and the fast build share."""
    lu = 0.0
    lv = 0.0
    wsum = 0.0
    if j < w - 1:
        wgt = np.float64(phi[i, j])
        lu -= wgt * (np.float64(u[i, j + 1]) - u[i, j])
        lv -= wgt * (np.float64(v[i, j + 1]) - v[i, j])
        wsum += wgt
    if j > 0:
        wgt = np.float64(phi[i, j - 1])
        lu += wgt * (np.float64(u[i, j]) - u[i, j - 1])
        lv += wgt * (np.float64(v[i, j]) - v[i, j - 1])
        wsum += wgt
    if i < h - 1:
        wgt = np.float64(phi[i, j])
        lu -= wgt * (np.float64(u[i + 1, j]) - u[i, j])
        lv -= wgt * (np.float64(v[i + 1, j]) - v[i, j])
        wsum += wgt
    if i > 0:
        wgt = np.float64(phi[i - 1, j])
        lu += wgt * (np.float64(u[i, j]) - u[i - 1, j])
        lv += wgt * (np.float64(v[i, j]) - v[i - 1, j])
        wsum += wgt
    return lu, lv, wsum


@njit(cache=True, fastmath=False, inline="always")
def _system_at(mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, i, j):
    """(a12, b1, b2, od1, od2) of pixel (i, j); see :func:`_linear_system_nb`."""
    h, w, c = mix.shape
    im2_ = max(i - 2, 0)
    im1_ = max(i - 1, 0)
    ip1 = min(i + 1, h - 1)
    ip2 = min(i + 2, h - 1)
    jm2 = max(j - 2, 0)
    jm1 = max(j - 1, 0)
    jp1 = min(j + 1, w - 1)
    jp2 = min(j + 2, w - 1)
    s11 = 0.0
    s12 = 0.0
    s22 = 0.0
    s1t = 0.0
    s2t = 0.0
    for k in range(c):
        ix = (
            np.float64(mix[i, jm2, k]) - 8.0 * np.float64(mix[i, jm1, k])
            + 8.0 * np.float64(mix[i, jp1, k]) - np.float64(mix[i, jp2, k])
        ) / 12.0
        iy = (
            np.float64(mix[im2_, j, k]) - 8.0 * np.float64(mix[im1_, j, k])
            + 8.0 * np.float64(mix[ip1, j, k]) - np.float64(mix[ip2, j, k])
        ) / 12.0
        it = np.float64(it_all[i, j, k])
        r = it + ix * du[i, j] + iy * dv[i, j]
        psi = 0.5 / math.sqrt(r * r + eps2)
        s11 += psi * ix * ix
        s12 += psi * ix * iy
        s22 += psi * iy * iy
        s1t += psi * ix * it
        s2t += psi * iy * it
    # L(f) = −div(φ'∇f) with forward differences; Σφ'_nb for the diagonal.
    lu, lv, wsum = smoothness_at(phi, u, v, i, j, h, w)
    # The C++ averages the data term over the channels (DImage::collapse).
    return (
        s12 / c,
        -s1t / c - alpha * lu,
        -s2t / c - alpha * lv,
        omega / (s11 / c + 0.05 * alpha + alpha * wsum),
        omega / (s22 / c + 0.05 * alpha + alpha * wsum),
    )


@njit(parallel=True, cache=True, fastmath=False)
def _linear_system_nb(mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, od1, od2):
    """Coefficients of the SOR system at each pixel, from the smoothed feature images.

    ``mix`` = 0.4 im1s + 0.6 im2s and ``it_all`` = im2s − im1s (h, w, C) float32, of the
    smoothed features of the first and the warped second image. Derivatives on the fly:
    I_x / I_y of ``mix`` by [1, −8, 0, 8, −1]/12 with clamped indices, I_t = ``it_all``;
    ψ'_c = 0.5 / sqrt((I_t + I_x du + I_y dv)² + ε²). With <.> the mean over the C
    channels (as the C++'s ``collapse``), returns
    a12 = <ψ'I_xI_y> and b1, b2 = −<ψ'I_xI_t> − α L(u), −<ψ'I_yI_t> − α L(v) with
    L(f) = −div(φ'∇f); fills od1 = ω/d1, od2 = ω/d2 (for SOR) with
    d1 = <ψ'I_x²> + 0.05α + αΣφ'_nb, d2 likewise with I_y².
    """
    h, w, c = mix.shape
    a12 = np.empty((h, w), np.float32)
    b1 = np.empty((h, w), np.float32)
    b2 = np.empty((h, w), np.float32)
    for i in prange(h):
        for j in range(w):
            x12, x1, x2, x3, x4 = _system_at(
                mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, i, j)
            a12[i, j] = x12
            b1[i, j] = x1
            b2[i, j] = x2
            od1[i, j] = x3
            od2[i, j] = x4
    return a12, b1, b2


@njit(parallel=True, cache=True, fastmath=False)
def _linear_system_split_nb(mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, red, black,
                            pred, pblack):
    """:func:`_linear_system_nb` written straight into the colour-split layout: fills
    ``red``, ``black`` (5, h, W2) and ``pred``, ``pblack`` (h + 2, W2 + 2) float32 as
    :func:`_pack_system_nb` would (dummy slots and frames must already be 0; every other
    slot is written)."""
    h, w, c = mix.shape
    w2 = (w + 1) // 2
    for i in prange(h):
        for colour in range(2):
            out = red if colour == 0 else black
            o = (i + colour) % 2
            for k in range(w2):
                j = o + 2 * k
                if j >= w:
                    continue
                x12, x1, x2, x3, x4 = _system_at(
                    mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, i, j)
                out[0, i, k] = x3
                out[1, i, k] = x4
                out[2, i, k] = x12
                out[3, i, k] = x1
                out[4, i, k] = x2
                pout = pred if colour == 0 else pblack
                pout[i + 1, k + 1] = phi[i, j]
