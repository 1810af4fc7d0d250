"""Read any RAW file as a 2×2 Bayer CFA mosaic and its :class:`core.dng.RawMetadata`.

Two backends:

* ``"dng"``: DNGs written by :mod:`core.dng` (recognised by their ``ReLoBlur`` DNGPrivateData),
  read with :func:`core.dng.read_dng`, metadata exactly as written.
* ``"rawpy"``: anything else LibRaw opens (camera RAW such as CR2/NEF/ARW, DNGs from other
  software). Pixels are ``raw_image_visible``; levels and the CFA layout come from LibRaw;
  make, model, serial, exposure time, AsShotNeutral, ColorMatrix1 and DateTime come from the
  TIFF/EXIF tags when the file is TIFF-based, else LibRaw's values or the documented defaults.

``backend="auto"`` (the default) picks ``"dng"`` for our own DNGs and ``"rawpy"`` otherwise
(also for a marked DNG in a layout :mod:`core.dng` does not read, e.g. per-channel black levels).
"""

from __future__ import annotations

import io
import math
import re
import struct
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rawpy
import tifffile

from core.dng import (
    CFA_PATTERNS,
    CorruptDngError,
    InvalidRawMetadataError,
    RawMetadata,
    UnsupportedDngError,
    decode_dng,
)
from core.filestore import CorruptFileError, StrPath

__all__ = [
    "Backend",
    "MissingExposureError",
    "RawReadError",
    "UnsupportedBitDepthError",
    "UnsupportedRawError",
    "is_reloblur_dng",
    "read_raw",
]

Backend = Literal["auto", "dng", "rawpy"]

_PRIVATE_PREFIX = b"ReLoBlur\x00"
_DATETIME_RE = re.compile(r"^\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}$")
_UNKNOWN = "unknown"


class RawReadError(CorruptFileError):
    """LibRaw (or :func:`core.dng.read_dng`) cannot open or decode the file."""

    advice = (
        "check that it is a camera RAW or DNG file that LibRaw supports and that it is complete "
        "(copy it again from the camera card or re-export it)"
    )


class UnsupportedRawError(CorruptFileError):
    """A readable RAW whose sensor layout is not a 2×2 Bayer CFA (X-Trans, Foveon, linear)."""

    advice = (
        "only 2×2 Bayer (RGGB, BGGR, GRBG, GBRG) mosaics can be processed; X-Trans, Foveon, "
        "four-colour and linear (demosaiced) DNG files cannot be imported"
    )


class UnsupportedBitDepthError(UnsupportedRawError):
    """A RAW whose white level needs more than 16 bits."""

    advice = "only sensors of 8 to 16 bits per sample are supported"


class MissingExposureError(CorruptFileError):
    """The file records no exposure time and the caller gave none."""

    advice = "pass the exposure time in seconds (default_exposure_s / the manifest's exposure)"


def _tiff_info(data: bytes) -> dict[str, Any] | None:
    """IFD 0 tags (code → value) plus EXIF tags (name → value) of a TIFF-based file, or None."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            info: dict[str, Any] = {code: tag.value for code, tag in page.tags.items()}
            exif = page.tags.get(34665)  # ExifTag
            info["exif"] = exif.value if exif is not None and isinstance(exif.value, dict) else {}
            info["dtypes"] = {code: tag.dtype for code, tag in page.tags.items()}
            return info
    except (tifffile.TiffFileError, ValueError, IndexError, TypeError, KeyError, OSError,
            struct.error):
        return None


def _is_ours(info: dict[str, Any] | None) -> bool:
    if info is None or 50706 not in info:
        return False
    private = info.get(50740, b"")
    return isinstance(private, bytes | bytearray) and bytes(private).startswith(_PRIVATE_PREFIX)


def is_reloblur_dng(path: StrPath) -> bool:
    """Whether ``path`` is a DNG written by :mod:`core.dng` (has its DNGPrivateData marker)."""
    return _is_ours(_tiff_info(Path(path).read_bytes()))


# --------------------------------------------------------------------------- tag helpers


def _as_floats(value: Any) -> list[float]:
    """A numeric tag value as floats; tifffile gives rationals as flat (num, den, ...) tuples."""
    terms = list(value) if isinstance(value, tuple | list) else [value]
    return [float(t) for t in terms]


def _rational_values(info: dict[str, Any], code: int) -> list[float] | None:
    if code not in info:
        return None
    terms = _as_floats(info[code])
    if info["dtypes"].get(code) in (5, 10):  # (S)RATIONAL
        return [n / d for n, d in zip(terms[::2], terms[1::2], strict=True) if d]
    return terms


def _ascii_tag(info: dict[str, Any] | None, code: int, exif_name: str | None = None) -> str:
    value = None if info is None else info.get(code)
    if value is None and info is not None and exif_name:
        value = info["exif"].get(exif_name)
    if not isinstance(value, str):
        return ""
    text = value.split("\x00", 1)[0].strip()
    return text if text.isascii() else text.encode("ascii", "replace").decode("ascii")


def _exposure_from_tags(info: dict[str, Any] | None) -> float | None:
    if info is None:
        return None
    values = _rational_values(info, 33434)
    if values:
        return values[0]
    exif = info["exif"].get("ExposureTime")
    if isinstance(exif, tuple | list) and len(exif) == 2 and exif[1]:
        return exif[0] / exif[1]
    if isinstance(exif, int | float):
        return float(exif)
    return None


def _iso_from_tags(info: dict[str, Any] | None, fallback: float) -> int | None:
    iso = None if info is None else info.get(34855, info["exif"].get("ISOSpeedRatings"))
    if isinstance(iso, tuple | list):
        iso = iso[0] if iso else None
    value = float(iso) if isinstance(iso, int | float) and iso > 0 else fallback
    return int(value) if 1 <= value <= 65535 else None


def _white_from_tags(info: dict[str, Any] | None) -> int | None:
    values = None if info is None else _rational_values(info, 50717)
    return int(max(values)) if values else None


# --------------------------------------------------------------------------- rawpy backend


def _pattern(raw: rawpy.RawPy, source: Path) -> str:
    """The 2×2 Bayer pattern string, or UnsupportedRawError."""
    if raw.raw_type != rawpy.RawType.Flat:
        raise UnsupportedRawError(source, "it holds linear (demosaiced) data, not a CFA mosaic")
    desc = raw.color_desc.decode("ascii", "replace")
    tile = raw.raw_pattern
    if tile is None:
        raise UnsupportedRawError(source, "LibRaw reports no CFA pattern (e.g. a Foveon sensor)")
    if raw.num_colors > 3 or set(desc) - set("RGB"):
        raise UnsupportedRawError(
            source, f"its CFA has {raw.num_colors} colours ({desc!r}); only R, G, B are supported"
        )
    h, w = tile.shape
    if h % 2 or w % 2 or not (tile == np.tile(tile[:2, :2], (h // 2, w // 2))).all():
        raise UnsupportedRawError(
            source, f"its CFA repeats every {h}×{w} pixels (e.g. X-Trans), not every 2×2"
        )
    letters = "".join(desc[i] if i < len(desc) else "?" for i in tile[:2, :2].ravel())
    if letters not in CFA_PATTERNS:
        raise UnsupportedRawError(source, f"its 2×2 CFA pattern {letters!r} is not a Bayer one")
    return letters


def _neutral(raw: rawpy.RawPy, info: dict[str, Any] | None) -> tuple[float, float, float]:
    tag = None if info is None else _rational_values(info, 50728)
    if tag and len(tag) == 3 and tag[1] > 0 and all(v > 0 for v in tag):
        values = [v / tag[1] for v in tag]
    else:
        mult = list(raw.camera_whitebalance)[:3]
        if len(mult) < 3 or not all(m > 0 and math.isfinite(m) for m in mult):
            return (1.0, 1.0, 1.0)
        values = [mult[1] / m for m in mult]
    r, _, b = (min(max(v, 1e-6), 64.0) for v in values)
    return (r, 1.0, b)


def _color_matrix(raw: rawpy.RawPy, info: dict[str, Any] | None) -> tuple | None:
    values = None if info is None else _rational_values(info, 50721)
    if values is None or len(values) != 9:
        matrix = np.asarray(raw.rgb_xyz_matrix, dtype=float)[:3]
        values = matrix.ravel().tolist() if matrix.shape == (3, 3) and matrix.any() else None
    if values is None or not all(math.isfinite(v) and abs(v) <= 100 for v in values):
        return None
    return tuple(tuple(values[i : i + 3]) for i in range(0, 9, 3))


def _read_with_rawpy(
    data: bytes, info: dict[str, Any] | None, source: Path, default_exposure_s: float | None
) -> tuple[np.ndarray, RawMetadata]:
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            pattern = _pattern(raw, source)
            cfa = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
            blacks = [float(b) for b in raw.black_level_per_channel]
            white = int(raw.white_level)
            neutral = _neutral(raw, info)
            matrix = _color_matrix(raw, info)
            other = raw.other
            shutter = float(other.shutter_speed)
            iso = float(other.iso_speed)
    except rawpy.LibRawError as exc:
        raise RawReadError(source, f"LibRaw cannot open it ({type(exc).__name__}: {exc})") from exc
    if white.bit_length() > 16:
        raise UnsupportedBitDepthError(
            source, f"its white level is {white}, which needs {white.bit_length()} bits"
        )
    exposure = _exposure_from_tags(info)
    if exposure is None or not exposure > 0:
        exposure = shutter if shutter > 0 and math.isfinite(shutter) else default_exposure_s
    if exposure is None:
        raise MissingExposureError(source, "it records no exposure time")
    capture_time = _ascii_tag(info, 306, "DateTimeOriginal")
    try:
        meta = RawMetadata(
            cfa_pattern=pattern,
            bits=min(max(white.bit_length(), 8), 16),
            black_level=round(sum(blacks) / len(blacks)) if blacks else 0,
            white_level=white,
            as_shot_neutral=neutral,
            camera_make=_ascii_tag(info, 271) or _UNKNOWN,
            camera_model=_ascii_tag(info, 272) or _UNKNOWN,
            camera_serial=_ascii_tag(info, 50735, "BodySerialNumber"),
            exposure_time_s=exposure,
            iso=_iso_from_tags(info, iso),
            color_matrix_1=matrix,
            capture_time=capture_time if _DATETIME_RE.match(capture_time) else None,
        )
    except InvalidRawMetadataError as exc:
        raise RawReadError(source, f"its metadata is out of range ({exc})") from exc
    return cfa, meta


# --------------------------------------------------------------------------- entry point


def read_raw(
    path: StrPath, *, backend: Backend = "auto", default_exposure_s: float | None = None
) -> tuple[np.ndarray, RawMetadata]:
    """Read a RAW file; return (H×W uint16 CFA mosaic in DN, not black-subtracted, metadata).

    Args:
        path: a DNG written by :mod:`core.dng`, or any file LibRaw opens.
        backend: ``"auto"`` (our DNGs through :func:`core.dng.read_dng`, the rest through
            rawpy), ``"dng"`` or ``"rawpy"`` to force one.
        default_exposure_s: exposure time (s) to use when the file records none; without it
            such a file raises :class:`MissingExposureError`.

    Through rawpy: ``black_level`` is the mean of LibRaw's per-channel black levels, rounded
    (they are usually equal; when they differ the per-channel offsets are lost);
    ``bits`` is ``white_level.bit_length()`` clipped to 8..16; make/model are ``"unknown"``
    and the serial ``""`` when the file has no TIFF tags for them; ``gain_db`` is 0.

    Raises:
        FileNotFoundError: no file at ``path``.
        RawReadError: LibRaw (or read_dng) cannot open or decode it.
        UnsupportedRawError: not a 2×2 Bayer R/G/B mosaic.
        UnsupportedBitDepthError: the white level needs more than 16 bits.
        MissingExposureError: no exposure time in the file and no ``default_exposure_s``.
    """
    if backend not in ("auto", "dng", "rawpy"):
        raise ValueError(f"backend must be 'auto', 'dng' or 'rawpy', got {backend!r}")
    source = Path(path)
    data = source.read_bytes()
    info = _tiff_info(data)
    white_tag = _white_from_tags(info)
    if white_tag is not None and white_tag.bit_length() > 16:
        raise UnsupportedBitDepthError(
            source, f"its WhiteLevel is {white_tag}, which needs {white_tag.bit_length()} bits"
        )
    if backend == "dng" or (backend == "auto" and _is_ours(info)):
        try:
            return decode_dng(data, source=str(source))
        except UnsupportedDngError as exc:
            if backend == "dng":
                raise RawReadError(source, exc.reason) from exc
            # a layout core.dng does not write (e.g. per-channel black levels): LibRaw reads it
        except CorruptDngError as exc:
            raise RawReadError(source, exc.reason) from exc
    return _read_with_rawpy(data, info, source, default_exposure_s)
