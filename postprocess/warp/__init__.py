"""Image warping by a dense flow, with constant-MTF (CMTF) interpolation.

Flow convention (project-wide): ``flow[y, x] = (dx, dy)`` means
``output(x, y) = input(x + dx, y + dy)``, i.e. what ``cv2.remap(input, x + dx, y + dy)`` does.

:func:`warp` applies one of the :data:`WARP_METHODS` (by name; ``cmtf`` by default) to an
(H, W) or (H, W, C) image and an (H, W, 2) flow in pixels; the result is float32 with the
image's shape. Why CMTF and how its kernel table is designed: :mod:`postprocess.warp.design`.

Measured (``benchmarks/bench_warp.py``, 2152x1436x3, 2 shared cores, preliminary): response
to 0.4 cycles/px over 33 phases 1.044-1.058 (1.3 % variation; Lanczos-4 0.79-1.00, 21 %;
spline-5 16 %); round trip +-15/32 px 45.6 dB (Lanczos-4 42.4, spline-5 43.1); time 0.24 s
vs 0.30 s for Lanczos-4 in the same (heavily loaded) run.

Borders: samples outside the image are taken from the nearest edge pixel (replicate) in the
gather; the sharpening filter reflects (``BORDER_REFLECT_101``). ``lanczos4``/``linear`` use
OpenCV's ``remap`` with ``BORDER_REFLECT_101``; ``spline`` uses ``scipy.ndimage.map_coordinates``
(order 5, ``mode="mirror"``, the same reflection).

Modules: :mod:`~postprocess.warp.design` (the CMTF kernel table), :mod:`~postprocess.warp.cmtf`
(the numba gather and the sharpening), :mod:`~postprocess.warp.methods` (the registry of
methods by name, the OpenCV and scipy interpolators, :func:`warp`, :func:`mtf_at`).
"""

from __future__ import annotations

from postprocess.warp.cmtf import cmtf_gather_reference, warp_cmtf
from postprocess.warp.design import CMTFKernels, design_cmtf
from postprocess.warp.methods import METHODS, WARP_METHODS, WarpInputError, mtf_at, warp

__all__ = [
    "CMTFKernels",
    "METHODS",
    "WARP_METHODS",
    "WarpInputError",
    "cmtf_gather_reference",
    "design_cmtf",
    "mtf_at",
    "warp",
    "warp_cmtf",
]
