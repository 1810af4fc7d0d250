"""2×2 Bayer CFA patterns and the per-pixel colour maps they give.

A pattern string (one of :data:`CFA_PATTERNS`) is read row-major from the top-left pixel; colour
indices are 0=R, 1=G, 2=B. Maps are uint8 (indices) or bool (masks), sized H×W of the mosaic.
"""

from __future__ import annotations

import numpy as np

from core.dng_errors import UnknownCfaPatternError

CFA_PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")
"""Supported 2×2 Bayer patterns, read row-major from the top-left pixel."""

_COLOR_INDEX = {"R": 0, "G": 1, "B": 2}


def _check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str) or pattern not in CFA_PATTERNS:
        raise UnknownCfaPatternError(
            f"unknown CFA pattern {pattern!r}; allowed: {', '.join(CFA_PATTERNS)}"
        )
    return pattern


def cfa_index_map(pattern: str) -> np.ndarray:
    """Colour index (0=R, 1=G, 2=B) of each site of the 2×2 tile, as a 2×2 uint8 array.

    The pattern string is read row-major from the top-left pixel: 'RGGB' gives
    ``[[0, 1], [1, 2]]``, i.e. (0,0)=R, (0,1)=G, (1,0)=G, (1,1)=B.
    """
    pattern = _check_pattern(pattern)
    return np.array([_COLOR_INDEX[c] for c in pattern], dtype=np.uint8).reshape(2, 2)


def cfa_color_map(pattern: str, height: int, width: int) -> np.ndarray:
    """Colour index (0=R, 1=G, 2=B) of every pixel of a height×width mosaic; uint8 array."""
    tile = cfa_index_map(pattern)
    reps = (-(-height // 2), -(-width // 2))
    return np.tile(tile, reps)[:height, :width]


def cfa_channel_masks(pattern: str, height: int, width: int) -> np.ndarray:
    """Boolean masks of the R, G and B sites of a height×width mosaic; shape (3, H, W)."""
    colors = cfa_color_map(pattern, height, width)
    return np.stack([colors == c for c in range(3)])
