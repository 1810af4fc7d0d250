"""What every flow method shares: the input checks, the error they raise, the luminance weights.

Images are (H, W) grey or (H, W, 3) RGB (R, G, B) float arrays, roughly in [0, 1], finite, at
least 2x2, both of a pair the same size; flows are (H, W, 2) (dx, dy) in pixels (the convention
in :mod:`postprocess.flow`).
"""

from __future__ import annotations

import numpy as np

from core.errors import UserError

#: Luminance weights of R, G, B (L = 0.299 R + 0.587 G + 0.114 B).
_LUMA = (0.299, 0.587, 0.114)


class FlowInputError(UserError, ValueError):
    """The images (or flows) given to this module cannot be used; the message says why."""


def _check_image(name: str, image) -> np.ndarray:
    """``image`` as a C-contiguous float32 (H, W) or (H, W, 3) array, or FlowInputError."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise FlowInputError(
            f"{name} must be an (H, W) grey or (H, W, 3) RGB image, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise FlowInputError(
            f"{name} must be a float image in [0, 1], got dtype {arr.dtype} "
            "(divide integer images by their maximum code value first)"
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise FlowInputError(f"{name} must be at least 2x2 pixels, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise FlowInputError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_pair(reference, moving) -> tuple[np.ndarray, np.ndarray]:
    ref = _check_image("reference", reference)
    mov = _check_image("moving", moving)
    if ref.shape != mov.shape:
        raise FlowInputError(
            f"size mismatch: reference has shape {ref.shape}, moving has shape {mov.shape}"
        )
    return ref, mov


def _check_flow(name: str, flow) -> np.ndarray:
    arr = np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise FlowInputError(f"{name} must be an (H, W, 2) flow, got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)
