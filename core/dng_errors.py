"""The errors of :mod:`core.dng`: bad metadata, bad CFA data, unreadable or unsupported files.

All are :class:`core.filestore.FileStoreError` s; :class:`InvalidRawMetadataError` is also a
``ValueError``, :class:`CorruptDngError` a :class:`core.filestore.CorruptFileError` (raised with
the file's name and a reason).
"""

from __future__ import annotations

from core.filestore import CorruptFileError, FileStoreError, ImageFormatError


class DngError(FileStoreError):
    """Base class of the errors raised by :mod:`core.dng`."""


class InvalidRawMetadataError(DngError, ValueError):
    """A :class:`RawMetadata` field is missing, of the wrong type or out of range."""


class UnknownCfaPatternError(InvalidRawMetadataError):
    """A CFA pattern string is not one of :data:`CFA_PATTERNS`."""


class InvalidCfaDataError(DngError, ImageFormatError):
    """A CFA array has the wrong dtype, shape or values for the given metadata."""


class CorruptDngError(DngError, CorruptFileError):
    """A file is not a readable DNG (truncated, damaged, or inconsistent tags)."""


class UnsupportedDngError(CorruptDngError):
    """A valid DNG whose layout this module does not read (e.g. compressed or in a SubIFD)."""

    advice = (
        "read_dng reads the uncompressed 16-bit Bayer DNGs that write_dng produces; "
        "open other DNGs with rawpy directly"
    )
