"""Tests of postprocess.warp: CMTF design, the numba gather, accuracy and input checks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from postprocess.warp import (
    METHODS,
    WARP_METHODS,
    WarpInputError,
    cmtf_gather_reference,
    design_cmtf,
    mtf_at,
    warp,
)
from postprocess.warp.cmtf import _cmtf_gather3_numba, _cmtf_gather_numba, _sharpen

PHASES = np.arange(33) / 32


def _variation(method: str) -> float:
    """(max - min) / max of the response at 0.4 cycles/px over the 33 phases 0, 1/32 .. 1."""
    values = np.array([mtf_at(method, 0.4, p) for p in PHASES])
    return float((values.max() - values.min()) / values.max())


def _psnr(a: np.ndarray, b: np.ndarray, margin: int = 16) -> float:
    err = np.mean((a[margin:-margin, margin:-margin].astype(np.float64)
                   - b[margin:-margin, margin:-margin]) ** 2)
    return float(10 * np.log10(1.0 / err))


def _photo(height: int = 360, width: int = 480) -> np.ndarray:
    """A crop of skimage's Hubble deep field, (H, W, 3) float32 in [0, 1]."""
    return data.hubble_deep_field()[200:200 + height, 300:300 + width].astype(np.float32) / 255


def test_design_is_deterministic_normalised_and_cached():
    k = design_cmtf()
    assert k is design_cmtf()
    assert k.table.shape == (33, 6) and k.table.dtype == np.float32
    np.testing.assert_allclose(k.table.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(k.sharpen.sum(), 1.0, atol=1e-6)
    np.testing.assert_array_equal(k.sharpen, k.sharpen[::-1])
    # mirror symmetry: phase 1 - phi is phase phi reflected about x0 + 1/2
    np.testing.assert_allclose(k.table[::-1], k.table[:, ::-1], atol=1e-5)
    # the centroid of each kernel is at its phase (no low-frequency position bias)
    np.testing.assert_allclose(k.table @ k.offsets, np.arange(33) / 32, atol=1e-5)
    # the designed MTFs of all phases agree (spread < 3 % on [0, 0.4]), phase errors are small
    band = (k.freqs <= 0.4) & (k.freqs > 0)
    mtfs = np.array([np.abs(k.response(p)[band]) for p in range(33)])
    assert np.max((mtfs.max(axis=0) - mtfs.min(axis=0)) / mtfs.max(axis=0)) < 0.03
    for p in range(33):
        shift_error_px = np.angle(k.response(p)[band]) / (2 * np.pi * k.freqs[band])
        assert np.max(np.abs(shift_error_px)) < 0.03
    # sharpening times target: ~1 in the pass band
    lifted = k.target * k.sharpen_response
    assert np.max(np.abs(lifted[k.freqs <= 0.3] - 1)) < 0.01
    assert np.max(np.abs(lifted[k.freqs <= 0.4] - 1)) < 0.07


def test_cmtf_response_is_constant_across_phases():
    assert _variation("cmtf") <= 0.02
    # and the sharpening lifts it back to about 1 at 0.4 cycles/px
    assert 0.95 < mtf_at("cmtf", 0.4, 0.5) < 1.06


def test_lanczos4_response_varies_like_the_anchor():
    assert mtf_at("lanczos4", 0.4, 0.0) == pytest.approx(1.0, abs=1e-3)
    assert mtf_at("lanczos4", 0.4, 0.5) == pytest.approx(0.79, abs=0.01)
    assert _variation("lanczos4") == pytest.approx(0.21, abs=0.01)


def test_mtf_is_the_same_along_y():
    for p in (0.0, 0.25, 0.5):
        assert mtf_at("cmtf", 0.4, p, axis=1) == pytest.approx(mtf_at("cmtf", 0.4, p), abs=1e-4)


def test_integer_shift_is_an_exact_translation_of_the_zero_shift_output():
    img = _photo(120, 160)
    zero = warp(img, np.zeros((120, 160, 2), np.float32))
    flow = np.zeros((120, 160, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -2.0
    shifted = warp(img, flow)
    # output(x, y) = zero(x + 3, y - 2) away from the borders
    np.testing.assert_allclose(shifted[20:-20, 20:-20], zero[18:-22, 23:-17], atol=1e-6)


def test_zero_shift_is_nearly_the_identity():
    """The sharpening is always applied: phase 0 is S * h_0, ~1 up to 0.4 cycles/px."""
    img = _photo()
    out = warp(img, np.zeros((*img.shape[:2], 2), np.float32))
    assert _psnr(out, img) > 45.0
    smooth = np.asarray(np.outer(np.sin(np.linspace(0, 6, 90)), np.cos(np.linspace(0, 4, 120))),
                        np.float32)
    out = warp(smooth, np.zeros((90, 120, 2), np.float32))
    np.testing.assert_allclose(out[10:-10, 10:-10], smooth[10:-10, 10:-10], atol=2e-3)


def test_round_trip_beats_lanczos4_on_a_photo():
    img = _photo()
    flow = np.full((*img.shape[:2], 2), 15 / 32, np.float32)
    results = {}
    for method in ("cmtf", "lanczos4"):
        back = warp(warp(img, flow, method), -flow, method)
        results[method] = _psnr(back, img)
    assert results["cmtf"] >= results["lanczos4"]


def test_constant_subpixel_translation_of_a_smooth_image():
    h, w = 96, 128
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)

    def pattern(x, y):
        return (0.5 + 0.2 * np.sin(2 * np.pi * x / 23.0 + 0.3) * np.cos(2 * np.pi * y / 17.0)
                + 0.1 * np.cos(2 * np.pi * (x + y) / 11.0))

    dx, dy = 0.37, -0.81
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    out = warp(pattern(xs, ys).astype(np.float32), flow)
    expected = pattern(xs + dx, ys + dy)
    # nearest of 32 phases: at most 1/64 px of position error on a gradient <= ~0.1 /px
    np.testing.assert_allclose(out[12:-12, 12:-12], expected[12:-12, 12:-12], atol=4e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_fast_gather_equals_numpy_reference(channels):
    rng = np.random.default_rng(3)
    h, w = 40, 56
    img = rng.random((h, w, channels), dtype=np.float32)
    flow = rng.uniform(-4, 4, (h, w, 2)).astype(np.float32)
    flow[0, 0] = (-30.0, 50.0)  # far outside: replicated border
    flow[0, 1] = (1e20, -1e20)  # absurdly far: clipped, still the replicated corner
    k = design_cmtf()
    expected = cmtf_gather_reference(img, flow, k)
    out = warp(img[..., 0] if channels == 1 else img, flow)
    got = _sharpen(np.ascontiguousarray(expected), k).reshape(h, w, channels)
    np.testing.assert_allclose(out.reshape(h, w, channels), got, atol=1e-5)


def test_numba_gather_equals_numpy_reference_before_sharpening():
    rng = np.random.default_rng(4)
    h, w = 33, 47
    img = rng.random((h, w, 3), dtype=np.float32)
    flow = rng.uniform(-6, 6, (h, w, 2)).astype(np.float32)
    k = design_cmtf()
    for c in (3, 2):
        out = np.empty((h, w, c), np.float32)
        gather = _cmtf_gather3_numba if c == 3 else _cmtf_gather_numba
        gather(np.ascontiguousarray(img[..., :c]), flow, k.table, k.phases, int(k.offsets[0]), out)
        expected = cmtf_gather_reference(np.ascontiguousarray(img[..., :c]), flow, k)
        np.testing.assert_allclose(out, expected, atol=2e-6)


@pytest.mark.parametrize("method", ["cmtf", "lanczos4", "spline", "linear"])
def test_all_methods_keep_shape_and_dtype(method):
    img = _photo(30, 40)
    flow = np.full((30, 40, 2), 0.25, np.float32)
    out = warp(img, flow, method)
    assert out.shape == img.shape and out.dtype == np.float32
    assert warp(img[..., 0], flow, method).shape == (30, 40)
    assert _psnr(out, img, margin=4) > 20


def test_bad_input_raises_named_errors():
    img = np.zeros((10, 12, 3), np.float32)
    with pytest.raises(WarpInputError):
        warp(img, np.zeros((10, 11, 2), np.float32))
    with pytest.raises(WarpInputError):
        warp(img, np.zeros((10, 12, 3), np.float32))
    bad = np.zeros((10, 12, 2), np.float32)
    bad[3, 4, 0] = np.nan
    with pytest.raises(WarpInputError):
        warp(img, bad)
    nan_img = img.copy()
    nan_img[0, 0, 0] = np.nan
    with pytest.raises(WarpInputError):
        warp(nan_img, np.zeros((10, 12, 2), np.float32))
    with pytest.raises(ValueError, match="unknown method"):
        warp(img, np.zeros((10, 12, 2), np.float32), "cubic")


def test_the_method_names_are_the_registry_keys():
    assert tuple(WARP_METHODS) == METHODS == ("cmtf", "lanczos4", "spline", "linear")
    img = np.zeros((6, 7, 3), np.float32)
    with pytest.raises(ValueError, match="choose one of \\('cmtf', 'lanczos4', 'spline', 'linear'\\)"):
        warp(img, np.zeros((6, 7, 2), np.float32), "cubic")
