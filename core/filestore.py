"""Atomic file writing and image I/O for processed images.

Every file is first written to a temporary sibling of its final path (``.<name>.<hex>.tmp``),
fsynced, renamed onto the final name with :func:`os.replace` and the directory is fsynced, so a
reader sees either the old file or the complete new one. On any exception the temporary file
is removed; a hard crash (power loss, SIGKILL) can leave one behind, which
:func:`remove_stale_temp_files` sweeps up.

Image conventions: processed images are linear float in [0, 1] inside the system, shaped H×W
(grey) or H×W×3 (RGB order). PNG export is 8-bit by default (16-bit on request), TIFF export is
16-bit integer or 32-bit float. Masks are single-channel 8-bit PNGs holding only 0 and 255.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import numpy as np
import tifffile

__all__ = [
    "CorruptFileError",
    "FileStoreError",
    "ImageFormatError",
    "atomic_path",
    "atomic_write_bytes",
    "is_temp_name",
    "read_mask_png",
    "read_png",
    "read_tiff",
    "remove_stale_temp_files",
    "sha256_bytes",
    "sha256_file",
    "write_mask_png",
    "atomic_write_text",
    "write_png",
    "write_tiff",
]

StrPath = str | os.PathLike[str]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[^.]+)?$")


class FileStoreError(Exception):
    """Base class of every error raised by the file store (and by :mod:`core.dng`)."""


class ImageFormatError(FileStoreError, ValueError):
    """An image has a dtype, shape, value or bit depth the writer does not support."""


class CorruptFileError(FileStoreError):
    """A file exists but cannot be decoded (truncated, damaged or of the wrong format).

    Attributes:
        path: the offending file.
        reason: what was wrong with it.
    """

    advice = "the file is damaged or not of the expected format; restore it from its source"

    def __init__(self, path: StrPath, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read '{self.path}': {reason}; {self.advice}")


# --------------------------------------------------------------------------- hashing


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 of ``data`` as 64 lowercase hex characters."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: StrPath) -> str:
    """SHA-256 of the file at ``path`` (read in chunks), as 64 lowercase hex characters."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --------------------------------------------------------------------------- atomic writing


def is_temp_name(name: str) -> bool:
    """Whether a file name has the shape of this module's temporary files."""
    return bool(_TEMP_RE.match(name))


def _temp_sibling(final: Path, keep_suffix: bool) -> Path:
    suffix = final.suffix if keep_suffix else ""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp{suffix}")


def _fsync_path(path: Path) -> None:
    """fsync a file or (on POSIX) a directory by path."""
    if path.is_dir() and os.name != "posix":
        return  # directories cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: StrPath, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; publish it atomically when the block succeeds.

    The caller (or a library such as tifffile or ``cv2.imwrite``) writes the complete file to
    the yielded path. When the block exits normally the temporary file is fsynced, renamed onto
    ``path`` (replacing any existing file) and the directory is fsynced. When the block raises,
    the temporary file is deleted, the exception propagates and an existing file at ``path``
    is left untouched. Parent directories are created.

    Args:
        path: final file path.
        keep_suffix: end the temporary name with ``path``'s suffix too
            (``.<name>.<hex>.tmp.png``), for writers that choose the format from the extension.

    Raises:
        FileStoreError: the block finished without creating the temporary file.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final, keep_suffix)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileStoreError(
                f"the writer for '{final}' did not create its temporary file '{tmp.name}'; "
                "nothing was written"
            )
        _fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_path(final.parent)


def atomic_write_bytes(path: StrPath, data: bytes | bytearray | memoryview) -> str:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); return its SHA-256 hex."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return sha256_bytes(data)


def atomic_write_text(path: StrPath, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`); return its SHA-256 hex."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(root: StrPath, older_than_s: float = 3600.0) -> list[Path]:
    """Delete temporary files left under ``root`` by a crashed writer; return what was removed.

    Only files whose names match :func:`is_temp_name` and whose modification time is more than
    ``older_than_s`` seconds ago are removed, so writers still running are not disturbed.
    """
    cutoff = time.time() - older_than_s
    removed = []
    for p in Path(root).rglob(".*.tmp*"):
        if p.is_file() and is_temp_name(p.name) and p.stat().st_mtime < cutoff:
            with suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


# --------------------------------------------------------------------------- array conversion


def _check_shape(image: np.ndarray, what: str) -> None:
    ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    if not ok or image.size == 0:
        raise ImageFormatError(
            f"{what}: unsupported image shape {image.shape}; "
            "expected a non-empty H×W (grey) or H×W×3 (RGB) array"
        )


def _to_unsigned(image: np.ndarray, bits: int | None, what: str) -> np.ndarray:
    """Convert float [0, 1] (rounded, clipped) or uint8/uint16 input to uint8/uint16.

    ``bits=None`` means 8 for float input and the dtype's own depth for integer input.
    """
    if bits not in (None, 8, 16):
        raise ImageFormatError(f"{what}: unsupported bit depth {bits!r}; allowed: 8 or 16")
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise ImageFormatError(f"{what}: image contains NaN or infinite values")
        depth = bits or 8
        target = np.uint8 if depth == 8 else np.uint16
        scaled = np.clip(image.astype(np.float64), 0.0, 1.0) * (2**depth - 1)
        return np.rint(scaled).astype(target)
    if image.dtype.kind == "u" and image.dtype.itemsize in (1, 2):
        depth = image.dtype.itemsize * 8
        if bits not in (None, depth):
            raise ImageFormatError(
                f"{what}: a {image.dtype} image cannot be written with bits={bits}; "
                f"pass bits={depth} or convert it to float in [0, 1] first"
            )
        return image.astype(np.uint8 if depth == 8 else np.uint16, copy=False)
    raise ImageFormatError(
        f"{what}: unsupported dtype {image.dtype}; allowed: float in [0, 1], uint8 or uint16"
    )


def _rgb_swap(image: np.ndarray) -> np.ndarray:
    """RGB(A) ↔ BGR(A) for 3/4-channel images; 2-D images are returned unchanged."""
    if image.ndim == 3 and image.shape[2] in (3, 4):
        order = [2, 1, 0, 3][: image.shape[2]]
        return np.ascontiguousarray(image[..., order])
    return image


# --------------------------------------------------------------------------- PNG


def _encode_png(image: np.ndarray, what: str) -> bytes:
    ok, buf = cv2.imencode(".png", _rgb_swap(np.ascontiguousarray(image)))
    if not ok:
        raise ImageFormatError(f"{what}: OpenCV could not encode the image as PNG")
    return buf.tobytes()


def write_png(path: StrPath, image: np.ndarray, bits: int | None = None) -> str:
    """Write an image as PNG atomically; return the file's SHA-256 hex.

    Args:
        path: destination file.
        image: H×W or H×W×3 (RGB order). Float input is read as linear-to-code values in
            [0, 1]: clipped to [0, 1], scaled to ``2**bits - 1`` and rounded. uint8/uint16
            input is written as is.
        bits: 8 or 16; ``None`` means 8 for float input and the dtype's depth for integers.

    Raises:
        ImageFormatError: unsupported dtype, shape, bit depth or non-finite values.
    """
    what = f"PNG '{path}'"
    image = np.asarray(image)
    _check_shape(image, what)
    return atomic_write_bytes(path, _encode_png(_to_unsigned(image, bits, what), what))


def _read_bytes_checked_png(path: StrPath) -> bytes:
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise CorruptFileError(path, "not a PNG file (bad signature)")
    if not data.endswith(_PNG_IEND):
        raise CorruptFileError(path, "truncated PNG (no IEND chunk at the end)")
    return data


def read_png(path: StrPath) -> np.ndarray:
    """Read a PNG; return H×W (grey) or H×W×3/4 (RGB/RGBA order), dtype as stored.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptFileError: not a PNG, truncated, or damaged.
    """
    data = _read_bytes_checked_png(path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CorruptFileError(path, "the PNG data cannot be decoded")
    return _rgb_swap(image)


def write_mask_png(path: StrPath, mask: np.ndarray) -> str:
    """Write a boolean H×W mask as a single-channel 8-bit PNG (False→0, True→255).

    Returns the file's SHA-256 hex.

    Raises:
        ImageFormatError: ``mask`` is not a non-empty 2-D bool array.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.ndim != 2 or mask.size == 0:
        raise ImageFormatError(
            f"mask PNG '{path}': expected a non-empty 2-D bool array, got {mask.dtype} with "
            f"shape {mask.shape}; convert it first, e.g. `mask > 0`"
        )
    what = f"mask PNG '{path}'"
    return atomic_write_bytes(path, _encode_png(mask.astype(np.uint8) * np.uint8(255), what))


def read_mask_png(path: StrPath) -> np.ndarray:
    """Read a mask PNG written by :func:`write_mask_png`; return an H×W bool array.

    Raises:
        CorruptFileError: unreadable, not single-channel 8-bit, or holds values other than 0/255.
    """
    image = read_png(path)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise CorruptFileError(
            path, f"a mask must be single-channel 8-bit, found {image.dtype} {image.shape}"
        )
    if not np.isin(image, (0, 255)).all():
        raise CorruptFileError(path, "a mask may hold only 0 and 255")
    return image == 255


# --------------------------------------------------------------------------- TIFF


def _tiff_array(image: np.ndarray, bits: int | None, what: str) -> np.ndarray:
    """uint16 (bits 16: float rounded/clipped from [0, 1], or uint16 as is) or float32 (32)."""
    if bits not in (None, 16, 32):
        raise ImageFormatError(f"{what}: unsupported bit depth {bits!r}; allowed: 16 or 32")
    if bits == 32:
        if image.dtype.kind != "f":
            raise ImageFormatError(
                f"{what}: bits=32 stores float32 and needs float input, got {image.dtype}"
            )
        if not np.isfinite(image).all():
            raise ImageFormatError(f"{what}: image contains NaN or infinite values")
        return image.astype(np.float32)
    if image.dtype == np.uint8:
        raise ImageFormatError(
            f"{what}: uint8 input is not accepted for TIFF; allowed: float in [0, 1] or uint16"
        )
    return _to_unsigned(image, 16, what)


def write_tiff(path: StrPath, image: np.ndarray, bits: int | None = None) -> str:
    """Write an image as uncompressed TIFF atomically; return the file's SHA-256 hex.

    Args:
        path: destination file.
        image: H×W or H×W×3 (RGB order).
        bits: 16 (default): uint16; float input in [0, 1] is clipped, scaled by 65535 and
            rounded, uint16 input is written as is. 32: float32, values stored unchanged
            (linear, not clipped; must be finite).

    Raises:
        ImageFormatError: unsupported dtype, shape, bit depth or non-finite values.
    """
    what = f"TIFF '{path}'"
    image = np.asarray(image)
    _check_shape(image, what)
    array = _tiff_array(image, bits, what)
    buf = io.BytesIO()
    photometric = "rgb" if array.ndim == 3 else "minisblack"
    tifffile.imwrite(buf, array, photometric=photometric, metadata=None, software=False)
    return atomic_write_bytes(path, buf.getvalue())


def read_tiff(path: StrPath) -> np.ndarray:
    """Read the first image of a TIFF; return H×W or H×W×C (RGB order), dtype as stored.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptFileError: not a TIFF, truncated, or damaged.
    """
    data = Path(path).read_bytes()
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            return tif.pages.first.asarray()
    except (tifffile.TiffFileError, ValueError, IndexError, OSError, struct.error) as exc:
        raise CorruptFileError(path, f"not a readable TIFF ({exc})") from exc
