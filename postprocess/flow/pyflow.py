"""Pyflow (Ce Liu's coarse-to-fine variational flow), our implementation: the method's driver.

:func:`pyflow_flow` builds the pyramids (:mod:`postprocess.flow.features`) and runs the outer
fixed-point and SOR iterations level by level with the kernels of :mod:`postprocess.flow.system`,
:mod:`postprocess.flow.sor` and :mod:`postprocess.flow.planar` (or their numpy twins,
:mod:`postprocess.flow.reference`). Inputs, output and flow convention: :mod:`postprocess.flow`.

The method (as in Ce Liu's ``OpticalFlow::Coarse2FineFlow`` / ``SmoothFlowSOR``)
---------------------------------------------------------------------------------
* Energy: (1/C) Σ_c ψ(|I2_c(x + w) − I1_c(x)|²) + α ψ(|∇u|² + |∇v|²), ψ(s²) = sqrt(s² + ε²)
  (the data term is the mean over the C channels, as the C++'s ``DImage::collapse``).
* Features (data-term channels): luminance L = 0.299 R + 0.587 G + 0.114 B, its x and y
  derivatives (5-tap [1, −8, 0, 8, −1]/12), G − R and G − B; a grey input gives 3 channels.
* Pyramid: level i is the image smoothed with a Gaussian of σ = (1/ratio − 1)·i (truncated at
  3σ) and resized (bilinear) by ratio**i; once ratio**i < 0.25 a level is made from level i − n
  (n = int(log 0.25 / log ratio)) smoothed with σ = (1/ratio − 1)·n. The number of levels is
  int(log(min_width / W) / log(ratio)) (at least 1), as in the C++.
* Coarse to fine: at level k (0 = finest) ``n_outer + k`` outer and ``n_sor + 3k`` SOR
  iterations, as in the C++. The coarse flow is resized (bilinear) and multiplied by 1/ratio.
* Outer fixed-point loop: warp the second image's features with the current flow (bilinear;
  pixels whose target falls outside the image take the first image's value, so their
  temporal derivative is 0), smooth both with [0.02, 0.11, 0.74, 0.11, 0.02], derivatives of
  0.4·I1 + 0.6·I2w (x, y) and I2w − I1 (t). Inner loop (IRLS): data weights
  ψ'_c = 1 / (2 sqrt((I_t + I_x du + I_y dv)² + ε²)) per channel, smoothness weight
  φ' = 1 / (2 sqrt(|∇(u+du)|² + |∇(v+dv)|² + ε²)) per pixel (forward differences), then
  ``n_sor`` SOR sweeps (ω) on the linear system for (du, dv), with the C++'s extra
  0.05·α on the diagonal.

Differences from the C++ (deliberate)
-------------------------------------
* SOR order: red-black (checkerboard) instead of the C++'s lexicographic order, so that the
  pixels of one colour can be relaxed in parallel (bands of rows, two per thread; inside a
  band red row i is followed at once by black row i − 1 for cache reuse), on a colour-split
  layout (each colour's pixels of a row stored contiguously: unit stride, no branches).
  The linear system is written straight into that layout (no separate packing pass), the
  edge weights are stored once per pixel (shared by the two colours), and on large levels
  the parallel sweeps go six at a time through each band (temporal blocking: a skewed
  wavefront per band, then the rows around the band boundaries; bit-identical results).
  Both orderings are "consistently ordered" for this 5-point system, so by Young's SOR
  theory they share the asymptotic convergence factor at a given ω; only the transient
  differs (red-black damps the highest frequencies faster, lexicographic carries
  information along the scan direction within one sweep). Measured (the test
  ``test_red_black_converges_like_lexicographic``; on a 40x50 system from a real image pair,
  rms distance to the exact solution after 5 / 10 / 30 / 100 sweeps 0.86 / 0.80 / 0.61 /
  0.25 red-black against 0.85 / 0.79 / 0.62 / 0.26 lexicographic): the same rate.
  The result is therefore not bit-identical to the C++ but equally converged.
* Float32 storage for images, coefficients and flow (the C++ uses double); the coefficient
  kernels evaluate in float64, SOR in float32 with ω/diagonal precomputed once per system.
  The numba path builds the system from planar (C, h, w) copies of the smoothed features in
  short vectorised loops over row chunks (same arithmetic as the per-pixel kernel, so the
  same result bit for bit) and allocates its buffers once per pyramid level.
* OpenCV's Gaussian blur and bilinear resize (half-pixel-centre sampling) for the pyramid.
The C++'s adaptive Laplacian noise parameters (only used to switch off a channel that is
identically zero) are not modelled.

The per-pixel numba kernels (``_*_nb``) have plain numpy twins (``_*_np``) running the same
iterations; ``pyflow_flow(..., _backend="numpy")`` runs the whole method with the numpy twins
(slow; for tests on small inputs). The default numba path (:func:`_smooth_flow_sor_planar`)
uses faster kernels with the same arithmetic (chunked system build, blocked SOR), tested bit
for bit against the per-pixel ones; ``_backend="numba-interleaved"`` runs the previous numba
path (same output, bit for bit).
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from postprocess.flow.common import FlowInputError, _check_pair
from postprocess.flow.features import _features, _pyramid, _smooth5
from postprocess.flow.planar import _mix_planar_nb, _system_planar_nb
from postprocess.flow.reference import (
    _linear_system_np,
    _smoothness_weight_np,
    _sor_red_black_np,
    _warp_bilinear_np,
)
from postprocess.flow.sor import (
    _BLOCK_HALF_SWEEPS,
    _SERIAL_MAX_PIXELS,
    _sor_blocked_nb,
    _sor_nb,
    _sor_split_nb,
    _unpack_clear_nb,
    _unpack_nb,
)
from postprocess.flow.system import (
    _linear_system_nb,
    _linear_system_split_nb,
    _mix_nb,
    _smoothness_weight_nb,
    _warp_bilinear_nb,
    _warp_into_nb,
)

_KERNELS = {
    "numba": (_warp_bilinear_nb, _smoothness_weight_nb, _linear_system_nb, _sor_nb),
    "numpy": (_warp_bilinear_np, _smoothness_weight_np, _linear_system_np, _sor_red_black_np),
}
# The numba kernels on the interleaved layout through :func:`_smooth_flow_sor` (the fused
# path before :func:`_smooth_flow_sor_planar`; for tests: same result bit for bit).
_KERNELS["numba-interleaved"] = _KERNELS["numba"]


# ---- the method --------------------------------------------------------------------------


def _smooth_flow_sor(f1, f2, u, v, alpha, n_outer, n_inner, n_sor, omega, eps2, kernels):
    """One pyramid level (Ce Liu's ``SmoothFlowSOR``): updates u, v (h, w) float32 in place."""
    warp, smoothness_weight, linear_system, sor = kernels
    h, w = u.shape
    f1s = _smooth5(f1)
    warped = warp(f1, f2, u, v)
    od1 = np.empty((h, w), np.float32)
    od2 = np.empty((h, w), np.float32)
    du = np.zeros((h, w), np.float32)
    dv = np.zeros((h, w), np.float32)
    split = None
    if sor is _sor_nb:
        # Build the system straight into the colour-split layout and keep du, dv there
        # during SOR (same arithmetic as linear_system + _sor_nb; no packing pass).
        w2 = (w + 1) // 2
        threads = numba.get_num_threads()
        n_bands = 1 if threads == 1 or h * w < _SERIAL_MAX_PIXELS else 2 * threads
        n_bands = max(1, min(n_bands, h // 3))
        red = np.zeros((5, h, w2), np.float32)
        black = np.zeros((5, h, w2), np.float32)
        pr = np.zeros((h + 2, w2 + 2), np.float32)
        pb = np.zeros((h + 2, w2 + 2), np.float32)
        split = [np.zeros((h + 2, w2 + 2), np.float32) for _ in range(4)]
    for _ in range(n_outer):
        f2s = _smooth5(warped)
        mix, it_all = _mix_nb(f1s, f2s)
        du[...] = 0.0
        dv[...] = 0.0
        for inner in range(n_inner):
            if split is not None:
                phi = smoothness_weight(u, v, eps2) if inner == 0 else smoothness_weight(
                    u + du, v + dv, eps2)
                _linear_system_split_nb(
                    mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, red, black, pr, pb)
                ru, rv, bu, bv = split
                for f in split:
                    f[...] = 0.0
                _sor_split_nb(red, black, pr, pb, float(alpha), float(omega), int(n_sor),
                              ru, rv, bu, bv, n_bands)
                _unpack_nb(ru, bu, du)
                _unpack_nb(rv, bv, dv)
                continue
            phi = smoothness_weight(u, v, eps2) if inner == 0 else smoothness_weight(
                u + du, v + dv, eps2)
            a12, b1, b2 = linear_system(
                mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, od1, od2
            )
            du[...] = 0.0
            dv[...] = 0.0
            sor(od1, od2, a12, b1, b2, phi, alpha, omega, n_sor, du, dv)
        u += du
        v += dv
        warped = warp(f1, f2, u, v)


def _smooth_flow_sor_planar(f1, f2, u, v, alpha, n_outer, n_inner, n_sor, omega, eps2):
    """:func:`_smooth_flow_sor` with the numba kernels, bit for bit, faster: buffers allocated
    once per level, ``mix`` and ``it_all`` planar (C, h, w), the system built straight into
    the SOR layout by :func:`_system_planar_nb`, no warp after the last outer iteration."""
    h, w, c = f1.shape
    w2 = (w + 1) // 2
    threads = numba.get_num_threads()
    n_bands = 1 if threads == 1 or h * w < _SERIAL_MAX_PIXELS else 2 * threads
    n_bands = max(1, min(n_bands, h // 3))
    blocked = n_bands > 1 and h // n_bands >= 2 * _BLOCK_HALF_SWEEPS + 2
    f1s = _smooth5(f1)
    warped = np.empty_like(f1)
    f2s = np.empty_like(f1)
    mix = np.empty((c, h, w), np.float32)
    it_all = np.empty((c, h, w), np.float32)
    du = np.empty((h, w), np.float32)
    dv = np.empty((h, w), np.float32)
    red = np.zeros((5, h, w2), np.float32)
    black = np.zeros((5, h, w2), np.float32)
    pr = np.zeros((h + 2, w2 + 2), np.float32)
    pb = np.zeros((h + 2, w2 + 2), np.float32)
    split = np.zeros((4, h + 2, w2 + 2), np.float32)
    ru, rv, bu, bv = split
    for _ in range(n_outer):
        _warp_into_nb(f1, f2, u, v, warped)
        _smooth5(warped, f2s)
        _mix_planar_nb(f1s, f2s, mix, it_all)
        # (du, dv are read only after the first inner iteration has written them)
        for inner in range(n_inner):
            if inner == 0:
                phi = _smoothness_weight_nb(u, v, eps2)
            else:
                phi = _smoothness_weight_nb(u + du, v + dv, eps2)
            _system_planar_nb(mix, it_all, u, v, du, dv, phi, alpha, eps2, omega, inner > 0,
                              red, black, pr, pb, n_bands)
            # (the split du, dv are 0 here: allocated so, cleared by _unpack_clear_nb)
            if blocked:
                _sor_blocked_nb(red, black, pr, pb, alpha, omega, int(n_sor), ru, rv, bu, bv,
                                n_bands, _BLOCK_HALF_SWEEPS)
            else:
                _sor_split_nb(red, black, pr, pb, alpha, omega, int(n_sor), ru, rv, bu, bv,
                              n_bands)
            # du, dv out of the split layout; after the last inner iteration u += du, v += dv
            _unpack_clear_nb(ru, bu, rv, bv, du, dv, u, v, inner == n_inner - 1)


def pyflow_flow(
    reference,
    moving,
    alpha: float = 0.012,
    ratio: float = 0.75,
    min_width: int = 20,
    n_outer: int = 7,
    n_inner: int = 1,
    n_sor: int = 30,
    omega: float = 1.8,
    epsilon: float = 0.001,
    *,
    _backend: str = "numba",
) -> np.ndarray:
    """Our implementation of Pyflow (Ce Liu's Coarse2Fine variational flow).

    reference, moving: (H, W, 3) RGB or (H, W) grey float images in [0, 1], same size; the
    reference is camera S, the moving image camera B. Returns the (H, W, 2) float32 flow in
    pixels, ``flow[y, x] = (dx, dy)`` with reference(x, y) ~ moving(x + dx, y + dy) (module
    docstring). Parameters are Pyflow's (the paper's defaults): ``alpha`` smoothness weight,
    ``ratio`` pyramid downsampling ratio, ``min_width`` coarsest width, ``n_outer`` /
    ``n_inner`` fixed-point iterations (warping / IRLS re-weighting), ``n_sor`` SOR sweeps
    with relaxation ``omega``, ``epsilon`` of the Charbonnier penalty. Raises FlowInputError
    for unusable images.
    """
    ref, mov = _check_pair(reference, moving)
    if not 0.0 < ratio < 1.0:
        raise FlowInputError(f"ratio must be in (0, 1), got {ratio}")
    if not 0.0 < omega < 2.0:
        raise FlowInputError(f"omega must be in (0, 2) for SOR to converge, got {omega}")
    if min(n_outer, n_inner, n_sor) < 1 or min_width < 1:
        raise FlowInputError("n_outer, n_inner, n_sor and min_width must all be >= 1")
    kernels = _KERNELS[_backend]
    planar = _backend == "numba"
    eps2 = float(epsilon) ** 2
    pyr1 = _pyramid(ref, ratio, min_width)
    pyr2 = _pyramid(mov, ratio, min_width)
    u = v = None
    threads = numba.get_num_threads()
    try:
        for k in range(len(pyr1) - 1, -1, -1):
            h, w = pyr1[k].shape[:2]
            numba.set_num_threads(1 if h * w < _SERIAL_MAX_PIXELS else threads)
            f1 = _features(pyr1[k])
            f2 = _features(pyr2[k])
            if u is None:
                u = np.zeros((h, w), np.float32)
                v = np.zeros((h, w), np.float32)
            else:
                scale = np.float32(1.0 / ratio)
                u = cv2.resize(u, (w, h), interpolation=cv2.INTER_LINEAR) * scale
                v = cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR) * scale
            if planar:
                _smooth_flow_sor_planar(
                    f1, f2, u, v, float(alpha), n_outer + k, n_inner, n_sor + 3 * k,
                    float(omega), eps2,
                )
            else:
                _smooth_flow_sor(
                    f1, f2, u, v, float(alpha), n_outer + k, n_inner, n_sor + 3 * k,
                    float(omega), eps2, kernels,
                )
    finally:
        numba.set_num_threads(threads)
    return np.ascontiguousarray(np.stack([u, v], axis=2), dtype=np.float32)
