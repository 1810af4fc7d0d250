"""Red-black SOR on the colour-split layout (unit stride, no branches), in bands of rows.

The system (ω/d1, ω/d2, a12, b1, b2) of each colour is (5, h, W2) float32 and du, dv and φ' of
each colour live in zero-framed (h + 2, W2 + 2) float32 arrays (layout below). Plain sweeps
(:func:`_sor_split_nb`, two per pass) and temporal blocking (:func:`_sor_blocked_nb`, several
sweeps per pass) give the same result bit for bit. :func:`_sor_nb` runs the whole SOR on (h, w)
arrays (packing and unpacking included).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

# ---- SOR on a colour-split layout (unit stride, no branches in the inner loop) -----------
#
# Pixel (i, j) has colour (i + j) % 2. Colour c of row i holds j = o + 2k, k = 0 .. W2 − 1,
# o = (i + c) % 2, W2 = (w + 1) // 2 (the last k of a row can be a dummy when w is odd: its
# weights and ω/d are 0, so it stays 0). du, dv of a colour live in (h + 2, W2 + 2) arrays with
# a zero frame; in frame coordinates the four neighbours (other colour) of (i, k) are
# west (i + 1, k + o), east (i + 1, k + o + 1), north (i, k + 1), south (i + 2, k + 1).
# The edge weights are not stored per pixel: φ'[i, j] of each colour lives in a framed
# (h + 2, W2 + 2) array like du (0 in the frame and the dummies). The east and south edges
# of (i, j) have weight φ'[i, j] (own array, same frame position as du); the west and north
# edges have the own φ' of the west and north neighbours (other colour's array, same frame
# position as those neighbours). Where a neighbour is missing its du, dv are the frame's or a
# dummy's exact 0, so the product is 0 as with a zero weight (bit-identical sums).


@njit(parallel=True, cache=True, fastmath=False)
def _pack_system_nb(od1, od2, a12, b1, b2, phi, colour):
    """((5, h, W2), (h + 2, W2 + 2)) float32: od1, od2, a12, b1, b2 of the pixels of one
    colour (0 for dummies) and their φ' in a zero-framed split array."""
    h, w = od1.shape
    w2 = (w + 1) // 2
    out = np.zeros((5, h, w2), np.float32)
    pout = np.zeros((h + 2, w2 + 2), np.float32)
    for i in prange(h):
        o = (i + colour) % 2
        for k in range(w2):
            j = o + 2 * k
            if j >= w:
                continue
            out[0, i, k] = od1[i, j]
            out[1, i, k] = od2[i, j]
            out[2, i, k] = a12[i, j]
            out[3, i, k] = b1[i, j]
            out[4, i, k] = b2[i, j]
            pout[i + 1, k + 1] = phi[i, j]
    return out, pout


@njit(cache=True, fastmath=False, inline="always")
def _sor_row_split(i, o, sys_, own_p, oth_p, own_u, own_v, oth_u, oth_v, keep, al):
    """Relax row i of one colour (offset o) on the split layout."""
    w2 = sys_.shape[2]
    for k in range(w2):
        ww = oth_p[i + 1, k + o]
        we = own_p[i + 1, k + 1]
        wn = oth_p[i, k + 1]
        ws = we
        s1 = (ww * oth_u[i + 1, k + o] + we * oth_u[i + 1, k + o + 1]
              + wn * oth_u[i, k + 1] + ws * oth_u[i + 2, k + 1])
        s2 = (ww * oth_v[i + 1, k + o] + we * oth_v[i + 1, k + o + 1]
              + wn * oth_v[i, k + 1] + ws * oth_v[i + 2, k + 1])
        c12 = sys_[2, i, k]
        du_new = keep * own_u[i + 1, k + 1] + sys_[0, i, k] * (
            sys_[3, i, k] + al * s1 - c12 * own_v[i + 1, k + 1])
        own_u[i + 1, k + 1] = du_new
        own_v[i + 1, k + 1] = keep * own_v[i + 1, k + 1] + sys_[1, i, k] * (
            sys_[4, i, k] + al * s2 - c12 * du_new)


@njit(cache=True, fastmath=False, inline="always")
def _red_row(i, red, black, pr, pb, ru, rv, bu, bv, keep, al):
    _sor_row_split(i, i % 2, red, pr, pb, ru, rv, bu, bv, keep, al)


@njit(cache=True, fastmath=False, inline="always")
def _black_row(i, red, black, pr, pb, ru, rv, bu, bv, keep, al):
    _sor_row_split(i, (i + 1) % 2, black, pb, pr, bu, bv, ru, rv, keep, al)


#: Bands shorter than this do one sweep per pass over their rows (the two-sweep pipeline
#: needs room for its lagging rows).
_MIN_BAND_ROWS_2 = 8


@njit(parallel=True, cache=True, fastmath=False)
def _sor_split_nb(red, black, pr, pb, alpha, omega, n_iter, ru, rv, bu, bv, n_bands):
    """``n_iter`` red-black sweeps on the split layout, pipelined in bands of rows (as
    :mod:`postprocess.flow.pyflow`'s docstring); n_bands = 1 runs on the calling thread only.

    Two sweeps are done per pass over a band's rows (temporal blocking, so the rows come
    from cache the second time): at step i red row i (sweep 1), black row i − 1 (sweep 1),
    red row i − 2 (sweep 2), black row i − 3 (sweep 2). Each update reads exactly the
    values the plain order gives it (a colour's pixels depend only on the other colour),
    so the result is bit-identical. Rows next to another band are finished in later
    parallel phases, once the other band's rows they read are ready."""
    h = red.shape[1]
    keep = np.float32(1.0 - omega)
    al = np.float32(alpha)
    starts = np.empty(n_bands + 1, np.int64)
    for b in range(n_bands + 1):
        starts[b] = (b * h) // n_bands
    # (the single-band case keeps one sweep per pass: measured faster there)
    two = n_bands > 1 and h // n_bands >= _MIN_BAND_ROWS_2
    n_pairs = n_iter // 2 if two else 0
    for _ in range(n_pairs):
        # phase 1: everything that reads no row another band writes in this phase
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            for i in range(top, bottom + 3):
                if i < bottom:
                    _red_row(i, red, black, pr, pb, ru, rv, bu, bv, keep, al)
                if top + 1 <= i - 1 < bottom - 1:
                    _black_row(i - 1, red, black, pr, pb, ru, rv, bu, bv, keep, al)
                if top + 2 <= i - 2 < bottom - 2:
                    _red_row(i - 2, red, black, pr, pb, ru, rv, bu, bv, keep, al)
                if top + 3 <= i - 3 < bottom - 3:
                    _black_row(i - 3, red, black, pr, pb, ru, rv, bu, bv, keep, al)
        # phase 2: black edge rows, sweep 1
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            _black_row(top, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _black_row(bottom - 1, red, black, pr, pb, ru, rv, bu, bv, keep, al)
        # phase 3: red edge rows, sweep 2, then the black rows next to them
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            _red_row(top, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _red_row(top + 1, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _red_row(bottom - 2, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _red_row(bottom - 1, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _black_row(top + 1, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _black_row(top + 2, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _black_row(bottom - 3, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _black_row(bottom - 2, red, black, pr, pb, ru, rv, bu, bv, keep, al)
        # phase 4: black edge rows, sweep 2
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            _black_row(top, red, black, pr, pb, ru, rv, bu, bv, keep, al)
            _black_row(bottom - 1, red, black, pr, pb, ru, rv, bu, bv, keep, al)
    for _ in range(n_iter - 2 * n_pairs):
        if n_bands == 1:
            for i in range(h + 1):
                if i < h:
                    _sor_row_split(i, i % 2, red, pr, pb, ru, rv, bu, bv, keep, al)
                if i >= 1:
                    _sor_row_split(i - 1, i % 2, black, pb, pr, bu, bv, ru, rv, keep, al)
            continue
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            for i in range(top, bottom):
                _sor_row_split(i, i % 2, red, pr, pb, ru, rv, bu, bv, keep, al)
                if i - 1 > top:
                    _sor_row_split(i - 1, i % 2, black, pb, pr, bu, bv, ru, rv, keep, al)
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            _sor_row_split(top, (top + 1) % 2, black, pb, pr, bu, bv, ru, rv, keep, al)
            if bottom - 1 > top:
                _sor_row_split(bottom - 1, bottom % 2, black, pb, pr, bu, bv, ru, rv, keep, al)


#: Half-sweeps (red or black) per pass of :func:`_sor_blocked_nb` (12: six sweeps).
_BLOCK_HALF_SWEEPS = 12


@njit(cache=True, fastmath=False, inline="always")
def _half_row(r, t, red, black, pr, pb, ru, rv, bu, bv, keep, al):
    if t % 2 == 0:
        _red_row(r, red, black, pr, pb, ru, rv, bu, bv, keep, al)
    else:
        _black_row(r, red, black, pr, pb, ru, rv, bu, bv, keep, al)


@njit(parallel=True, cache=True, fastmath=False)
def _sor_blocked_nb(red, black, pr, pb, alpha, omega, n_iter, ru, rv, bu, bv, n_bands, n_half):
    """``n_iter`` red-black sweeps on the split layout like :func:`_sor_split_nb` (bit for
    bit: each update reads the same values), ``n_half`` (even) half-sweeps per pass over the
    rows, so that rows come from cache ``n_half`` times. Bands of rows must have at least
    2 ``n_half`` + 2 rows.

    Pass of T = ``n_half`` half-sweeps (t = 0 .. T − 1; even t red, odd t black):
    phase A, bands in parallel, a skewed wavefront (half-sweep t at row step − t) over the
    rows of the band that do not depend on another band's work of this pass: at t the rows
    [top + t, bottom − t) (no shrinking at the image's top and bottom). Phase B, boundaries
    in parallel: at a boundary row B, for t = 1 .. T − 1 the rows [B − t, B + t) left
    over. Row r at t reads rows r − 1 .. r + 1 at t − 1, which phase A has left in that
    state or phase B has just brought there."""
    h = red.shape[1]
    keep = np.float32(1.0 - omega)
    al = np.float32(alpha)
    starts = np.empty(n_bands + 1, np.int64)
    for b in range(n_bands + 1):
        starts[b] = (b * h) // n_bands
    done = 0
    while done < n_iter:
        t_pass = min(n_half, 2 * (n_iter - done))
        for b in prange(n_bands):
            top = starts[b]
            bottom = starts[b + 1]
            for step in range(top, bottom + t_pass - 1):
                for t in range(t_pass):
                    r = step - t
                    lo = top + t if top > 0 else top
                    hi = bottom - t if bottom < h else bottom
                    if lo <= r < hi:
                        _half_row(r, t, red, black, pr, pb, ru, rv, bu, bv, keep, al)
        for q in prange(n_bands - 1):
            edge = starts[q + 1]
            for t in range(1, t_pass):
                for r in range(edge - t, edge + t):
                    _half_row(r, t, red, black, pr, pb, ru, rv, bu, bv, keep, al)
        done += t_pass // 2


@njit(parallel=True, cache=True, fastmath=False)
def _unpack_nb(split_r, split_b, out):
    """Write the framed split arrays of both colours back into ``out`` (h, w)."""
    h, w = out.shape
    for i in prange(h):
        for j in range(w):
            k = j // 2
            if (i + j) % 2 == 0:
                out[i, j] = split_r[i + 1, k + 1]
            else:
                out[i, j] = split_b[i + 1, k + 1]


@njit(parallel=True, cache=True, fastmath=False)
def _unpack_clear_nb(ru, bu, rv, bv, du, dv, u, v, add):
    """:func:`_unpack_nb` of both components into du, dv, then every slot of the split
    arrays of a row set back to 0 (ready for the next SOR); with ``add`` also u += du,
    v += dv (float32, as numpy), all in one pass."""
    h, w = du.shape
    w2 = ru.shape[1] - 2
    for i in prange(h):
        for j in range(w):
            k = j // 2
            if (i + j) % 2 == 0:
                a = ru[i + 1, k + 1]
                b = rv[i + 1, k + 1]
            else:
                a = bu[i + 1, k + 1]
                b = bv[i + 1, k + 1]
            du[i, j] = a
            dv[i, j] = b
            if add:
                u[i, j] += a
                v[i, j] += b
        for k in range(1, w2 + 1):
            ru[i + 1, k] = 0.0
            rv[i + 1, k] = 0.0
            bu[i + 1, k] = 0.0
            bv[i + 1, k] = 0.0


@njit(parallel=True, cache=True, fastmath=False)
def _pack_flow_nb(f, colour):
    """The pixels of one colour of f (h, w) in a framed (h + 2, W2 + 2) split array."""
    h, w = f.shape
    w2 = (w + 1) // 2
    out = np.zeros((h + 2, w2 + 2), np.float32)
    for i in prange(h):
        o = (i + colour) % 2
        for k in range(w2):
            j = o + 2 * k
            if j < w:
                out[i + 1, k + 1] = f[i, j]
    return out


#: Pyramid levels with fewer pixels than this run single-threaded (numba's thread pool costs
#: ~15 us per parallel region on a shared machine with passive waiting, more when spinning; a
#: small level has thousands of regions: 5 per outer iteration, 2 per SOR sweep).
_SERIAL_MAX_PIXELS = 20_000


def _sor_nb(od1, od2, a12, b1, b2, phi, alpha, omega, n_iter, du, dv, n_bands=None):
    """Red-black SOR (see :func:`postprocess.flow.reference._sor_red_black_np` for the iteration) on the split layout,
    in place on du, dv (h, w) float32. ``n_bands`` row bands run in parallel (default: 1 on
    small levels or with one numba thread, else 2 per thread)."""
    h, w = du.shape
    if n_bands is None:
        threads = numba.get_num_threads()
        n_bands = 1 if threads == 1 or h * w < _SERIAL_MAX_PIXELS else 2 * threads
    n_bands = max(1, min(int(n_bands), h // 3))
    red, pr = _pack_system_nb(od1, od2, a12, b1, b2, phi, 0)
    black, pb = _pack_system_nb(od1, od2, a12, b1, b2, phi, 1)
    ru, rv = _pack_flow_nb(du, 0), _pack_flow_nb(dv, 0)
    bu, bv = _pack_flow_nb(du, 1), _pack_flow_nb(dv, 1)
    _sor_split_nb(red, black, pr, pb, float(alpha), float(omega), int(n_iter), ru, rv, bu, bv,
                  n_bands)
    _unpack_nb(ru, bu, du)
    _unpack_nb(rv, bv, dv)
