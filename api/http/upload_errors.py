"""The errors an upload is refused with, and the reason text they carry to the client.

:class:`UploadError` is a :class:`core.errors.UserError` (HTTP 422) and a ``ValueError``;
subclasses set 415 (not PNG/TIFF/DNG) and 413 (too many pixels). A decoder's own message is
passed on through :func:`_public_reason`, which never names a server path (at most 300
characters).
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2

from core.errors import UserError

_PATH_LIKE = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/][^\s'\"<>|]+")


class UploadError(UserError, ValueError):
    """An upload that cannot be used; the message says why (HTTP 422 unless a subclass says
    otherwise)."""


class UnsupportedImageError(UploadError):
    """Not a PNG, TIFF or DNG file (HTTP 415)."""

    http_status = 415


class CorruptImageError(UploadError):
    """A PNG, TIFF or DNG file that does not decode, or an image of an unusable shape (HTTP 422)."""


class ImageTooLargeError(UploadError):
    """An image with more pixels than the limit (HTTP 413): ``max_pixels`` for an upload,
    ``preview_max_pixels`` for a synchronous preview."""

    http_status = 413


def _public_reason(exc: BaseException, path: Path | None = None) -> str:
    """What ``exc`` says went wrong, without the server's paths: a :class:`CorruptFileError`'s
    ``reason``, OpenCV's assertion text, or the message; ``path`` (the scratch file) and any
    other absolute path in it are replaced."""
    if isinstance(exc, cv2.error):
        text = getattr(exc, "err", "") or "OpenCV cannot decode it"
        if "CV_IO_MAX_IMAGE_PIXELS" in text:
            text = "its size exceeds the decoder's pixel limit"
    else:
        text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    text = str(text)
    if path is not None:
        text = text.replace(str(path), "the upload").replace(path.name, "the upload")
    return _PATH_LIKE.sub("<path>", text)[:300]
