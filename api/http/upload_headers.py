"""What an uploaded file is and what its header declares, read without decoding a pixel.

The format comes from the content (PNG signature; TIFF magic, and a DNGVersion tag for a DNG);
other formats are :class:`~api.http.upload_errors.UnsupportedImageError` (415). The header gives
the size (px) of the image decoded and of the largest image in the file (PNG ``IHDR``; every
TIFF/DNG IFD and SubIFD through ``tifffile``, at most :data:`MAX_TIFF_IMAGES`), so a
decompression bomb is refused (413) before it is decoded; tiles over :data:`MAX_TILE_PIXELS`
and more than :data:`MAX_SAMPLES` samples per pixel are refused too.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

from api.http.upload_errors import (
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    UploadError,
    _public_reason,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
DNG_VERSION_TAG = 50706
MAX_TIFF_IMAGES = 64
"""Most IFDs plus SubIFDs a TIFF/DNG upload may hold (each is checked before decoding)."""
MAX_TILE_PIXELS = 1 << 24
"""Largest TIFF tile (pixels) an upload may declare: a decoder allocates one per tile."""
MAX_SAMPLES = 4
"""Most samples per pixel of an image in an upload (grey, RGB, RGBA; a CFA has one)."""
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_OTHER_MAGICS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"RIFF": "WebP/RIFF",
    b"%PDF": "PDF",
}


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header declares, read without decoding a pixel.

    ``width``×``height``: the image that is decoded (PNG; TIFF IFD 0); ``pixels``: the largest
    image in the file (for a DNG the raw image may sit in a SubIFD, next to previews)."""

    width: int
    height: int
    pixels: int


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
