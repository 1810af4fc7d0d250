"""Training patches cut from a full image pair: blur-aware (BAPC) or uniformly placed.

numpy in, numpy out: ``blur``/``sharp`` ``H×W×C``, ``mask`` ``H×W`` (nonzero = blurred), any
dtype, returned unchanged as contiguous ``size×size`` copies, flipped horizontally and
vertically with probability ½ each. Every draw comes from the ``numpy.random.Generator`` given
(seeded → deterministic).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["bapc_crop", "uniform_crop"]


def _check_crop_inputs(blur, sharp, mask, size: int) -> tuple[int, int]:
    h, w = blur.shape[:2]
    if sharp.shape[:2] != (h, w) or mask.shape[:2] != (h, w):
        raise ValueError(
            f"blur {blur.shape}, sharp {sharp.shape} and mask {mask.shape} must share H×W"
        )
    if size > h or size > w:
        raise ValueError(f"patch size {size} is larger than the image ({w}×{h})")
    return h, w


def _flip(arrays: list[np.ndarray], rng: np.random.Generator, flips: bool) -> tuple[list, bool, bool]:
    hflip = vflip = False
    if flips:
        hflip = bool(rng.random() < 0.5)
        vflip = bool(rng.random() < 0.5)
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        out.append(np.ascontiguousarray(a))
    return out, hflip, vflip


def _crop_at(blur, sharp, mask, top: int, left: int, size: int) -> list[np.ndarray]:
    sl = (slice(top, top + size), slice(left, left + size))
    return [blur[sl], sharp[sl], mask[sl]]


def uniform_crop(
    blur: np.ndarray,
    sharp: np.ndarray,
    mask: np.ndarray,
    size: int = 256,
    rng: np.random.Generator | None = None,
    flips: bool = True,
    return_info: bool = False,
):
    """A uniformly placed ``size×size`` patch (the "without BAPC" ablation), then random
    horizontal and vertical flips (probability ½ each).

    numpy in, numpy out: ``blur``/``sharp`` ``H×W×C``, ``mask`` ``H×W``; any dtype, returned
    unchanged (contiguous copies). ``return_info`` adds a dict (top, left, mode, hflip, vflip).
    """
    rng = rng if rng is not None else np.random.default_rng()
    h, w = _check_crop_inputs(blur, sharp, mask, size)
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    out, hflip, vflip = _flip(_crop_at(blur, sharp, mask, top, left, size), rng, flips)
    if return_info:
        info = {"top": top, "left": left, "centre": None, "mode": "uniform", "hflip": hflip, "vflip": vflip}
        return (*out, info)
    return tuple(out)


def bapc_crop(
    blur: np.ndarray,
    sharp: np.ndarray,
    mask: np.ndarray,
    size: int = 256,
    p_blur: float = 0.5,
    rng: np.random.Generator | None = None,
    flips: bool = True,
    erode_px: int = 3,
    return_info: bool = False,
):
    """Blur-aware patch cropping (BAPC) as released with LBAG.

    With probability ``p_blur`` the patch is centred on a pixel drawn uniformly from the blur
    mask's interior (the mask eroded by ``erode_px`` px with a square kernel; if that is empty,
    from the mask itself; if the mask is empty, a uniform crop); otherwise a uniform crop. The
    patch is then clamped inside the image (so near a border the drawn pixel is off-centre but
    still inside the patch), and flipped horizontally and vertically with probability ½ each.

    numpy in, numpy out: ``blur``/``sharp`` ``H×W×C``, ``mask`` ``H×W`` (nonzero = blurred), any
    dtype, returned unchanged (contiguous copies). ``rng``: a ``numpy.random.Generator`` (all
    draws come from it: seeded → deterministic). ``return_info`` adds a dict: ``top``, ``left``
    (before flipping), ``centre`` (the drawn ``(y, x)`` or ``None``), ``mode`` (``"blur"``,
    ``"blur_edge"`` when the eroded mask was empty, ``"uniform"``, ``"uniform_empty_mask"``),
    ``hflip``, ``vflip``.
    """
    rng = rng if rng is not None else np.random.default_rng()
    h, w = _check_crop_inputs(blur, sharp, mask, size)
    if not rng.random() < p_blur:
        return uniform_crop(blur, sharp, mask, size, rng, flips, return_info)
    m = np.asarray(mask) > 0
    mode = "blur"
    if erode_px > 0:
        kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
        inner = cv2.erode(m.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE) > 0
    else:
        inner = m
    ys, xs = np.nonzero(inner)
    if ys.size == 0:
        mode = "blur_edge"
        ys, xs = np.nonzero(m)
    if ys.size == 0:
        out = uniform_crop(blur, sharp, mask, size, rng, flips, return_info)
        if return_info:
            out[-1]["mode"] = "uniform_empty_mask"
        return out
    k = int(rng.integers(0, ys.size))
    cy, cx = int(ys[k]), int(xs[k])
    top = min(max(cy - size // 2, 0), h - size)
    left = min(max(cx - size // 2, 0), w - size)
    out, hflip, vflip = _flip(_crop_at(blur, sharp, mask, top, left, size), rng, flips)
    if return_info:
        info = {"top": top, "left": left, "centre": (cy, cx), "mode": mode, "hflip": hflip, "vflip": vflip}
        return (*out, info)
    return tuple(out)
