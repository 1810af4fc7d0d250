"""The errors of inference: a bad option or device, an unusable image, a bad checkpoint.

All are :class:`core.errors.UserError` (HTTP 422): the caller's input is at fault. Dataset file
problems are :class:`deblur.data.DatasetError` and its subclasses.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError

__all__ = ["CheckpointError", "ImageInputError", "InferenceError"]


class InferenceError(UserError):
    """Inference cannot proceed (bad option, unavailable device, ...)."""

    http_status = 422


class ImageInputError(InferenceError, ValueError):
    """An input image is unusable: too small, too large, wrong channels or dtype, unreadable."""


class CheckpointError(InferenceError):
    """A checkpoint file is missing, corrupt, or does not fit the model; ``path`` names it."""

    http_status = 422

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
