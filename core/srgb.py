"""The sRGB transfer curve (IEC 61966-2-1), the one copy every package uses.

``encode``: linear [0, 1] → encoded [0, 1] (12.92·L for L ≤ 0.0031308, else
1.055·L^(1/2.4) − 0.055); ``decode``: its inverse (8-bit codes or encoded floats → linear);
``to_uint8``: encoded [0, 1] → 0..255, rounded. Inputs of any shape; outputs float32 unless said.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode", "encode", "encode_uint8", "to_uint8"]


def encode(linear: np.ndarray) -> np.ndarray:
    """Linear values (clipped to [0, 1] first) → sRGB-encoded float32 in [0, 1], same shape."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    low = x <= 0.0031308
    out = np.empty_like(x)
    out[low] = x[low] * np.float32(12.92)
    out[~low] = np.float32(1.055) * np.power(x[~low], np.float32(1.0 / 2.4)) - np.float32(0.055)
    return out


def decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB codes → linear float32 in [0, 1]: uint8 is read as /255, uint16 as /65535, floats
    as encoded values in [0, 1] (not clipped)."""
    v = np.asarray(encoded)
    if v.dtype == np.uint8:
        v = v.astype(np.float32) / np.float32(255.0)
    elif v.dtype == np.uint16:
        v = v.astype(np.float32) / np.float32(65535.0)
    else:
        v = v.astype(np.float32)
    return np.where(v <= 0.04045, v / np.float32(12.92), ((v + np.float32(0.055)) / np.float32(1.055)) ** 2.4
                    ).astype(np.float32)


def to_uint8(encoded: np.ndarray) -> np.ndarray:
    """Encoded [0, 1] → uint8 0..255, rounded half to even (values outside are clipped)."""
    return np.rint(np.clip(np.asarray(encoded, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_uint8(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] (clipped) → 8-bit sRGB codes: :func:`to_uint8` of :func:`encode`."""
    return to_uint8(encode(linear))
