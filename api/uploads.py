"""Uploaded images: format by content (PNG, TIFF, DNG), a header check, a full decode, then an
atomic store.

The body's size is bounded while it streams in (``api.app.BodyLimitMiddleware``, 413); here the
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
"""

from __future__ import annotations

import itertools
import re
import shutil
import struct
import tempfile
import threading
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
DEFAULT_MAX_PIXELS = 40_000_000
"""The pixel limit when the caller gives none (``settings.max_image_pixels``' default)."""
MAX_TIFF_IMAGES = 64
"""Most IFDs plus SubIFDs a TIFF/DNG upload may hold (each is checked before decoding)."""
MAX_TILE_PIXELS = 1 << 24
"""Largest TIFF tile (pixels) an upload may declare: a decoder allocates one per tile."""
MAX_SAMPLES = 4
"""Most samples per pixel of an image in an upload (grey, RGB, RGBA; a CFA has one)."""
DECODE_SLOTS = 2
"""Uploads decoded at the same time; further ones wait (with the pixel limit, a memory bound)."""
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)
_PATH_LIKE = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/][^\s'\"<>|]+")
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
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
    """An image with more pixels than the limit (HTTP 413): ``max_pixels`` for an upload,
    ``preview_max_pixels`` for a synchronous preview."""


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


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header declares, read without decoding a pixel.

    ``width``×``height``: the image that is decoded (PNG; TIFF IFD 0); ``pixels``: the largest
    image in the file (for a DNG the raw image may sit in a SubIFD, next to previews)."""

    width: int
    height: int
    pixels: int


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
            raise CorruptImageError(
                f"the TIFF/DNG file is corrupt: {_public_reason(exc, path)}"
            ) from None
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


def _png_header(path: Path) -> ImageHeader:
    """The PNG's IHDR: signature, length 13, ``IHDR``, width, height, bit depth, colour type."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise CorruptImageError("the PNG file is corrupt: it has no IHDR header")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise CorruptImageError(f"the PNG file is corrupt: its IHDR declares {width}×{height} px")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise CorruptImageError(
            f"the PNG file is corrupt: bit depth {depth} with colour type {colour} is invalid"
        )
    return ImageHeader(width, height, width * height)


def _tiff_images(tif) -> list:
    """IFD 0 and every further IFD and SubIFD (depth first), at most :data:`MAX_TIFF_IMAGES`."""
    found: list = []

    def walk(pages) -> None:
        for page in itertools.islice(pages, MAX_TIFF_IMAGES + 1 - len(found)):
            found.append(page)
            if len(found) > MAX_TIFF_IMAGES:
                return
            if getattr(page, "subifds", None):
                walk(page.pages)

    walk(tif.pages)
    if len(found) > MAX_TIFF_IMAGES:
        raise CorruptImageError(
            f"the file holds more than {MAX_TIFF_IMAGES} images (IFDs and SubIFDs); "
            "upload a single image"
        )
    return found


def _tiff_header(path: Path, fmt: str) -> ImageHeader:
    """Every image's size, tile size and samples, from the IFDs alone (no image data read)."""
    import tifffile

    label = fmt.upper()
    try:
        with tifffile.TiffFile(path) as tif:
            images = _tiff_images(tif)
            sizes = []
            for page in images:
                width, height = int(page.imagewidth), int(page.imagelength)
                depth = max(1, int(getattr(page, "imagedepth", 1) or 1))
                tile = (
                    int(page.tilewidth or 0)
                    * int(page.tilelength or 0)
                    * max(1, int(getattr(page, "tiledepth", 1) or 1))
                )
                samples = int(page.samplesperpixel or 1)
                sizes.append((width, height, depth, tile, samples))
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse the IFDs: a corrupt file
        raise CorruptImageError(
            f"the {label} file is corrupt: {_public_reason(exc, path)}"
        ) from None
    if not sizes:
        raise CorruptImageError(f"the {label} file is corrupt: it holds no image")
    for width, height, _, _, samples in sizes:
        if width < 1 or height < 1:
            raise CorruptImageError(f"the {label} file is corrupt: an image is {width}×{height} px")
        if samples > MAX_SAMPLES:
            raise CorruptImageError(
                f"an image in the {label} file has {samples} samples per pixel; "
                f"expected at most {MAX_SAMPLES}"
            )
    tile = max(t for _, _, _, t, _ in sizes)
    if tile > MAX_TILE_PIXELS:
        raise ImageTooLargeError(
            f"the {label} file's tiles have {tile} px; at most {MAX_TILE_PIXELS} px per tile"
        )
    width, height = sizes[0][:2]
    return ImageHeader(width, height, max(w * h * d for w, h, d, _, _ in sizes))


def read_header(path: Path, fmt: str) -> ImageHeader:
    """The image size the file at ``path`` declares (format ``fmt``), without decoding it."""
    return _png_header(path) if fmt == "png" else _tiff_header(path, fmt)


def _check_pixels(header: ImageHeader, max_pixels: int, limit_text: str) -> None:
    if header.pixels > max_pixels:
        if header.pixels == header.width * header.height:
            size = f"{header.width}×{header.height} = {header.pixels} px"
        else:
            size = f"{header.pixels} px (its largest image)"
        raise ImageTooLargeError(
            f"image is {size} by its header; {limit_text.format(max_pixels=max_pixels)}"
        )


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
