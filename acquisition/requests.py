"""What the acquisition use cases take: one request model each (see :mod:`acquisition.services`).

Light to import (pydantic and the planner's constants only): the API's job parameters
(:mod:`api.jobs.params`) extend these models with the rig's name.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from acquisition.planner import SHARP_TIMINGS
from core.config import StrictModel

__all__ = ["DEFAULT_SHARP_BLUR_PX", "NAME_PATTERN", "LightboxRequest", "SceneCaptureRequest"]

#: Blur tolerated in camera S's image when a request does not say (px).
DEFAULT_SHARP_BLUR_PX = 6.0

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""Scene (and rig) names: letters, digits, ``_ . -`` (they become folder names)."""


class SceneCaptureRequest(StrictModel):
    """A scene session: whiteboard, reference and ``pairs`` blurred/sharp pairs.

    ``sharp_blur``: blur tolerated in S (px, default :data:`DEFAULT_SHARP_BLUR_PX`);
    ``distance_m`` / ``speed_mps``: the object's distance (m) and speed (m/s), needed unless the
    rig knows them (the simulated rig does); ``target_blur_px``: the preferred blur in B (px);
    ``sharp_timing``: ``centre`` | ``start`` (default: the rig's); ``resume``: continue from the
    first missing trigger.
    """

    scene: str = Field(pattern=NAME_PATTERN, max_length=128)
    pairs: int = Field(ge=1, le=100_000)
    resume: bool = False
    sharp_blur: float | None = Field(None, gt=0)
    distance_m: float | None = Field(None, gt=0)
    speed_mps: float | None = Field(None, gt=0)
    target_blur_px: float | None = Field(None, gt=0)
    sharp_timing: str | None = None

    @field_validator("sharp_timing")
    @classmethod
    def _known_timing(cls, value: str | None) -> str | None:
        if value is not None and value not in SHARP_TIMINGS:
            raise ValueError(f"must be one of {', '.join(SHARP_TIMINGS)}; got {value!r}")
        return value


class LightboxRequest(StrictModel):
    """One lightbox flat field per camera: S exposes ``exposure_ms`` (ms), B ``exposure_ms / nd``
    behind its ND filter of transmittance ``nd`` (0 < nd ≤ 1)."""

    exposure_ms: float = Field(10.0, gt=0, le=10_000)
    nd: float = Field(1.0, gt=0, le=1)
