"""Menon (2007) DDFAPD demosaicing, bit-identical to colour-demosaicing's, as a numba row pipeline.

``colour_demosaicing.demosaicing_CFA_Bayer_Menon2007`` (colour-demosaicing 0.2.x) is the
reference: :func:`demosaic_menon` reproduces it operation for operation in
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

from core.dng import cfa_index_map
from postprocess.calibration import FrameSizeMismatchError
from postprocess.isp.errors import IspError

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
