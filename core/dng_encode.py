"""Writing a DNG: an H×W uint16 Bayer mosaic and its :class:`~core.dng_metadata.RawMetadata` as
deterministic bytes (tifffile), and atomically as a file.

The tags written are listed in :mod:`core.dng`; reals are TIFF (S)RATIONALs, the closest
fraction whose terms fit 32 bits. The bit depth and gain go to DNGPrivateData as JSON after
:data:`_PRIVATE_PREFIX`, which :mod:`core.dng_decode` reads back.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from typing import Any

import numpy as np
import tifffile

from core.dng_cfa import cfa_index_map
from core.dng_errors import InvalidCfaDataError, InvalidRawMetadataError
from core.dng_metadata import RawMetadata
from core.filestore import StrPath, atomic_write_bytes

MIN_DNG_SIZE = 22
"""LibRaw refuses raws narrower or shorter than this many pixels, so encode_dng does too."""

_PRIVATE_PREFIX = b"ReLoBlur\x00"
"""What DNGPrivateData starts with (then JSON: bits, gain_db); :mod:`core.rawio` looks for it."""
_D65 = 21  # EXIF LightSource code used by CalibrationIlluminant1
_U32 = 2**32 - 1
_S32 = 2**31 - 1

# TIFF data types used in extratags
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10


def _rational(value: float, signed: bool = False) -> list[int]:
    """[numerator, denominator] of the closest fraction whose terms fit (S)RATIONAL."""
    limit = _S32 if signed else _U32
    max_den = limit if abs(value) <= 1 else int(limit / abs(value))
    f = Fraction(value).limit_denominator(max_den)
    return [f.numerator, f.denominator]


def _rationals(values: Any, signed: bool = False) -> list[int]:
    return [term for v in values for term in _rational(v, signed)]


def _check_cfa(cfa: object, meta: RawMetadata) -> np.ndarray:
    """Validate a CFA mosaic against ``meta``; return it as little-endian uint16."""
    if not isinstance(cfa, np.ndarray) or cfa.dtype.kind != "u" or cfa.dtype.itemsize != 2:
        kind = cfa.dtype if isinstance(cfa, np.ndarray) else type(cfa).__name__
        raise InvalidCfaDataError(f"CFA data must be a uint16 numpy array; got {kind}")
    h, w = cfa.shape if cfa.ndim == 2 else (0, 0)
    if cfa.ndim != 2 or h % 2 or w % 2 or min(h, w) < MIN_DNG_SIZE:
        raise InvalidCfaDataError(
            f"CFA data must be 2-D with even height and width of at least {MIN_DNG_SIZE} "
            f"pixels (one value per photosite); got shape {cfa.shape}"
        )
    peak = int(cfa.max())
    if peak > meta.white_level:
        raise InvalidCfaDataError(
            f"CFA data holds {peak} but white_level is {meta.white_level} "
            f"({meta.bits}-bit sensor); clip the data or raise white_level/bits"
        )
    return np.ascontiguousarray(cfa, dtype="<u2")


def _private_data(meta: RawMetadata) -> bytes:
    payload = {"bits": meta.bits, "gain_db": meta.gain_db}
    return _PRIVATE_PREFIX + json.dumps(payload, sort_keys=True).encode("ascii")


def _dng_tags(meta: RawMetadata) -> list[tuple[int, int, int, Any, bool]]:
    """tifffile ``extratags`` (code, dtype, count, value, writeonce) describing ``meta``."""
    model = f"{meta.camera_make} {meta.camera_model}"
    tags: list[tuple[int, int, int, Any, bool]] = [
        (271, _ASCII, 0, meta.camera_make, True),  # Make
        (272, _ASCII, 0, meta.camera_model, True),  # Model
        (274, _SHORT, 1, 1, True),  # Orientation: top-left
        (33421, _SHORT, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, _BYTE, 4, cfa_index_map(meta.cfa_pattern).tobytes(), True),  # CFAPattern
        (33434, _RATIONAL, 1, _rational(meta.exposure_time_s), True),  # ExposureTime
        (50706, _BYTE, 4, b"\x01\x04\x00\x00", True),  # DNGVersion 1.4.0.0
        (50707, _BYTE, 4, b"\x01\x01\x00\x00", True),  # DNGBackwardVersion 1.1.0.0
        (50708, _ASCII, 0, model, True),  # UniqueCameraModel
        (50710, _BYTE, 3, b"\x00\x01\x02", True),  # CFAPlaneColor
        (50711, _SHORT, 1, 1, True),  # CFALayout: rectangular
        (50713, _SHORT, 2, (1, 1), True),  # BlackLevelRepeatDim
        (50714, _LONG, 1, meta.black_level, True),  # BlackLevel
        (50717, _LONG, 1, meta.white_level, True),  # WhiteLevel
        (50728, _RATIONAL, 3, _rationals(meta.as_shot_neutral), True),  # AsShotNeutral
        (50740, _BYTE, 0, _private_data(meta), True),  # DNGPrivateData
    ]
    if meta.camera_serial:
        tags.append((50735, _ASCII, 0, meta.camera_serial, True))  # CameraSerialNumber
    if meta.iso is not None:
        tags.append((34855, _SHORT, 1, meta.iso, True))  # ISOSpeedRatings
    if meta.color_matrix_1 is not None:
        flat = [v for row in meta.color_matrix_1 for v in row]
        tags.append((50721, _SRATIONAL, 9, _rationals(flat, signed=True), True))  # ColorMatrix1
        tags.append((50778, _SHORT, 1, _D65, True))  # CalibrationIlluminant1
    return sorted(tags, key=lambda t: t[0])


def encode_dng(cfa: np.ndarray, meta: RawMetadata) -> bytes:
    """Encode a Bayer mosaic and its metadata as DNG bytes (deterministic).

    Args:
        cfa: H×W uint16 raw values in DN (not black-subtracted), H and W even and at least
            :data:`MIN_DNG_SIZE`, every value <= ``meta.white_level``.
        meta: the frame's metadata; ``meta.cfa_pattern`` describes ``cfa[0:2, 0:2]``.

    Raises:
        InvalidCfaDataError: wrong type, dtype, shape, or values above the white level.
    """
    if not isinstance(meta, RawMetadata):
        raise InvalidRawMetadataError(f"meta must be a RawMetadata; got {type(meta).__name__}")
    data = _check_cfa(cfa, meta)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, byteorder="<", bigtiff=False) as tw:
        tw.write(
            data,
            photometric="cfa",
            subfiletype=0,
            compression=None,
            description=meta.description or None,
            datetime=meta.capture_time or False,
            software=False,
            metadata=None,
            extratags=_dng_tags(meta),
        )
    return buf.getvalue()


def write_dng(path: StrPath, cfa: np.ndarray, meta: RawMetadata) -> str:
    """Encode (see :func:`encode_dng`) and write a DNG atomically; return its SHA-256 hex.

    Nothing is written when the input is invalid.
    """
    return atomic_write_bytes(path, encode_dng(cfa, meta))
