"""A training sample's shape, shared by every dataset (ReLoBlur folders, the rig's twin).

A dataset for the deblurring models is any object with ``len()``, ``ids`` (sample ids, e.g.
``scene/00/00000``), ``load_arrays(i) → (blur H×W×3, sharp H×W×3, mask H×W bool, id)`` (images
uint8/uint16 or float32 in [0, 1], sRGB-encoded) and ``__getitem__(i)`` → :func:`pair_sample`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pair_sample", "to_float01"]


def to_float01(img: np.ndarray) -> np.ndarray:
    """uint8 → /255, uint16 → /65535, bool → 0/1, float → float32 as is (no clipping)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    return img.astype(np.float32, copy=False)


def pair_sample(blur: np.ndarray, sharp: np.ndarray, mask: np.ndarray, sid: str) -> dict:
    """``{"blur": 3×H×W, "sharp": 3×H×W, "mask": 1×H×W, "id": sid}``: float32 torch tensors in
    [0, 1] (the mask 0/1) from ``H×W×3`` images (any dtype of :func:`to_float01`) and an
    ``H×W`` mask."""
    import torch

    def chw(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(to_float01(img).transpose(2, 0, 1)))

    return {
        "blur": chw(blur),
        "sharp": chw(sharp),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None]),
        "id": sid,
    }
