"""The ISP: Menon (2007) equal to colour-demosaicing's, white balance, camera → sRGB, the chain
against the twin's linear sRGB truth (512×342 sensor)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from core.dng import RawMetadata, UnknownCfaPatternError
from hardware_sim.sensor import XYZ_TO_SRGB as TWIN_XYZ_TO_SRGB
from hardware_sim.spec import load_preset, parse_scene
from hardware_sim.twin import RigTwin
from postprocess.calibration import FrameSizeMismatchError, correct_colour, fit_colour_calibration
from postprocess.isp import (
    IspError,
    WhiteboardSaturatedError,
    WhiteboardTooDarkError,
    camera_to_srgb_matrix,
    demosaic_menon,
    normalise_raw,
    run_isp,
    srgb_encode,
    to_uint8,
    to_uint16,
    white_balance_gains,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns that matplotlib is missing
    from colour_demosaicing import demosaicing_CFA_Bayer_Menon2007

W, H = 512, 342
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def small_spec(**changes):
    spec = load_preset("car")
    data = spec.model_dump(mode="json")
    data["exposure"] = {"short_s": spec.short_exposure_s, "nd_transmittance": spec.exposure.nd_transmittance}
    data["optics"]["pixel_pitch_um"] *= spec.sensor.width / W
    data["sensor"].update(width=W, height=H)
    for key, value in changes.items():
        data[key].update(value)
    return parse_scene(data)


@pytest.fixture(scope="module")
def twin():
    return RigTwin(small_spec(), seed=3)


@pytest.fixture(scope="module")
def shot(twin):
    return twin.pair(0, 1)


def reference(cfa, pattern, refining_step=True):
    return demosaicing_CFA_Bayer_Menon2007(cfa, pattern, refining_step)


# --------------------------------------------------------------------------- Menon


@pytest.mark.parametrize("pattern", PATTERNS)
def test_menon_equals_colour_demosaicing_on_random_data(pattern):
    rng = np.random.default_rng(sum(map(ord, pattern)))
    for shape in [(2, 2), (3, 5), (8, 8), (37, 50), (130, 97)]:
        cfa = rng.random(shape)
        for refining in (True, False):
            ours = demosaic_menon(cfa, pattern, refining)
            assert ours.shape == shape + (3,) and ours.dtype == np.float64
            diff = np.abs(ours - reference(cfa, pattern, refining)).max()
            assert diff <= 1e-6, (shape, refining, diff)  # measured: 0 (bit-identical)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_menon_equals_colour_demosaicing_on_twin_frames(twin, shot, pattern):
    """The twin's frames, re-read under each pattern (the algorithm does not care what the
    mosaic holds), plus float32 input, float32 output and the default refining step."""
    s = twin.spec.sensor
    for role in ("B", "S"):
        cfa = normalise_raw(shot.frames[role].cfa, s.black_level, twin.sensor.white_level)
        ours = demosaic_menon(cfa, pattern)
        assert np.abs(ours - reference(cfa, pattern)).max() <= 1e-6
    ours32 = demosaic_menon(cfa, pattern, dtype=np.float32)
    assert ours32.dtype == np.float32
    assert np.abs(ours32 - reference(cfa, pattern)).max() <= 1e-6


def test_menon_on_extreme_values_and_structures():
    rng = np.random.default_rng(7)
    cases = [
        np.zeros((16, 16)),
        np.ones((16, 16)),
        np.tile([[1.0, 0.0], [0.0, 1.0]], (10, 12)),  # ties everywhere in the decision
        rng.integers(0, 2, (40, 40)).astype(np.float64),
        rng.normal(0, 100, (33, 34)),  # negative and large values
    ]
    for cfa in cases:
        for pattern in PATTERNS:
            assert np.abs(demosaic_menon(cfa, pattern) - reference(cfa, pattern)).max() <= 1e-6


def test_menon_bad_input():
    with pytest.raises(UnknownCfaPatternError):
        demosaic_menon(np.zeros((8, 8)), "RGBG")
    with pytest.raises(FrameSizeMismatchError):
        demosaic_menon(np.zeros((8, 8, 3)), "RGGB")
    with pytest.raises(FrameSizeMismatchError):
        demosaic_menon(np.zeros((1, 8)), "RGGB")


# --------------------------------------------------------------------------- levels, curves


def test_normalise_raw():
    raw = np.array([[0, 64, 2064, 4095]], np.uint16)
    out = normalise_raw(raw, 64, 4064)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0]], atol=1e-6)
    assert normalise_raw(raw, 64, 4095, clip=False)[0, 0] < 0
    with pytest.raises(IspError):
        normalise_raw(raw, 100, 100)
    assert normalise_raw(raw, 64, 4064, clip=False)[0, 3] > 1


def test_srgb_encode_and_integer_outputs():
    x = np.array([0.0, 0.0031308, 0.18, 1.0, 2.0, -1.0], np.float32)
    y = srgb_encode(x)
    np.testing.assert_allclose(y, [0.0, 0.040450, 0.461356, 1.0, 1.0, 0.0], atol=2e-5)
    np.testing.assert_array_equal(to_uint8(y), [0, 10, 118, 255, 255, 0])
    np.testing.assert_array_equal(to_uint16(y), [0, 2651, 30235, 65535, 65535, 0])


# --------------------------------------------------------------------------- colour


def test_camera_to_srgb_matrix_inverts_the_twins_response(twin):
    m = twin.sensor.camera_matrix  # linear sRGB → camera RGB
    ccm = camera_to_srgb_matrix(m @ TWIN_XYZ_TO_SRGB)  # what the twin writes as ColorMatrix1
    np.testing.assert_allclose(ccm.sum(axis=1), 1.0, atol=1e-6)  # WB'd white → white
    # After white balance (divide camera channel c by (M·1)_c), the CCM undoes M exactly.
    wb = np.diag(1.0 / (m @ np.ones(3)))
    np.testing.assert_allclose(ccm @ wb @ m, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(camera_to_srgb_matrix(3.7 * m @ TWIN_XYZ_TO_SRGB), ccm, atol=1e-9)
    with pytest.raises(IspError):
        camera_to_srgb_matrix(np.zeros((3, 3)))


def _whiteboard_rgb(twin, role="S", scale=1.0):
    s = twin.spec.sensor
    pattern, black, white = s.cfa_pattern, s.black_level, twin.sensor.white_level
    cal = fit_colour_calibration(twin.lightbox(role).cfa, pattern, black, white)
    raw = twin.whiteboard().frames[role].cfa.astype(np.float64)
    raw = np.clip(np.rint((raw - black) * scale + black), 0, white).astype(np.uint16)
    cfa = correct_colour(normalise_raw(raw, black, white), cal, pattern)
    return demosaic_menon(cfa, pattern), cal


def test_white_balance_gains_make_the_board_neutral(twin):
    rgb, _ = _whiteboard_rgb(twin)
    gains = white_balance_gains(rgb)
    assert gains[1] == 1.0
    # The board is white (linear sRGB 1,1,1): the gains are green/c of the camera's white
    # response times its brightness.
    response = twin.sensor.camera_matrix @ np.ones(3) * twin.colour["S"].brightness
    np.testing.assert_allclose(gains, response[1] / response, rtol=0.003)
    balanced = (rgb * gains).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(balanced / balanced[1], 1.0, atol=1e-3)


def test_saturated_or_dark_whiteboard_is_refused(twin):
    rgb, _ = _whiteboard_rgb(twin, scale=3.0)
    with pytest.raises(WhiteboardSaturatedError, match=r"\d+\.\d+% of the whiteboard pixels are clipped"):
        white_balance_gains(rgb)
    rgb, _ = _whiteboard_rgb(twin, scale=0.01)
    with pytest.raises(WhiteboardTooDarkError, match=r"mean R level is 0\.\d+%"):
        white_balance_gains(rgb)
    with pytest.raises(FrameSizeMismatchError):
        white_balance_gains(rgb[..., 0])


def test_isp_chain_matches_the_linear_srgb_truth(twin, shot):
    """Colour correction → Menon → WB from the whiteboard → CCM from ColorMatrix1, compared
    with shot.sharp_linear up to one global exposure scale, on 32×32 block means (which
    average out most shot noise; blocks on strong edges, where demosaicing errs most, and
    the CCM's noise gain spread the rest, so the test bounds the median block, the whole
    frame and the 90th percentile)."""
    s = twin.spec.sensor
    rgb_board, cal = _whiteboard_rgb(twin)
    gains = white_balance_gains(rgb_board)
    cm1 = twin.sensor.camera_matrix @ TWIN_XYZ_TO_SRGB
    ccm = camera_to_srgb_matrix(cm1)
    meta = RawMetadata(
        cfa_pattern=s.cfa_pattern, bits=s.bits, black_level=s.black_level,
        white_level=twin.sensor.white_level, as_shot_neutral=twin.sensor.as_shot_neutral,
        camera_make="twin", camera_model="S", camera_serial="", exposure_time_s=0.01,
        color_matrix_1=cm1,
    )
    linear = run_isp(shot.frames["S"].cfa, meta, cal, gains, ccm)
    assert linear.shape == (H, W, 3) and linear.dtype == np.float32
    b = 32
    crop = (slice(b, H - H % b - b), slice(b, W - W % b - b))

    def blocks(img):
        x = img[crop].astype(np.float64)
        return x.reshape(x.shape[0] // b, b, x.shape[1] // b, b, 3).mean(axis=(1, 3)).reshape(-1, 3)

    ours, truth = blocks(linear), blocks(shot.sharp_linear)
    keep = truth.min(axis=1) > 0.02  # skip near-black blocks, where noise dominates the ratio
    ratio = ours[keep] / truth[keep]
    scale = np.median(ratio[:, 1])  # the one global exposure scale
    rel = ratio / scale - 1.0
    whole = ours.sum(axis=0) / truth.sum(axis=0) / scale - 1.0
    # Measured (seed 3): medians ≤ 0.3 %, whole frame ≤ 0.6 %, 90th percentile ≤ 1.9 % (B).
    assert np.abs(np.median(rel, axis=0)).max() <= 0.01, np.median(rel, axis=0)
    assert np.abs(whole).max() <= 0.01, whole
    assert np.percentile(np.abs(rel), 90, axis=0).max() <= 0.025, np.percentile(np.abs(rel), 90, axis=0)


def test_run_isp_refuses_a_calibration_of_another_size(twin, shot):
    s = twin.spec.sensor
    cal = fit_colour_calibration(twin.lightbox("S").cfa[:200, :300], s.cfa_pattern, s.black_level,
                                 twin.sensor.white_level)
    meta = RawMetadata(cfa_pattern=s.cfa_pattern, bits=s.bits, black_level=s.black_level,
                       as_shot_neutral=(0.5, 1.0, 0.7), camera_make="twin", camera_model="S",
                       camera_serial="", exposure_time_s=0.01)
    with pytest.raises(FrameSizeMismatchError):
        run_isp(shot.frames["S"].cfa, meta, cal, np.ones(3), np.eye(3))
    with pytest.raises(IspError):
        run_isp(shot.frames["S"].cfa, meta, None, np.ones(2), np.eye(3))
