"""Numpy twins of the solver kernels (the reference implementation the tests compare with).

Same inputs, outputs and iterations as the numba kernels of :mod:`postprocess.flow.system` and
:mod:`postprocess.flow.sor` (float32 (h, w) flow and weights, (h, w, C) images), in plain numpy;
``pyflow_flow(..., _backend="numpy")`` runs the whole method with them (slow; small inputs).
"""

from __future__ import annotations

import numpy as np

from postprocess.flow.features import _DERIV_TAPS


def _warp_bilinear_np(im1, im2, u, v):
    h, w, c = im2.shape
    yy, xx = np.mgrid[0:h, 0:w]
    x = xx + u.astype(np.float64)
    y = yy + v.astype(np.float64)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    xc = np.where(inside, x, 0.0)
    yc = np.where(inside, y, 0.0)
    x0 = np.floor(xc).astype(np.int64)
    y0 = np.floor(yc).astype(np.int64)
    fx = (xc - x0)[:, :, None]
    fy = (yc - y0)[:, :, None]
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    i2 = im2.astype(np.float64)
    top = (1 - fx) * i2[y0, x0] + fx * i2[y0, x1]
    bottom = (1 - fx) * i2[y1, x0] + fx * i2[y1, x1]
    out = (1 - fy) * top + fy * bottom
    out = np.where(inside[:, :, None], out, im1.astype(np.float64))
    return out.astype(np.float32)


def _smoothness_weight_np(uu, vv, eps2):
    u = uu.astype(np.float64)
    v = vv.astype(np.float64)
    ux = np.zeros_like(u)
    vx = np.zeros_like(v)
    uy = np.zeros_like(u)
    vy = np.zeros_like(v)
    ux[:, :-1] = u[:, 1:] - u[:, :-1]
    vx[:, :-1] = v[:, 1:] - v[:, :-1]
    uy[:-1, :] = u[1:, :] - u[:-1, :]
    vy[:-1, :] = v[1:, :] - v[:-1, :]
    return (0.5 / np.sqrt(ux**2 + uy**2 + vx**2 + vy**2 + eps2)).astype(np.float32)


def _neg_div_np(f, phi):
    """L(f) = −div(φ'∇f) with forward differences, float64."""
    f = f.astype(np.float64)
    p = phi.astype(np.float64)
    fx = np.zeros_like(f)
    fy = np.zeros_like(f)
    fx[:, :-1] = (f[:, 1:] - f[:, :-1]) * p[:, :-1]
    fy[:-1, :] = (f[1:, :] - f[:-1, :]) * p[:-1, :]
    out = -fx - fy
    out[:, 1:] += fx[:, :-1]
    out[1:, :] += fy[:-1, :]
    return out


def _neighbour_weights_np(phi):
    """φ' towards the west, east, north, south neighbour (0 where there is none), float64."""
    p = phi.astype(np.float64)
    west = np.zeros_like(p)
    east = np.zeros_like(p)
    north = np.zeros_like(p)
    south = np.zeros_like(p)
    west[:, 1:] = p[:, :-1]
    east[:, :-1] = p[:, :-1]
    north[1:, :] = p[:-1, :]
    south[:-1, :] = p[:-1, :]
    return west, east, north, south


def _linear_system_np(mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, od1, od2):
    mix = mix.astype(np.float64)
    pad_x = np.pad(mix, ((0, 0), (2, 2), (0, 0)), mode="edge")
    pad_y = np.pad(mix, ((2, 2), (0, 0), (0, 0)), mode="edge")
    h, w = u.shape
    ix = sum(t * pad_x[:, k : k + w] for k, t in enumerate(_DERIV_TAPS) if t != 0)
    iy = sum(t * pad_y[k : k + h, :] for k, t in enumerate(_DERIV_TAPS) if t != 0)
    it = it_all.astype(np.float64)
    r = it + ix * du.astype(np.float64)[:, :, None] + iy * dv.astype(np.float64)[:, :, None]
    psi = 0.5 / np.sqrt(r * r + eps2)
    west, east, north, south = _neighbour_weights_np(phi)
    wsum = west + east + north + south
    od1[...] = omega / ((psi * ix * ix).mean(2) + 0.05 * alpha + alpha * wsum)
    od2[...] = omega / ((psi * iy * iy).mean(2) + 0.05 * alpha + alpha * wsum)
    a12 = (psi * ix * iy).mean(2).astype(np.float32)
    b1 = (-(psi * ix * it).mean(2) - alpha * _neg_div_np(u, phi)).astype(np.float32)
    b2 = (-(psi * iy * it).mean(2) - alpha * _neg_div_np(v, phi)).astype(np.float32)
    return a12, b1, b2


def _sor_red_black_np(od1, od2, a12, b1, b2, phi, alpha, omega, n_iter, du, dv):
    """``n_iter`` red-black SOR sweeps, in place on du, dv (h, w) float32, of
    d1 du + a12 dv − α Σ φ'_nb du_nb = b1,  a12 du + d2 dv − α Σ φ'_nb dv_nb = b2
    given od1 = ω/d1, od2 = ω/d2: du ← (1 − ω) du + ω/d1 (b1 + α Σ φ'_nb du_nb − a12 dv),
    then dv likewise with the new du; red ((i + j) even) pixels first, then black. The edge
    between (i, j) and its east / south neighbour has weight φ'[i, j]. Numpy twin of
    :func:`_sor_nb` (float32 arithmetic, neighbours summed west, east, north, south)."""
    h, w = du.shape
    phi = phi.astype(np.float32)
    ii, jj = np.mgrid[0:h, 0:w]
    colours = [(ii + jj) % 2 == 0, (ii + jj) % 2 == 1]
    keep = np.float32(1.0 - omega)
    al = np.float32(alpha)

    def neighbour_sum(f):
        # same order as the kernel: west, east, north, south
        s = np.zeros_like(f)
        s[:, 1:] += phi[:, :-1] * f[:, :-1]
        s[:, :-1] += phi[:, :-1] * f[:, 1:]
        s[1:, :] += phi[:-1, :] * f[:-1, :]
        s[:-1, :] += phi[:-1, :] * f[1:, :]
        return s

    for _ in range(n_iter):
        for mask in colours:
            new_du = keep * du + od1 * (b1 + al * neighbour_sum(du) - a12 * dv)
            du[mask] = new_du[mask]
            new_dv = keep * dv + od2 * (b2 + al * neighbour_sum(dv) - a12 * du)
            dv[mask] = new_dv[mask]
