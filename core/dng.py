"""RAW frames as DNG: a 16-bit container holding the sensor's bits, written with tifffile, read
with rawpy (bit-identical round trip).

Layout written by :func:`encode_dng` (all in IFD 0, little-endian, uncompressed, one strip):
a 2×2 Bayer CFA (PhotometricInterpretation 32803, CFARepeatPatternDim, CFAPattern with
0=R 1=G 2=B, CFAPlaneColor, CFALayout), DNGVersion 1.4, Make/Model/UniqueCameraModel/
CameraSerialNumber, one BlackLevel for all sites, WhiteLevel, AsShotNeutral, ExposureTime,
optionally ISOSpeedRatings, ColorMatrix1 + CalibrationIlluminant1 (D65), DateTime and
ImageDescription. The sensor bit depth and the analogue gain, which have no standard tag, are
stored as JSON in DNGPrivateData after the ASCII prefix ``ReLoBlur\\0``. Nothing time- or
version-dependent is written: the same inputs always give the same bytes.

Real numbers are stored as TIFF rationals (the closest fraction whose terms fit 32 bits), so
they read back equal for decimal values such as 0.52 or 1/250 and within ~1e-9 relative
otherwise.

Modules: :mod:`core.dng_errors`, :mod:`core.dng_cfa` (Bayer patterns and colour maps),
:mod:`core.dng_metadata` (:class:`RawMetadata`), :mod:`core.dng_encode` (writing) and
:mod:`core.dng_decode` (reading); this module re-exports their public names.
"""

from __future__ import annotations

from core.dng_cfa import CFA_PATTERNS, cfa_channel_masks, cfa_color_map, cfa_index_map
from core.dng_decode import decode_dng, read_dng
from core.dng_encode import MIN_DNG_SIZE, encode_dng, write_dng
from core.dng_errors import (
    CorruptDngError,
    DngError,
    InvalidCfaDataError,
    InvalidRawMetadataError,
    UnknownCfaPatternError,
    UnsupportedDngError,
)
from core.dng_metadata import RawMetadata

__all__ = [
    "CFA_PATTERNS",
    "MIN_DNG_SIZE",
    "CorruptDngError",
    "DngError",
    "InvalidCfaDataError",
    "InvalidRawMetadataError",
    "RawMetadata",
    "UnknownCfaPatternError",
    "UnsupportedDngError",
    "cfa_channel_masks",
    "cfa_color_map",
    "cfa_index_map",
    "decode_dng",
    "encode_dng",
    "read_dng",
    "write_dng",
]
