"""The fast path of the numba backend: the linear system built from planar (C, h, w) features.

:func:`_mix_planar_nb` stores the mixed features and I_t planar; :func:`_system_planar_nb`
builds the system into the colour-split layout of :mod:`postprocess.flow.sor` in vectorised
row chunks, bit-identical to :func:`postprocess.flow.system._linear_system_split_nb`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from postprocess.flow.system import smoothness_at

# ---- the planar fast path (numba backend) -------------------------------------------------
#
# Same arithmetic as the kernels of postprocess.flow.system, reorganised for speed (bit-identical results):
# features are stored planar, (C, h, w), so that every kernel reads rows with unit stride;
# all per-level buffers are allocated once per level (no page faults per outer iteration);
# the system is built row by row in short loops over row buffers that LLVM vectorises (each
# loop stores to one array and reads few others, so that the vectoriser's run-time alias
# checks stay within its limit; ``error_model="numpy"`` removes the division-by-zero checks
# that would stop it, none of the divisors can be 0).


#: Row chunk (pixels) of :func:`_system_planar_nb`: its float64 buffer (8 rows of it, 32 KiB
#: at 512) stays in the L1 cache (measured: 128 to 1024 all within a few %).
_CHUNK = 512
_S11, _S12, _S22, _S1T, _S2T, _LU, _LV, _WS = (k * _CHUNK for k in range(8))


@njit(cache=True, error_model="numpy", inline="always")
def _data_px(buf, t, ix, iy, it, r, eps2):
    psi = 0.5 / math.sqrt(r * r + eps2)
    buf[_S11 + t] += psi * ix * ix
    buf[_S12 + t] += psi * ix * iy
    buf[_S22 + t] += psi * iy * iy
    buf[_S1T + t] += psi * ix * it
    buf[_S2T + t] += psi * iy * it


@njit(cache=True, error_model="numpy")
def _data_chunk(buf, m, itr, du, dv, i, j0, j1, use_d, eps2):
    """Add channel ``m`` (h, w) (``itr``: its I_t row i) to the data sums of row i, pixels
    j0 .. j1 − 1, in ``buf`` (same arithmetic as :func:`_system_at`)."""
    h, w = m.shape
    m0 = m[i]
    mm2 = m[max(i - 2, 0)]
    mm1 = m[max(i - 1, 0)]
    mp1 = m[min(i + 1, h - 1)]
    mp2 = m[min(i + 2, h - 1)]
    a = max(j0, 2)
    b = max(min(j1, w - 2), a)
    # Pixels a .. b − 1 need no clamping. Loop indices that LLVM can prove non-negative
    # (views starting at a, offsets through max(., 0)) and one store target (buf, constant
    # offsets): the loops are vectorised.
    off = max(a - j0, 0)
    x = m0[a - 2:]
    ym2 = mm2[a:]
    ym1 = mm1[a:]
    yp1 = mp1[a:]
    yp2 = mp2[a:]
    tt = itr[a:]
    if use_d:
        dur = du[i, a:]
        dvr = dv[i, a:]
        for q in range(b - a):
            ix = (np.float64(x[q]) - 8.0 * np.float64(x[q + 1])
                  + 8.0 * np.float64(x[q + 3]) - np.float64(x[q + 4])) / 12.0
            iy = (np.float64(ym2[q]) - 8.0 * np.float64(ym1[q]) + 8.0 * np.float64(yp1[q])
                  - np.float64(yp2[q])) / 12.0
            it = np.float64(tt[q])
            _data_px(buf, off + q, ix, iy, it, it + ix * dur[q] + iy * dvr[q], eps2)
    else:
        for q in range(b - a):
            ix = (np.float64(x[q]) - 8.0 * np.float64(x[q + 1])
                  + 8.0 * np.float64(x[q + 3]) - np.float64(x[q + 4])) / 12.0
            iy = (np.float64(ym2[q]) - 8.0 * np.float64(ym1[q]) + 8.0 * np.float64(yp1[q])
                  - np.float64(yp2[q])) / 12.0
            # du = dv = 0: it + ix·0 + iy·0 squares to the same value as it
            it = np.float64(tt[q])
            _data_px(buf, off + q, ix, iy, it, it, eps2)
    for j in range(j0, j1):
        if a <= j < b:
            continue
        ix = (np.float64(m0[max(j - 2, 0)]) - 8.0 * np.float64(m0[max(j - 1, 0)])
              + 8.0 * np.float64(m0[min(j + 1, w - 1)])
              - np.float64(m0[min(j + 2, w - 1)])) / 12.0
        iy = (np.float64(mm2[j]) - 8.0 * np.float64(mm1[j]) + 8.0 * np.float64(mp1[j])
              - np.float64(mp2[j])) / 12.0
        it = np.float64(itr[j])
        r = it + ix * du[i, j] + iy * dv[i, j] if use_d else it
        _data_px(buf, j - j0, ix, iy, it, r, eps2)


@njit(cache=True, error_model="numpy")
def _smooth_chunk(buf, u, v, phi, i, j0, j1):
    """L(u), L(v) (L(f) = −div(φ'∇f)) and Σφ'_nb of row i, pixels j0 .. j1 − 1, into
    ``buf``, summed in the order of :func:`_system_at` (east, west, south, north)."""
    h, w = u.shape
    a = j0
    b = j0
    if 0 < i < h - 1:
        a = max(j0, 1)
        b = max(min(j1, w - 1), a)
        off = max(a - j0, 0)
        for f, lap in ((u, _LU), (v, _LV)):
            # views starting at a − 1 or a (non-negative loop indices: vectorised)
            pw_ = phi[i, a - 1:]
            pn_ = phi[i - 1, a:]
            fw = f[i, a - 1:]
            fn = f[i - 1, a:]
            fs = f[i + 1, a:]
            out = buf[lap + off:]
            for q in range(b - a):
                pe = np.float64(pw_[q + 1])
                f0 = np.float64(fw[q + 1])
                out[q] = (((0.0 - pe * (np.float64(fw[q + 2]) - f0)) + np.float64(pw_[q]) * (
                    f0 - fw[q])) - pe * (np.float64(fs[q]) - f0)) + np.float64(pn_[q]) * (
                    f0 - fn[q])
        pw_ = phi[i, a - 1:]
        pn_ = phi[i - 1, a:]
        out = buf[_WS + off:]
        for q in range(b - a):
            pe = np.float64(pw_[q + 1])
            out[q] = (((0.0 + pe) + np.float64(pw_[q])) + pe) + np.float64(pn_[q])
    for j in range(j0, j1):
        if a <= j < b:
            continue
        lu, lv, wsum = smoothness_at(phi, u, v, i, j, h, w)
        buf[_LU + j - j0] = lu
        buf[_LV + j - j0] = lv
        buf[_WS + j - j0] = wsum


# Scatter of a chunk's pixels of one colour (every other one, from ``o``) into the rows of
# the split layout; the sources are views of ``buf`` starting at that colour's first pixel.


@njit(cache=True, error_model="numpy")
def _od_split(dst, s, ws, n, c, alpha, omega):
    for q in range(n):
        dst[q] = omega / (s[2 * q] / c + 0.05 * alpha + alpha * ws[2 * q])


@njit(cache=True, error_model="numpy")
def _a12_split(dst, s, n, c):
    for q in range(n):
        dst[q] = s[2 * q] / c


@njit(cache=True, error_model="numpy")
def _b_split(dst, s, lap, n, c, alpha):
    for q in range(n):
        dst[q] = -s[2 * q] / c - alpha * lap[2 * q]


@njit(cache=True, error_model="numpy")
def _copy_split(dst, src, n):
    for q in range(n):
        dst[q] = src[2 * q]


@njit(parallel=True, cache=True, error_model="numpy")
def _system_planar_nb(mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, use_d, red, black,
                      pred, pblack, n_bands):
    """:func:`_linear_system_split_nb` (bit-identical output) on planar (C, h, w) ``mix`` and
    ``it_all``; ``use_d`` False takes du = dv = 0 (du, dv are not read). Row bands run in
    parallel; each row in chunks of ``_CHUNK`` pixels, with float64 sums in an L1 buffer."""
    c, h, w = mix.shape
    for b in prange(n_bands):
        buf = np.empty(8 * _CHUNK, np.float64)
        for i in range((b * h) // n_bands, ((b + 1) * h) // n_bands):
            for j0 in range(0, w, _CHUNK):
                j1 = min(j0 + _CHUNK, w)
                buf[: _S2T + _CHUNK] = 0.0
                for k in range(c):
                    _data_chunk(buf, mix[k], it_all[k, i], du, dv, i, j0, j1, use_d, eps2)
                _smooth_chunk(buf, u, v, phi, i, j0, j1)
                for colour in range(2):
                    out = red if colour == 0 else black
                    pout = pblack if colour else pred
                    o = (i + colour) % 2
                    n = (j1 - j0 - o + 1) // 2
                    k0 = j0 // 2
                    ws = buf[_WS + o:]
                    _od_split(out[0, i, k0:], buf[_S11 + o:], ws, n, c, alpha, omega)
                    _od_split(out[1, i, k0:], buf[_S22 + o:], ws, n, c, alpha, omega)
                    _a12_split(out[2, i, k0:], buf[_S12 + o:], n, c)
                    _b_split(out[3, i, k0:], buf[_S1T + o:], buf[_LU + o:], n, c, alpha)
                    _b_split(out[4, i, k0:], buf[_S2T + o:], buf[_LV + o:], n, c, alpha)
                    _copy_split(pout[i + 1, k0 + 1:], phi[i, j0 + o:], n)


@njit(parallel=True, cache=True, fastmath=False)
def _mix_planar_nb(f1s, f2s, mix, it_all):
    """:func:`_mix_nb` of (h, w, C) images into planar (C, h, w) ``mix`` and ``it_all``."""
    h, w, c = f1s.shape
    a = np.float32(0.4)
    b = np.float32(0.6)
    for i in prange(h):
        for j in range(w):
            for k in range(c):
                mix[k, i, j] = a * f1s[i, j, k] + b * f2s[i, j, k]
                it_all[k, i, j] = f2s[i, j, k] - f1s[i, j, k]
