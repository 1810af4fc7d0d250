"""Uploaded images: format by content (PNG, TIFF, DNG), a full decode, then an atomic store.

The body's size is bounded while it streams in (``api.app.BodyLimitMiddleware``, 413); here the
bytes are checked: an unknown or unsupported format is :class:`UnsupportedImageError` (415), a
file that claims a supported format but does not decode is :class:`CorruptImageError` (422).
Only a file that decoded is published, under ``<data_dir>/uploads/<uuid>.<ext>``, atomically;
a failure stores nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from core.filestore import atomic_path

UPLOAD_DIR = "uploads"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
DNG_VERSION_TAG = 50706
_OTHER_MAGICS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"RIFF": "WebP/RIFF",
    b"%PDF": "PDF",
}


class UploadError(ValueError):
    """An upload that cannot be used; the message says why."""


class UnsupportedImageError(UploadError):
    """Not a PNG, TIFF or DNG file (HTTP 415)."""


class CorruptImageError(UploadError):
    """A PNG, TIFF or DNG file that does not decode, or an image of an unusable shape (HTTP 422)."""


class ImageTooLargeError(UploadError):
    """An image larger than a synchronous preview takes (HTTP 413)."""


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


def sniff_format(head: bytes, path: Path) -> str:
    """``png``, ``tiff`` or ``dng`` from the first bytes (and DNGVersion tag); 415 otherwise."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head[:4] in TIFF_MAGICS:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                is_dng = DNG_VERSION_TAG in tif.pages[0].tags
        except Exception as exc:  # any parse failure of a TIFF header means a corrupt file
            raise CorruptImageError(f"the TIFF/DNG file is corrupt: {exc}") from None
        return "dng" if is_dng else "tiff"
    for magic, name in _OTHER_MAGICS.items():
        if head.startswith(magic):
            raise UnsupportedImageError(
                f"{name} images are not supported; upload a PNG, TIFF or DNG file"
            )
    if not head:
        raise CorruptImageError("the uploaded file is empty")
    raise UnsupportedImageError("the file is not a PNG, TIFF or DNG image (unrecognised content)")


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


def decode(path: Path, fmt: str, *, min_side: int = 16, max_side: int = 8192) -> DecodedImage:
    """Decode the file at ``path`` in format ``fmt``; CorruptImageError says what is wrong."""
    if fmt == "dng":
        from core.filestore import FileStoreError
        from core.rawio import read_raw

        try:
            cfa, meta = read_raw(path, default_exposure_s=1e-3)
        except (FileStoreError, ValueError, OSError) as exc:
            raise CorruptImageError(f"the DNG file does not decode: {exc}") from None
        image = DecodedImage("dng", cfa, meta)
    else:
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None and fmt == "tiff":
            import tifffile

            try:
                img = tifffile.imread(path)
            except Exception:  # noqa: BLE001 - reported as corrupt below
                img = None
            else:
                img = img if img.ndim == 2 else img[..., ::-1]  # decode() expects BGR order
        if img is None:
            raise CorruptImageError(f"the {fmt.upper()} file is corrupt: it does not decode")
        if img.ndim not in (2, 3):
            raise CorruptImageError(f"expected a single image, got an array of shape {img.shape}")
        if img.dtype not in (np.uint8, np.uint16, np.float32):
            raise CorruptImageError(f"unsupported sample type {img.dtype} (use 8 or 16 bit)")
        image = DecodedImage(fmt, _bgr_to_rgb(img))
    h, w = image.height, image.width
    if min(h, w) < min_side or max(h, w) > max_side:
        raise CorruptImageError(
            f"image is {w}×{h} px; both sides must lie in [{min_side}, {max_side}]"
        )
    return image


def spool_and_check(source: BinaryIO, scratch_dir: Path) -> tuple[Path, DecodedImage]:
    """Copy ``source`` to a scratch file under ``scratch_dir``, sniff and decode it.

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
        image = decode(path, sniff_format(head, path))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, image


def store_upload(source: BinaryIO, data_dir: Path) -> tuple[str, DecodedImage]:
    """Check the upload and publish it as ``uploads/<uuid>.<ext>`` → (relative path, image)."""
    upload_dir = data_dir / UPLOAD_DIR
    scratch, image = spool_and_check(source, upload_dir)
    ext = {"png": "png", "tiff": "tif", "dng": "dng"}[image.fmt]
    rel = f"{UPLOAD_DIR}/{uuid.uuid4().hex}.{ext}"
    try:
        with atomic_path(data_dir / rel) as tmp:
            scratch.replace(tmp)
    finally:
        scratch.unlink(missing_ok=True)
    return rel, image


def check_upload(source: BinaryIO, scratch_dir: Path) -> DecodedImage:
    """Check the upload without keeping it (the synchronous preview)."""
    scratch, image = spool_and_check(source, scratch_dir)
    scratch.unlink(missing_ok=True)
    return image


def to_rgb01(image: DecodedImage) -> np.ndarray:
    """The image as ``H×W×3`` float32 in [0, 1]; a DNG through a plain ISP (white balance from
    AsShotNeutral, ColorMatrix1 when present, Menon demosaic), sRGB-encoded.

    The one place where the API develops a DNG: the synchronous preview and the deblur job
    (:func:`develop_dng`) both come here; the ISP itself is :mod:`postprocess.isp`'s."""
    if image.fmt != "dng":
        from deblur.infer import prepare_image

        return prepare_image(image.pixels)
    from postprocess.isp import camera_to_srgb_matrix, run_isp, srgb_encode

    meta = image.raw_meta
    neutral = np.asarray(meta.as_shot_neutral, dtype=np.float64)
    gains = neutral[1] / neutral
    ccm = np.eye(3)
    if meta.color_matrix_1 is not None:
        ccm = camera_to_srgb_matrix(np.asarray(meta.color_matrix_1, dtype=np.float64))
    linear = run_isp(image.pixels, meta, None, gains, ccm)
    return np.clip(srgb_encode(np.clip(linear, 0.0, 1.0)), 0.0, 1.0).astype(np.float32)


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
