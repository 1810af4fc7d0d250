"""Tests for core.rawio: our DNGs, the rawpy branch, and the named errors for what it refuses."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from core.dng import CFA_PATTERNS, RawMetadata, read_dng, write_dng
from core.dng_encode import _dng_tags
from core.filestore import CorruptFileError, write_png
from core.rawio import (
    MissingExposureError,
    RawReadError,
    UnsupportedBitDepthError,
    UnsupportedRawError,
    is_reloblur_dng,
    read_raw,
)

H, W = 64, 96
Tags = list[tuple[int, int, int, Any, bool]]


def make_meta(**overrides: Any) -> RawMetadata:
    fields: dict[str, Any] = {
        "cfa_pattern": "RGGB", "bits": 12, "black_level": 64, "as_shot_neutral": (0.5, 1.0, 0.75),
        "camera_make": "Acme", "camera_model": "X1", "camera_serial": "SN-42",
        "exposure_time_s": 0.004, "gain_db": 3.0, "iso": 200,
        "color_matrix_1": ((0.9, -0.1, 0.05), (-0.2, 1.1, 0.1), (0.0, 0.1, 0.8)),
        "capture_time": "2024:05:06 07:08:09",
    }
    return RawMetadata(**{**fields, **overrides})


def make_cfa(white: int = 4095, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, white + 1, (H, W)).astype(np.uint16)


def write_crafted(
    path: Path, edit: Callable[[Tags], Tags], data: np.ndarray | None = None,
    photometric: Any = "cfa", meta: RawMetadata | None = None,
) -> Path:
    """A DNG like core.dng's, with its tags passed through ``edit`` (to make odd files)."""
    tags = edit(list(_dng_tags(meta or make_meta())))
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, byteorder="<") as tw:
        tw.write(make_cfa() if data is None else data, photometric=photometric, subfiletype=0,
                 compression=None, software=False, metadata=None, extratags=tags)
    path.write_bytes(buf.getvalue())
    return path


def replace(*new: tuple) -> Callable[[Tags], Tags]:
    codes = {t[0]: t for t in new}
    return lambda tags: [codes.pop(t[0], t) for t in tags] + list(codes.values())


def drop(*codes: int) -> Callable[[Tags], Tags]:
    return lambda tags: [t for t in tags if t[0] not in codes]


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_our_dngs_round_trip_through_read_raw(tmp_path, pattern):
    path, cfa, meta = tmp_path / "f.dng", make_cfa(), make_meta(cfa_pattern=pattern)
    write_dng(path, cfa, meta)
    assert is_reloblur_dng(path)
    got, got_meta = read_raw(path)
    np.testing.assert_array_equal(got, cfa)
    assert got.dtype == np.uint16 and got_meta == meta == read_dng(path)[1]


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_the_rawpy_branch_reads_our_dngs_with_the_same_cfa_and_levels(tmp_path, pattern):
    path, cfa = tmp_path / "f.dng", make_cfa(white=1023)
    meta = make_meta(cfa_pattern=pattern, bits=10, black_level=32)
    write_dng(path, cfa, meta)
    got, m = read_raw(path, backend="rawpy")
    np.testing.assert_array_equal(got, cfa)
    assert (m.cfa_pattern, m.black_level, m.white_level, m.bits) == (pattern, 32, 1023, 10)
    assert (m.camera_make, m.camera_model, m.camera_serial) == ("Acme", "X1", "SN-42")
    assert m.exposure_time_s == pytest.approx(0.004, rel=1e-9)
    assert m.as_shot_neutral == pytest.approx((0.5, 1.0, 0.75), rel=1e-6)
    assert np.allclose(m.color_matrix_1, meta.color_matrix_1, atol=1e-9)
    assert m.iso == 200 and m.capture_time == "2024:05:06 07:08:09" and m.gain_db == 0.0


def test_a_foreign_dng_goes_through_rawpy_in_auto_mode(tmp_path):
    path = write_crafted(tmp_path / "other.dng", drop(50740, 50735))  # no marker, no serial
    assert not is_reloblur_dng(path)
    cfa, m = read_raw(path)
    np.testing.assert_array_equal(cfa, make_cfa())
    assert m.white_level == 4095 and m.bits == 12 and m.camera_serial == ""


def test_unequal_black_levels_are_averaged(tmp_path):
    path = write_crafted(tmp_path / "b.dng", replace(
        (50713, 3, 2, (2, 2), True), (50714, 4, 4, (60, 62, 64, 70), True)))
    _, m = read_raw(path)
    assert m.black_level == 64  # mean of 60, 62, 64, 70 = 64


def test_missing_exposure_needs_a_caller_default(tmp_path):
    path = write_crafted(tmp_path / "e.dng", drop(50740, 33434))
    with pytest.raises(MissingExposureError, match="e.dng"):
        read_raw(path)
    assert read_raw(path, default_exposure_s=0.02)[1].exposure_time_s == 0.02


@pytest.mark.parametrize("content", ["png", "random", "empty", "truncated"])
def test_files_that_are_not_raw_raise_raw_read_error(tmp_path, content):
    path = tmp_path / f"bad.{content}"
    if content == "png":
        write_png(path, np.zeros((8, 8, 3), np.float32))
    elif content == "random":
        path.write_bytes(np.random.default_rng(1).bytes(4000))
    elif content == "empty":
        path.write_bytes(b"")
    else:
        write_dng(tmp_path / "ok.dng", make_cfa(), make_meta())
        path.write_bytes((tmp_path / "ok.dng").read_bytes()[:3000])
    with pytest.raises(RawReadError, match=path.name) as info:
        read_raw(path)
    assert isinstance(info.value, CorruptFileError) and "LibRaw supports" in str(info.value)


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_raw(tmp_path / "nope.dng")


def test_a_white_level_above_16_bits_is_refused(tmp_path):
    path = write_crafted(tmp_path / "w.dng", replace((50717, 4, 1, 2**17 - 1, True)))
    for backend in ("auto", "rawpy"):
        with pytest.raises(UnsupportedBitDepthError, match="17 bits"):
            read_raw(path, backend=backend)


@pytest.mark.parametrize("case", ["3x3", "four_colours", "linear"])
def test_layouts_other_than_a_2x2_bayer_are_refused(tmp_path, case):
    path = tmp_path / f"{case}.dng"
    if case == "3x3":
        write_crafted(path, replace((33421, 3, 2, (3, 3), True),
                                    (33422, 1, 9, bytes([0, 1, 2, 1, 2, 0, 2, 0, 1]), True)))
    elif case == "four_colours":
        write_crafted(path, replace((50710, 1, 4, bytes([3, 4, 5, 1]), True),
                                    (33422, 1, 4, bytes([0, 1, 2, 3]), True)))
    else:
        rgb = np.random.default_rng(0).integers(0, 4096, (H, W, 3)).astype(np.uint16)
        write_crafted(path, drop(33421, 33422, 50710, 50711), data=rgb, photometric=34892)
    with pytest.raises(UnsupportedRawError, match=path.name) as info:
        read_raw(path, backend="rawpy")
    assert "2×2 Bayer" in str(info.value)
    assert not isinstance(info.value, UnsupportedBitDepthError)


def test_an_unknown_backend_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        read_raw(tmp_path / "x.dng", backend="magic")  # type: ignore[arg-type]
