"""Uploaded images: format by content (PNG, TIFF, DNG), a header check, a full decode, then an
atomic store.

The body's size is bounded while it streams in (``api.http.middleware.BodyLimitMiddleware``, 413); here the
bytes are checked: an unknown or unsupported format is :class:`UnsupportedImageError` (415), a
file that claims a supported format but does not decode is :class:`CorruptImageError` (422).

Decompression bombs (a few hundred KB that declare 20000×20000 px) are refused before a pixel is
decoded: the dimensions are read from the header (PNG ``IHDR``; for TIFF and DNG every IFD and
SubIFD, through ``tifffile`` without reading image data) and an image larger than
``max_pixels`` (``settings.max_image_pixels``) is :class:`ImageTooLargeError` (413). Decoding
then runs at most :data:`DECODE_SLOTS` at a time (a bound on the memory all uploads decode into
together), always in a worker thread (the routes are plain ``def`` or use ``anyio.to_thread``);
any decoder failure, ``cv2.error`` included, is a :class:`CorruptImageError` (422) whose message
says what was wrong and never names a server path.

Only a file that decoded is published, under ``<data_dir>/uploads/<uuid>.<ext>``, atomically;
a failure stores nothing.

Modules: :mod:`api.http.upload_errors` (the errors), :mod:`api.http.upload_headers` (format
sniffing and the header checks); this module decodes, stores and develops, and re-exports the
rest (``api.jobs`` uses only this module of ``api.http``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from api.http.upload_errors import (
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    UploadError,
    _public_reason,
)
from api.http.upload_headers import (
    DNG_VERSION_TAG,
    MAX_SAMPLES,
    MAX_TIFF_IMAGES,
    MAX_TILE_PIXELS,
    PNG_MAGIC,
    TIFF_MAGICS,
    ImageHeader,
    _check_pixels,
    read_header,
    sniff_format,
)
from core.filestore import atomic_path

__all__ = [
    "DECODE_SLOTS",
    "DEFAULT_MAX_PIXELS",
    "DNG_VERSION_TAG",
    "MAX_SAMPLES",
    "MAX_TIFF_IMAGES",
    "MAX_TILE_PIXELS",
    "PNG_MAGIC",
    "TIFF_MAGICS",
    "UPLOAD_DIR",
    "CorruptImageError",
    "DecodedImage",
    "ImageHeader",
    "ImageTooLargeError",
    "UnsupportedImageError",
    "UploadError",
    "check_upload",
    "decode",
    "develop_dng",
    "is_dng",
    "read_header",
    "sniff_format",
    "spool_and_check",
    "store_upload",
    "to_rgb01",
]

UPLOAD_DIR = "uploads"
DEFAULT_MAX_PIXELS = 40_000_000
"""The pixel limit when the caller gives none (``settings.max_image_pixels``' default)."""
DECODE_SLOTS = 2
"""Uploads decoded at the same time; further ones wait (with the pixel limit, a memory bound)."""
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)


@dataclass
class DecodedImage:
    """A checked upload: its format (``png``, ``tiff``, ``dng``) and its pixels.

    ``rgb``: ``H×W×3`` uint8/uint16/float32 RGB for PNG and TIFF; for DNG the ``H×W`` uint16 CFA
    mosaic, with ``raw_meta`` its :class:`core.dng.RawMetadata`.
    """

    fmt: str
    pixels: np.ndarray
    raw_meta: object | None = None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _bgr_to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise CorruptImageError(f"expected 1, 3 or 4 channels, got {img.shape[2]}")


def _check_sides(width: int, height: int, min_side: int, max_side: int) -> None:
    if min(height, width) < min_side or max(height, width) > max_side:
        raise CorruptImageError(
            f"image is {width}×{height} px; both sides must lie in [{min_side}, {max_side}]"
        )


def _imdecode(data: np.ndarray, fmt: str) -> np.ndarray | None:
    """``cv2.imdecode`` (unchanged: depth, channels, no EXIF rotation); None when it does not
    decode; a ``cv2.error`` (e.g. OpenCV's own pixel limit) is a :class:`CorruptImageError`."""
    if not data.size:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise CorruptImageError(
            f"the {fmt.upper()} file does not decode: {_public_reason(exc)}"
        ) from None


def _decode_raster(path: Path, fmt: str) -> np.ndarray:
    """PNG or TIFF pixels in OpenCV's channel order (BGR); TIFFs OpenCV does not read through
    tifffile (IFD 0 only)."""
    data = np.fromfile(path, dtype=np.uint8)
    try:
        img = _imdecode(data, fmt)
    except CorruptImageError:
        if fmt != "tiff":
            raise
        img = None
    del data
    if img is None and fmt == "tiff":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                img = tif.pages[0].asarray()
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - reported as corrupt below
            img = None
        else:
            img = img if img.ndim == 2 else img[..., ::-1]  # decode() expects BGR order
    if img is None:
        raise CorruptImageError(f"the {fmt.upper()} file is corrupt: it does not decode")
    return img


def _decode_pixels(path: Path, fmt: str, header: ImageHeader) -> DecodedImage:
    if fmt == "dng":
        from core.rawio import read_raw

        try:
            cfa, meta = read_raw(path, default_exposure_s=1e-3)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - LibRaw, tifffile, our DNG reader: all corrupt
            raise CorruptImageError(
                f"the DNG file does not decode: {_public_reason(exc, path)}"
            ) from None
        return DecodedImage("dng", cfa, meta)
    img = _decode_raster(path, fmt)
    if img.ndim not in (2, 3):
        raise CorruptImageError(f"expected a single image, got an array of shape {img.shape}")
    if img.shape[:2] != (header.height, header.width):
        raise CorruptImageError(
            f"the {fmt.upper()} file is corrupt: its header declares {header.width}×"
            f"{header.height} px but it decodes to {img.shape[1]}×{img.shape[0]}"
        )
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        raise CorruptImageError(f"unsupported sample type {img.dtype} (use 8 or 16 bit)")
    return DecodedImage(fmt, _bgr_to_rgb(img))


def decode(
    path: Path,
    fmt: str,
    *,
    min_side: int = 16,
    max_side: int = 8192,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limit_text: str = "images may have at most {max_pixels} px",
) -> DecodedImage:
    """Decode the file at ``path`` in format ``fmt``; CorruptImageError says what is wrong.

    The header is read first: an image over ``max_pixels`` is :class:`ImageTooLargeError`
    (``limit_text`` says which limit, ``{max_pixels}`` filled in) and a PNG or TIFF whose sides
    lie outside [``min_side``, ``max_side``] is :class:`CorruptImageError`, both before
    decoding. At most :data:`DECODE_SLOTS` files decode at once.
    """
    header = read_header(path, fmt)
    _check_pixels(header, max_pixels, limit_text)
    if fmt != "dng":  # a DNG's visible raw area is known only once LibRaw has read it
        _check_sides(header.width, header.height, min_side, max_side)
    with _decode_slots:
        try:
            image = _decode_pixels(path, fmt, header)
        except MemoryError:
            raise ImageTooLargeError(
                "the server has not the memory to decode this image now; try a smaller one"
            ) from None
    _check_sides(image.width, image.height, min_side, max_side)
    return image


def spool_and_check(
    source: BinaryIO, scratch_dir: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, **limits
) -> tuple[Path, DecodedImage]:
    """Copy ``source`` to a scratch file under ``scratch_dir``, sniff and decode it
    (``max_pixels`` and ``limits``: see :func:`decode`).

    Returns the scratch path (the caller publishes or deletes it) and the decoded image; on
    failure the scratch file is already deleted.
    """
    scratch_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=scratch_dir)
    path = Path(name)
    try:
        with open(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        with open(path, "rb") as f:
            head = f.read(16)
        image = decode(path, sniff_format(head, path), max_pixels=max_pixels, **limits)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, image


def store_upload(
    source: BinaryIO, data_dir: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[str, DecodedImage]:
    """Check the upload and publish it as ``uploads/<uuid>.<ext>`` → (relative path, image)."""
    upload_dir = data_dir / UPLOAD_DIR
    scratch, image = spool_and_check(
        source,
        upload_dir,
        max_pixels=max_pixels,
        limit_text="uploads may have at most {max_pixels} px (max_image_pixels)",
    )
    ext = {"png": "png", "tiff": "tif", "dng": "dng"}[image.fmt]
    rel = f"{UPLOAD_DIR}/{uuid.uuid4().hex}.{ext}"
    try:
        with atomic_path(data_dir / rel) as tmp:
            scratch.replace(tmp)
    finally:
        scratch.unlink(missing_ok=True)
    return rel, image


def check_upload(
    source: BinaryIO, scratch_dir: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, **limits
) -> DecodedImage:
    """Check the upload without keeping it (the synchronous preview)."""
    scratch, image = spool_and_check(source, scratch_dir, max_pixels=max_pixels, **limits)
    scratch.unlink(missing_ok=True)
    return image


def to_rgb01(image: DecodedImage) -> np.ndarray:
    """The image as ``H×W×3`` float32 in [0, 1]; a DNG developed by the plain ISP
    (:func:`postprocess.develop.develop_raw`: white balance from AsShotNeutral, ColorMatrix1 when
    present, Menon demosaic), sRGB-encoded.

    The one place where the API develops a DNG: the synchronous preview and the deblur job
    (:func:`develop_dng`) both come here."""
    if image.fmt != "dng":
        from deblur.infer import prepare_image

        return prepare_image(image.pixels)
    from postprocess.develop import develop_raw

    return develop_raw(image.pixels, image.raw_meta)


def is_dng(path: Path) -> bool:
    """Whether the file at ``path`` is a DNG (by content: TIFF magic and the DNGVersion tag)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] not in TIFF_MAGICS:
        return False
    try:
        return sniff_format(head, path) == "dng"
    except UploadError:
        return False


def develop_dng(path: Path) -> np.ndarray:
    """A DNG file developed for the deblurring model: ``H×W×3`` float32 sRGB in [0, 1] (the
    same plain ISP as the preview, :func:`to_rgb01`); CorruptImageError when it does not
    decode."""
    return to_rgb01(decode(Path(path), "dng"))
