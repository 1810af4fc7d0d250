"""Reading a DNG written by :mod:`core.dng_encode`: the layout checked, metadata from the tags
(tifffile), pixels from rawpy (LibRaw), and both checked to agree.

Only IFD 0 as an uncompressed 16-bit single-sample 2×2 CFA is read (else
:class:`~core.dng_errors.UnsupportedDngError`); a damaged or truncated file is
:class:`~core.dng_errors.CorruptDngError` naming the source. Returns an H×W uint16 mosaic in DN
(``raw_image_visible``, not black-subtracted).
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
import rawpy
import tifffile

from core.dng_cfa import CFA_PATTERNS
from core.dng_encode import _PRIVATE_PREFIX, _RATIONAL, _SRATIONAL
from core.dng_errors import CorruptDngError, InvalidRawMetadataError, UnsupportedDngError
from core.dng_metadata import RawMetadata
from core.filestore import StrPath


def _tag(tags: tifffile.TiffTags, code: int, source: str, default: Any = ...) -> Any:
    """Value of tag ``code``; ``default`` when absent (UnsupportedDngError if no default)."""
    tag = tags.get(code)
    if tag is not None:
        return tag.value
    if default is ...:
        raise UnsupportedDngError(source, f"required DNG tag {code} is missing")
    return default


def _numbers(tags: tifffile.TiffTags, code: int, source: str) -> list[float]:
    """A numeric tag's values as floats; (S)RATIONAL (num, den) pairs are divided out."""
    tag = tags.get(code)
    if tag is None:
        raise UnsupportedDngError(source, f"required DNG tag {code} is missing")
    value = tag.value
    terms = list(value) if isinstance(value, tuple | list) else [value]
    if tag.dtype in (_RATIONAL, _SRATIONAL):
        return [n / d for n, d in zip(terms[::2], terms[1::2], strict=True)]
    return [float(t) for t in terms]


def _text(tags: tifffile.TiffTags, code: int, data: bytes, source: str, default: Any = ...) -> Any:
    """An ASCII tag's exact text, read from the file bytes (tifffile strips whitespace)."""
    tag = tags.get(code)
    if tag is None:
        return _tag(tags, code, source, default)
    raw = data[tag.valueoffset : tag.valueoffset + tag.count]
    return raw.split(b"\x00", 1)[0].decode("ascii")


def _single_level(tags: tifffile.TiffTags, code: int, source: str) -> int:
    """A black/white level that must be one integer for all CFA sites."""
    values = set(_numbers(tags, code, source))
    if len(values) != 1 or not float(next(iter(values))).is_integer():
        raise UnsupportedDngError(
            source, f"tag {code} holds {sorted(values)}; only one integer level is supported"
        )
    return int(values.pop())


def _check_layout(page: tifffile.TiffPage, size: int, source: str) -> str:
    """Check IFD 0 is an uncompressed 16-bit 2×2 CFA inside the file; return its pattern."""
    tags = page.tags
    if _tag(tags, 50706, source, None) is None:
        raise UnsupportedDngError(source, "no DNGVersion tag: this is a TIFF, not a DNG")
    layout = (int(page.photometric), int(page.compression), page.bitspersample)
    if layout != (32803, 1, 16) or page.samplesperpixel != 1:
        raise UnsupportedDngError(
            source,
            "IFD 0 is not an uncompressed 16-bit single-sample CFA image "
            f"(photometric, compression, bits = {layout})",
        )
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
    if sum(page.databytecounts) < 2 * page.imagewidth * page.imagelength or max(ends) > size:
        raise CorruptDngError(source, "the image data is truncated")
    if tuple(_tag(tags, 33421, source)) != (2, 2):
        raise UnsupportedDngError(source, "only 2×2 CFA repeat patterns are supported")
    letters = "".join("RGB"[i] if i < 3 else "?" for i in bytes(_tag(tags, 33422, source)))
    if letters not in CFA_PATTERNS:
        raise UnsupportedDngError(source, f"unsupported CFAPattern {letters!r}")
    return letters


def _read_private(tags: tifffile.TiffTags, white: int) -> dict[str, Any]:
    raw = bytes(_tag(tags, 50740, "", b""))
    payload: dict[str, Any] = {}
    if raw.startswith(_PRIVATE_PREFIX):
        try:
            payload = json.loads(raw[len(_PRIVATE_PREFIX) :].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            payload = {}
    if not isinstance(payload, dict):
        payload = {}
    return {
        "bits": payload.get("bits", max(8, white.bit_length())),
        "gain_db": payload.get("gain_db", 0.0),
    }


def _rows_of_three(values: list[float]) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(values[i : i + 3]) for i in range(0, len(values), 3))


def _read_metadata(page: tifffile.TiffPage, pattern: str, data: bytes, source: str) -> RawMetadata:
    """Metadata from the tags of IFD 0 (``data`` is the whole file, for exact strings)."""
    tags = page.tags
    white = _single_level(tags, 50717, source) if 50717 in tags else 2**16 - 1
    black = _single_level(tags, 50714, source) if 50714 in tags else 0
    matrix = _numbers(tags, 50721, source) if 50721 in tags else None
    iso = _numbers(tags, 34855, source)[0] if 34855 in tags else None
    return RawMetadata(
        cfa_pattern=pattern,
        black_level=black,
        white_level=white,
        as_shot_neutral=tuple(_numbers(tags, 50728, source)),
        camera_make=_text(tags, 271, data, source),
        camera_model=_text(tags, 272, data, source),
        camera_serial=_text(tags, 50735, data, source, ""),
        exposure_time_s=_numbers(tags, 33434, source)[0],
        iso=None if iso is None else int(iso),
        color_matrix_1=None if matrix is None else _rows_of_three(matrix),
        capture_time=_text(tags, 306, data, source, None),
        description=_text(tags, 270, data, source, ""),
        **_read_private(tags, white),
    )


def _read_pixels(data: bytes, pattern: str, shape: tuple[int, int], source: str) -> np.ndarray:
    """Raw values through rawpy, after checking rawpy sees the same size and CFA layout."""
    with rawpy.imread(io.BytesIO(data)) as raw:
        image = raw.raw_image_visible.copy()
        desc, tile = raw.color_desc.decode("ascii"), raw.raw_pattern
        seen = "" if tile is None else "".join(desc[i] for i in tile.ravel())
    if image.shape != shape or seen != pattern:
        raise CorruptDngError(
            source,
            f"rawpy reads a {image.shape} {seen} mosaic but the tags say {shape} {pattern}",
        )
    return image


def decode_dng(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, RawMetadata]:
    """Decode DNG bytes written by :func:`encode_dng`; return (H×W uint16 mosaic, metadata).

    ``source`` names the data in error messages (read_dng passes the path).

    Raises:
        CorruptDngError: not a TIFF/DNG, truncated, damaged, or rawpy and the tags disagree.
        UnsupportedDngError: a DNG in a layout this module does not read.
    """
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            pattern = _check_layout(page, len(data), source)
            meta = _read_metadata(page, pattern, data, source)
            shape = (page.imagelength, page.imagewidth)
    except CorruptDngError:
        raise
    except InvalidRawMetadataError as exc:
        raise CorruptDngError(source, f"its tags hold invalid metadata ({exc})") from exc
    except (
        tifffile.TiffFileError,
        ValueError,
        IndexError,
        TypeError,
        KeyError,
        struct.error,
    ) as exc:
        raise CorruptDngError(source, f"not a readable DNG ({exc})") from exc
    try:
        return _read_pixels(data, pattern, shape, source), meta
    except rawpy.LibRawError as exc:
        raise CorruptDngError(source, f"LibRaw cannot decode it ({exc})") from exc


def read_dng(path: StrPath) -> tuple[np.ndarray, RawMetadata]:
    """Read a DNG written by :func:`write_dng`; return (H×W uint16 mosaic, metadata).

    Pixels come from rawpy (``raw_image_visible``), metadata from the tags via tifffile.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptDngError / UnsupportedDngError: see :func:`decode_dng`; the message names
            the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    return decode_dng(data, source=str(path))
