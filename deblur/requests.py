"""What the deblurring use case takes: one request model (see :mod:`deblur.services`).

Light to import (pydantic only, no torch): the API's job parameters (:mod:`api.jobs.params`)
extend it with product ids and the API's path rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.config import StrictModel

__all__ = ["DEFAULT_MAX_SIDE", "DEFAULT_OVERLAP_PX", "DeblurRequest"]

#: Images with a longer side are refused (px).
DEFAULT_MAX_SIDE = 8192
#: Overlap of neighbouring tiles (px) when ``tile`` bounds memory.
DEFAULT_OVERLAP_PX = 32


class DeblurRequest(StrictModel):
    """Model inference on image files and/or folders (``inputs``: PNG or TIFF; a folder in the
    ReLoBlur layout contributes its ``*_blur`` images). ``checkpoint``: the model file (None: the
    caller's default); ``out``: the output folder (None: the caller's default); ``tile``:
    overlapping tiles of at most this many pixels (multiple of 4) bound memory, ``overlap`` px
    apart; ``dtype``: ``fp32`` | ``bf16``; ``max_side``: longer images are refused (px). Where
    the paths are relative to is the caller's: see :func:`deblur.services.deblur`."""

    inputs: list[str] = Field(default_factory=list, max_length=1000)
    checkpoint: str | None = None
    out: str | None = None
    tile: int | None = Field(None, ge=16)
    overlap: int = Field(DEFAULT_OVERLAP_PX, ge=0, le=1024)
    dtype: Literal["fp32", "bf16"] = "fp32"
    max_side: int = Field(DEFAULT_MAX_SIDE, ge=16, le=65_536)
