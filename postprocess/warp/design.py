"""The CMTF kernel table: one interpolation kernel per sub-pixel phase, all with one MTF.

Why CMTF
--------
An ordinary interpolator (linear, cubic, Lanczos, B-splines) is a different filter at every
sub-pixel phase: at phase 0 it is the identity, at phase 1/2 it is a low-pass. A warped image is
therefore sharper where the flow happens to be near a whole pixel than where it is near a half
pixel (OpenCV Lanczos-4 keeps 100 % of a 0.4 cycles/px sinusoid at phase 0 and 79 % at phase
1/2). CMTF interpolation (after Freedman & Fleming, as used by ReLoBlur, Li et al. AAAI 2023)
uses a table of kernels, one per sub-pixel phase, designed so that *every* phase has the same
modulation transfer function T(f); one space-invariant sharpening filter S then lifts that
common MTF back towards 1. No public kernel table exists: this module designs its own.

The design (``design_cmtf``, deterministic, cached)
---------------------------------------------------
* Support: ``taps`` (default 6) samples per axis, offsets ``k = -(taps//2 - 1) .. taps//2``
  from ``floor(x + dx)``; ``phases`` (default 32) phases ``phi = p / phases``, p = 0..phases
  (the last row, phase 1, is kept so that rounding to the nearest phase needs no special case).
  Each pixel uses the phase nearest its fractional offset (at most 1/64 px of position error);
  x and y use the same table, separably: ``sum_j ky[j] sum_i kx[i] img[y0 + j, x0 + i]``.
* Kernels: for a given target T(f), each phase's kernel is the weighted least-squares fit of its
  frequency response ``H_phi(f) = sum_k h[k] exp(i 2 pi f k)`` to ``T(f) exp(i 2 pi f phi)``
  over 201 frequencies on [0, 0.5] cycles/px (weight 1 up to 0.45, ``nyquist_weight`` = 0.03
  above, where phase 1/2 must reach 0 and phase 0 need not, so no common T is possible there),
  real taps, with two equality constraints: DC gain 1 (sum h = 1) and centroid at the shift
  (sum k h = phi, so low frequencies are moved without a position bias).
* Target: T is not chosen by hand but is "the best that all phases can reach": it minimises the
  sum over the 33 phases of the fitting error plus ``sharpness`` (0.2) * sum_{f <= 0.42}
  (T(f) - 1)^2, solved by alternating least squares (kernels given T; then T given the kernels:
  a weighted mean of the phases' real responses pulled towards 1), from T = cos(pi f), until no
  value moves by more than 1e-7 (at most 1000 rounds; slow but monotone convergence). A larger
  ``sharpness`` gives a sharper T (less sharpening needed, less noise gain) but a larger spread
  between phases; 0.2 keeps the spread of |H_phi| at 0.4 cycles/px at 1.3 % and
  below 3 % on all of [0, 0.4]. The resulting T: 1.00 / 0.96 / 0.50 / 0.29 / 0.13 at f = 0 /
  0.3 / 0.4 / 0.45 / 0.5.
* Sharpening: a symmetric ``sharpen_taps`` (13) FIR S, DC gain 1, weighted least-squares fit of
  ``S(f) T(f)`` to D(f) = 1 up to ``passband`` (0.47) cycles/px and a raised-cosine roll-off to
  0 at 0.5 (weight ``low_weight`` = 10 up to 0.3 cycles/px, 1 above; tiny ridge). Result:
  S T within 0.6 % of 1 up to 0.3 cycles/px, 1.06 at 0.4, 0.90 at 0.45, 0.48 at 0.5. S's gain
  peaks near 3.6 close to Nyquist: image noise at the highest frequencies is amplified (the price
  of a constant, high MTF with 6 taps). Applied after the gather, separably, reflected borders.
* Whole pixels: the sharpening is always applied, so the output at phase 0 is the image filtered
  by S * h_0, whose response is S(f) T(f) ~ 1 up to 0.4 cycles/px: nearly, not exactly, the
  identity (about 65 dB PSNR on a photograph; tested > 45 dB). What is exact is shift
  equivariance: an integer flow gives exactly the zero-flow output translated by that many
  pixels (same taps, same arithmetic; tested). The point of CMTF is that a flow which is whole
  in some places and fractional in others gives the same sharpness everywhere.

``design_cmtf()`` (defaults: 32 phases, 6 taps, 13-tap sharpening) is what ``warp(method="cmtf")``
uses; the table is applied by :mod:`postprocess.warp.cmtf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class CMTFKernels:
    """A designed CMTF kernel table.

    table: (phases + 1, taps) float32; row p is the kernel for sub-pixel phase p / phases, tap i
        weighs input sample ``floor(x + dx) + offsets[i]``; every row sums to 1.
    offsets: (taps,) int, ``-(taps//2 - 1) .. taps//2``.
    sharpen: (sharpen_taps,) float32 symmetric sharpening FIR, sums to 1.
    freqs: (F,) float64 frequencies in cycles/px on [0, 0.5] used by the design.
    target: (F,) float64 the common MTF T(f) of the table.
    sharpen_response: (F,) float64 S(f).
    """

    phases: int
    table: np.ndarray
    offsets: np.ndarray
    sharpen: np.ndarray
    freqs: np.ndarray
    target: np.ndarray
    sharpen_response: np.ndarray

    @property
    def taps(self) -> int:
        return int(self.table.shape[1])

    def response(self, phase_index: int, freqs: np.ndarray | None = None) -> np.ndarray:
        """Complex response of row ``phase_index`` with the ideal shift removed: ~ T(f)."""
        f = self.freqs if freqs is None else np.asarray(freqs, float)
        phi = phase_index / self.phases
        basis = np.exp(2j * np.pi * np.outer(f, self.offsets))
        return basis @ self.table[phase_index].astype(float) * np.exp(-2j * np.pi * f * phi)


class _PhaseFit:
    """Weighted least squares for one phase, factorised once (only the target T changes).

    fit(T) -> real taps h (taps,) minimising sum_f weight^2 |H(f) - T(f) e^{i2pi f phi}|^2
    subject to sum(h) = 1 (DC gain 1) and sum(k h) = phi (the centroid is at the shift: low
    frequencies are moved by exactly phi, with no position bias).
    """

    def __init__(self, phi: float, offsets: np.ndarray, f: np.ndarray, weight: np.ndarray):
        self.phi = phi
        self.n = offsets.size
        basis = np.exp(2j * np.pi * np.outer(f, offsets))
        self.basis = basis
        self.a = np.vstack([basis.real * weight[:, None], basis.imag * weight[:, None]])
        shift = np.exp(2j * np.pi * f * phi)
        self.b_per_t = np.concatenate([shift.real * weight, shift.imag * weight])
        self.unshift = np.exp(-2j * np.pi * f * phi)
        constraints = np.stack([np.ones(self.n), offsets.astype(float)])  # sum h, sum k h
        kkt = np.zeros((self.n + 2, self.n + 2))
        kkt[:self.n, :self.n] = self.a.T @ self.a
        kkt[:self.n, self.n:] = constraints.T
        kkt[self.n:, :self.n] = constraints
        self.kkt_inv = np.linalg.inv(kkt)

    def fit(self, target: np.ndarray) -> np.ndarray:
        b = self.b_per_t * np.concatenate([target, target])
        rhs = np.concatenate([self.a.T @ b, [1.0, self.phi]])
        return (self.kkt_inv @ rhs)[:self.n]

    def real_response(self, h: np.ndarray) -> np.ndarray:
        """Re(H(f) e^{-i2pi f phi}): the phase's response along the ideal shift."""
        return (self.basis @ h * self.unshift).real


@lru_cache(maxsize=8)
def design_cmtf(phases: int = 32, taps: int = 6, sharpness: float = 0.2,
                nyquist_weight: float = 0.03, sharpen_taps: int = 13,
                sharpen_ridge: float = 1e-6, passband: float = 0.47,
                low_weight: float = 10.0) -> CMTFKernels:
    """Design the CMTF kernel table and sharpening filter (see the module docstring).

    Deterministic; cached per argument set (the returned arrays must not be modified).
    """
    if phases < 2 or taps < 2 or taps % 2 or sharpen_taps < 1 or sharpen_taps % 2 == 0:
        raise ValueError("need phases >= 2, an even taps >= 2 and an odd sharpen_taps >= 1")
    f = np.linspace(0.0, 0.5, 201)
    weight = np.where(f <= 0.45, 1.0, nyquist_weight)
    pull = np.where(f <= 0.42, 1.0, 0.0) * sharpness
    offsets = np.arange(taps) - (taps // 2 - 1)
    phis = np.arange(phases + 1) / phases
    fits = [_PhaseFit(phi, offsets, f, weight) for phi in phis]
    target = np.cos(np.pi * f)
    for _ in range(1000):
        num = np.zeros_like(f)
        for fit in fits:
            num += weight**2 * fit.real_response(fit.fit(target))
        new = (num + pull) / (len(fits) * weight**2 + pull)
        change = float(np.max(np.abs(new - target)))
        target = new
        if change < 1e-7:
            break
    table = np.array([fit.fit(target) for fit in fits])

    # Sharpening: symmetric FIR, S(f) = s0 + 2 sum_k s_k cos(2 pi f k), DC gain 1.
    half = sharpen_taps // 2
    cosines = 2 * np.cos(2 * np.pi * np.outer(f, np.arange(1, half + 1)))
    cos_basis = np.concatenate([np.ones((f.size, 1)), cosines], axis=1)
    desired = np.where(f <= passband, 1.0,
                       0.5 * (1 + np.cos(np.pi * (f - passband) / (0.5 - passband))))
    fit_weight = np.where(f <= 0.3, low_weight, 1.0)
    a = cos_basis * (target * fit_weight)[:, None]
    n = half + 1
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n] = a.T @ a + sharpen_ridge * f.size * np.eye(n)
    kkt[:n, n] = cos_basis[0]
    kkt[n, :n] = cos_basis[0]
    rhs = np.concatenate([a.T @ (desired * fit_weight), [1.0]])
    s_half = np.linalg.solve(kkt, rhs)[:n]
    sharpen = np.concatenate([s_half[:0:-1], s_half])
    return CMTFKernels(
        phases=phases,
        table=_readonly(table.astype(np.float32)),
        offsets=_readonly(offsets),
        sharpen=_readonly(sharpen.astype(np.float32)),
        freqs=_readonly(f),
        target=_readonly(target),
        sharpen_response=_readonly(cos_basis @ s_half),
    )


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.setflags(write=False)
    return a
