"""Deblurring one image of any size with a loaded model, whole or in overlapping tiles.

- :func:`prepare_image` takes one image (``H×W``, ``H×W×1``, ``H×W×3`` or ``H×W×4``; uint8,
  uint16 or float in [0, 1]; RGB order; sides 16 to 8192 px by default) → float32 ``H×W×3`` in
  [0, 1], or :class:`ImageInputError` saying what is wrong.
- :func:`deblur_image` returns the deblurred ``H×W×3`` float32 image in [0, 1] and, for gated
  models (LBAG), the predicted blur mask ``H×W`` float32: the full-scale gate, in [0.1, 1] for
  the default clamp. No mask file is ever needed. Sizes that are not multiples of 4 are
  reflect-padded and cropped back; ``tile`` (px) bounds memory (:func:`tile_starts` places the
  tiles, blended with linear ramps over ``overlap`` px).

Precision: ``dtype="fp32"`` everywhere; ``"bf16"`` (autocast, and channels_last) only on CUDA.
On CPU ``bf16`` is refused with :class:`InferenceError` (bf16 autocast on most CPUs is slower
than fp32 and its accuracy here is unvalidated).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deblur.archs import model_output
from deblur.device import resolve_device
from deblur.errors import ImageInputError, InferenceError
from deblur.requests import DEFAULT_MAX_SIDE

__all__ = ["DEFAULT_MAX_SIDE", "MIN_SIDE", "DType", "deblur_image", "prepare_image", "tile_starts"]

DType = Literal["fp32", "bf16"]
MIN_SIDE = 16


def prepare_image(
    image: np.ndarray, max_side: int = DEFAULT_MAX_SIDE, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Any accepted image → float32 ``H×W×3`` in [0, 1] (RGB order assumed).

    Gray (``H×W`` or ``H×W×1``) → 3 equal channels; ``H×W×4`` → alpha dropped; uint8 → /255;
    uint16 → /65535; float → as is (must be finite and in [0, 1] within 1e-3, then clipped).
    :class:`ImageInputError` says what is wrong otherwise, and for sides below ``min_side``
    (16) or above ``max_side`` (8192) px.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3:
        raise ImageInputError(f"expected an H×W or H×W×C image, got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.shape[2] != 3:
        raise ImageInputError(f"expected 1, 3 or 4 channels, got {arr.shape[2]} (shape {arr.shape})")
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        raise ImageInputError(f"image is {w}×{h} px; both sides must be at least {min_side} px")
    if max(h, w) > max_side:
        raise ImageInputError(
            f"image is {w}×{h} px; sides above {max_side} px are refused (raise max_side, or "
            "downscale the image)"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ImageInputError("float image contains NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageInputError(
                f"float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] "
                "(pass uint8/uint16 arrays for integer data)"
            )
        return np.clip(out, 0.0, 1.0)
    raise ImageInputError(f"unsupported image dtype {arr.dtype} (use uint8, uint16 or float)")


def _ceil4(x: int) -> int:
    return -(-x // 4) * 4


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile length and start offsets along one axis of ``length`` px (a multiple of 4).

    The fewest tiles of at most ``tile`` px that overlap by ``overlap`` px cover the axis; the
    tile length is then shrunk to spread them evenly (a multiple of 4, so that the model's ½ and
    ¼ scales stay on the whole image's grid) and starts are multiples of 4; consecutive tiles
    overlap by at least ``overlap − 3`` px.
    """
    if length <= tile:
        return length, [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    t = min(tile, _ceil4(math.ceil((length + (n - 1) * overlap) / n)))
    span = length - t
    starts = [(i * span // (n - 1)) // 4 * 4 for i in range(n - 1)] + [span]
    return t, starts


def _ramp(t: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """Per-axis blending weight of a tile: linear ramps of ``overlap`` px at edges shared with
    a neighbour, 1 elsewhere (strictly positive)."""
    w = np.ones(t, np.float32)
    if overlap > 0:
        r = (np.arange(t, dtype=np.float32) + 0.5) / overlap
        if rise:
            w = np.minimum(w, r)
        if fall:
            w = np.minimum(w, r[::-1])
    return w


def _run(model: nn.Module, x: torch.Tensor, bf16: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``1×3×h×w`` on the model's device → (``h×w×3`` float32, ``h×w`` float32 or None)."""
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        result = model_output(model(x))
        img, gate = result.final, result.final_gate
    img_np = img[0].float().permute(1, 2, 0).cpu().numpy()
    gate_np = None if gate is None else gate[0, 0].float().cpu().numpy()
    return img_np, gate_np


def deblur_image(
    model: nn.Module,
    image: np.ndarray,
    device: str | torch.device | None = None,
    dtype: DType = "fp32",
    tile: int | None = None,
    overlap: int = 32,
    max_side: int = DEFAULT_MAX_SIDE,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Deblur one image → ``(H×W×3 float32 in [0, 1], H×W float32 mask or None)``.

    ``image``: see :func:`prepare_image`. ``device``: ``None`` = the model's device (the model
    is moved otherwise). The image is reflect-padded to multiples of 4 and cropped back. With
    ``tile`` (px, a multiple of 4, ≥ 16 and > ``overlap``) the padded image is processed in
    overlapping tiles (:func:`tile_starts`) blended with linear ramps over the overlaps, so
    memory is bounded by the tile size; results differ slightly from the whole image near the
    seams (the network sees less context). The mask is the full-scale gate (``None`` for models
    without gates); the deblurred image is clipped to [0, 1].
    """
    if dtype not in ("fp32", "bf16"):
        raise InferenceError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
    img = prepare_image(image, max_side=max_side)
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    model = model.to(dev)
    bf16 = dtype == "bf16"
    if bf16 and dev.type != "cuda":
        raise InferenceError(
            "bf16 inference is only supported on CUDA; use dtype fp32 on CPU "
            "(bf16 autocast on CPU is slower than fp32 on most CPUs and unvalidated here)"
        )
    if tile is not None and (tile % 4 or tile < MIN_SIDE or tile <= overlap or overlap < 0):
        raise InferenceError(
            f"tile must be a multiple of 4, ≥ {MIN_SIDE} and larger than overlap ({overlap}); got {tile}"
        )
    h, w = img.shape[:2]
    hp, wp = _ceil4(h), _ceil4(w)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(dev)
            if (hp, wp) != (h, w):
                x = F.pad(x, (0, wp - w, 0, hp - h), mode="reflect")
            if tile is None or (hp <= tile and wp <= tile):
                out, gate = _run(model, x, bf16)
            else:
                out, gate = _run_tiled(model, x, bf16, tile, overlap)
    finally:
        model.train(was_training)
    out = np.clip(out[:h, :w], 0.0, 1.0)
    if gate is not None:
        gate = np.clip(gate[:h, :w], 0.0, 1.0)
    return np.ascontiguousarray(out), None if gate is None else np.ascontiguousarray(gate)


def _run_tiled(
    model: nn.Module, x: torch.Tensor, bf16: bool, tile: int, overlap: int
) -> tuple[np.ndarray, np.ndarray | None]:
    hp, wp = x.shape[-2:]
    th, ys = tile_starts(hp, tile, overlap)
    tw, xs = tile_starts(wp, tile, overlap)
    acc = np.zeros((hp, wp, 3), np.float32)
    acc_gate: np.ndarray | None = None
    weight = np.zeros((hp, wp), np.float32)
    for iy, y0 in enumerate(ys):
        wy = _ramp(th, overlap, iy > 0, iy < len(ys) - 1)
        for ix, x0 in enumerate(xs):
            wx = _ramp(tw, overlap, ix > 0, ix < len(xs) - 1)
            wgt = wy[:, None] * wx[None, :]
            out, gate = _run(model, x[..., y0 : y0 + th, x0 : x0 + tw], bf16)
            acc[y0 : y0 + th, x0 : x0 + tw] += out * wgt[..., None]
            weight[y0 : y0 + th, x0 : x0 + tw] += wgt
            if gate is not None:
                if acc_gate is None:
                    acc_gate = np.zeros((hp, wp), np.float32)
                acc_gate[y0 : y0 + th, x0 : x0 + tw] += gate * wgt
    out = acc / weight[..., None]
    return out, None if acc_gate is None else acc_gate / weight
