"""What a DNG records about one RAW frame besides its pixels (:class:`RawMetadata`), validated.

Levels are digital numbers (DN) of a sensor of ``bits`` 8..16; times in seconds; gain in dB;
``as_shot_neutral`` green-normalised camera RGB; ``color_matrix_1`` XYZ(D65)→camera, 3×3. A bad
field is an :class:`~core.dng_errors.InvalidRawMetadataError` naming it and its allowed range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from numbers import Integral, Real
from typing import Any

from core.dng_cfa import _check_pattern
from core.dng_errors import InvalidRawMetadataError

_DATETIME_RE = re.compile(r"^\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}$")


def _bad(field: str, allowed: str, value: object) -> InvalidRawMetadataError:
    return InvalidRawMetadataError(f"RawMetadata.{field} must be {allowed}; got {value!r}")


def _int(field: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or not lo <= value <= hi:
        raise _bad(field, f"an integer in [{lo}, {hi}]", value)
    return int(value)


def _real(field: str, value: object, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (lo < value if lo_open else lo <= value) or not value <= hi:
        bracket = "(" if lo_open else "["
        raise _bad(field, f"a finite number in {bracket}{lo}, {hi}]", value)
    return float(value)


def _ascii(field: str, value: object, allow_empty: bool) -> str:
    ok = isinstance(value, str) and value.isascii() and "\x00" not in value
    if not ok or (not allow_empty and not value.strip()):
        what = "an ASCII string without NUL" + ("" if allow_empty else ", not empty")
        hint = " (serialise JSON with json.dumps(..., ensure_ascii=True))"
        raise _bad(field, what + (hint if field == "description" else ""), value)
    return value


def _neutral(value: object) -> tuple[float, float, float]:
    allowed = "3 finite numbers in (0, 64] with green == 1.0, e.g. (0.52, 1.0, 0.71)"
    try:
        values = tuple(_real("as_shot_neutral", v, 0.0, 64.0, lo_open=True) for v in value)
    except (TypeError, InvalidRawMetadataError):
        raise _bad("as_shot_neutral", allowed, value) from None
    if len(values) != 3 or values[1] != 1.0:
        raise _bad("as_shot_neutral", allowed, value)
    return values  # type: ignore[return-value]


def _matrix(value: object) -> tuple[tuple[float, ...], ...] | None:
    if value is None:
        return None
    allowed = "None or a 3×3 nested sequence of finite numbers in [-100, 100]"
    try:
        rows = tuple(tuple(_real("color_matrix_1", v, -100.0, 100.0) for v in r) for r in value)
    except (TypeError, InvalidRawMetadataError):
        raise _bad("color_matrix_1", allowed, value) from None
    if len(rows) != 3 or any(len(r) != 3 for r in rows):
        raise _bad("color_matrix_1", allowed, value)
    return rows


def _capture_time(value: object) -> str | None:
    if value is None:
        return None
    allowed = "None or a date 'YYYY:MM:DD HH:MM:SS'"
    if not isinstance(value, str) or not _DATETIME_RE.match(value):
        raise _bad("capture_time", allowed, value)
    try:
        datetime.strptime(value, "%Y:%m:%d %H:%M:%S")
    except ValueError:
        raise _bad("capture_time", allowed + " that exists", value) from None
    return value


@dataclass(frozen=True, kw_only=True)
class RawMetadata:
    """What a DNG records about one RAW frame besides its pixels.

    Fields are validated (and normalised to plain Python types) on construction; a bad field
    raises :class:`InvalidRawMetadataError` naming it and its allowed range.

    Attributes:
        cfa_pattern: one of :data:`CFA_PATTERNS`.
        bits: sensor bit depth, 8..16 (the container is always 16-bit).
        black_level: black level in DN, 0 <= black_level < white_level.
        white_level: saturation level in DN, <= 2**bits - 1 (default: 2**bits - 1).
        as_shot_neutral: camera-space RGB of a neutral object, green-normalised
            (green == 1.0), each in (0, 64].
        camera_make, camera_model: non-empty ASCII. camera_serial: ASCII (may be empty).
        exposure_time_s: exposure time in seconds, in [1e-9, 3600].
        gain_db: analogue gain in dB, in [0, 100].
        iso: ISO speed 1..65535, or None.
        color_matrix_1: 3×3 XYZ(D65)→camera matrix (DNG ColorMatrix1), or None.
        capture_time: 'YYYY:MM:DD HH:MM:SS' (stored as DateTime), or None.
        description: ASCII text, typically JSON from the caller (ImageDescription); may be "".
    """

    cfa_pattern: str
    bits: int = 12
    black_level: int
    white_level: int | None = None
    as_shot_neutral: tuple[float, float, float]
    camera_make: str
    camera_model: str
    camera_serial: str
    exposure_time_s: float
    gain_db: float = 0.0
    iso: int | None = None
    color_matrix_1: tuple[tuple[float, ...], ...] | None = None
    capture_time: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for name, value in self._normalised().items():
            object.__setattr__(self, name, value)

    def _normalised(self) -> dict[str, Any]:
        bits = _int("bits", self.bits, 8, 16)
        white = 2**bits - 1 if self.white_level is None else self.white_level
        white = _int("white_level", white, 1, 2**bits - 1)
        black = _int("black_level", self.black_level, 0, 2**bits - 1)
        if black >= white:
            raise InvalidRawMetadataError(
                f"RawMetadata.black_level ({black}) must be below white_level ({white})"
            )
        return {
            "cfa_pattern": _check_pattern(self.cfa_pattern),
            "bits": bits,
            "black_level": black,
            "white_level": white,
            "as_shot_neutral": _neutral(self.as_shot_neutral),
            "camera_make": _ascii("camera_make", self.camera_make, allow_empty=False),
            "camera_model": _ascii("camera_model", self.camera_model, allow_empty=False),
            "camera_serial": _ascii("camera_serial", self.camera_serial, allow_empty=True),
            "exposure_time_s": _real("exposure_time_s", self.exposure_time_s, 1e-9, 3600.0),
            "gain_db": _real("gain_db", self.gain_db, 0.0, 100.0),
            "iso": None if self.iso is None else _int("iso", self.iso, 1, 65535),
            "color_matrix_1": _matrix(self.color_matrix_1),
            "capture_time": _capture_time(self.capture_time),
            "description": _ascii("description", self.description, allow_empty=True),
        }
