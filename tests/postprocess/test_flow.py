"""Tests of postprocess.flow: numba kernels against their numpy twins, recovery of a known
translation, accuracy against the digital twin's ground truth, the OpenCV alternatives, the
flow convention, and input checking."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import data

from hardware_sim.spec import load_preset, parse_scene, with_sensor_size
from hardware_sim.twin import RigTwin
from postprocess import flow as F
from postprocess.flow import features, planar, reference, sor
from postprocess.flow import system as kernels

BORDER = 10


def _interior(shape, border=BORDER):
    valid = np.zeros(shape[:2], bool)
    valid[border:-border, border:-border] = True
    return valid


def _shift(image, dx, dy):
    """moving with moving(x + dx, y + dy) = image(x, y) (cubic spline, exact coordinates)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack(
        [ndi.map_coordinates(image[:, :, c].astype(np.float64), [yy - dy, xx - dx], order=3,
                             mode="reflect") for c in range(image.shape[2])],
        axis=2,
    ).astype(np.float32)


@pytest.fixture(scope="module")
def photo():
    img = data.astronaut().astype(np.float32) / 255.0
    return cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def twin_pair():
    """Noise-free radiances of S and B (gamma 1/2.2, [0, 1]) at 512x342 and the true flow."""
    spec = with_sensor_size(load_preset("car"), 512, 342)
    d = spec.model_dump(mode="json")
    d["misalignment"] = {"rotation_deg": 0.3, "translation_px": [3.2, -1.8], "scale": 1.002,
                         "nonrigid_px": 0.8}
    twin = RigTwin(parse_scene(d), 0)
    truth = twin.flow_b_from_s()
    mag = np.hypot(truth[..., 0], truth[..., 1])
    assert mag.min() >= 1.0 and mag.max() <= 6.0

    def encode(role):
        radiance = twin._camera_radiance(role, twin.scene.static)
        return np.clip(radiance, 0.0, 1.0) ** (1.0 / 2.2)

    return encode("S").astype(np.float32), encode("B").astype(np.float32), truth


@pytest.fixture(scope="module")
def twin_flows(twin_pair):
    ref, mov, _ = twin_pair
    rng = np.random.default_rng(7)
    ref_n = (ref + rng.normal(0, 0.01, ref.shape)).astype(np.float32)
    mov_n = (mov + rng.normal(0, 0.01, mov.shape)).astype(np.float32)
    return {
        "pyflow": F.pyflow_flow(ref, mov),
        "pyflow_noisy": F.pyflow_flow(ref_n, mov_n),
        "deepflow": F.deepflow_flow(ref, mov),
        "deepflow_noisy": F.deepflow_flow(ref_n, mov_n),
        "dis": F.dis_flow(ref, mov),
        "dis_noisy": F.dis_flow(ref_n, mov_n),
    }


# ---- numba kernels == numpy reference ----------------------------------------------------


def _random_system(rng, h, w):
    od1 = (1.8 / (rng.random((h, w)) + 0.5)).astype(np.float32)
    od2 = (1.8 / (rng.random((h, w)) + 0.5)).astype(np.float32)
    a12 = (rng.random((h, w)) * 0.2 - 0.1).astype(np.float32)
    b1 = rng.normal(size=(h, w)).astype(np.float32)
    b2 = rng.normal(size=(h, w)).astype(np.float32)
    phi = (rng.random((h, w)) * 5).astype(np.float32)
    return od1, od2, a12, b1, b2, phi


@pytest.mark.parametrize("shape", [(2, 2), (5, 3), (17, 23), (40, 31)])
def test_sor_kernels_match_numpy(shape):
    rng = np.random.default_rng(1)
    h, w = shape
    system = _random_system(rng, h, w)
    results = []
    for fn, extra in [
        (reference._sor_red_black_np, ()),
        (sor._sor_nb, (1,)),
        (sor._sor_nb, (4,)),
    ]:
        du = np.zeros((h, w), np.float32)
        dv = np.zeros((h, w), np.float32)
        fn(*system, 0.012, 1.8, 9, du, dv, *extra)
        results.append((du, dv))
    for du, dv in results[1:]:
        np.testing.assert_allclose(du, results[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dv, results[0][1], rtol=1e-5, atol=1e-6)
    assert np.abs(results[0][0]).max() > 0.01


@pytest.mark.parametrize("n_iter", [1, 2, 8, 9])
@pytest.mark.parametrize("n_bands", [1, 2, 3, 4])
def test_sor_two_sweep_bands_match_numpy(n_iter, n_bands):
    # bands of >= 8 rows take the two-sweeps-per-pass pipeline (odd counts finish with one)
    rng = np.random.default_rng(5)
    h, w = 83, 47
    system = _random_system(rng, h, w)
    du0 = np.zeros((h, w), np.float32)
    dv0 = np.zeros((h, w), np.float32)
    reference._sor_red_black_np(*system, 0.012, 1.8, n_iter, du0, dv0)
    du = np.zeros((h, w), np.float32)
    dv = np.zeros((h, w), np.float32)
    sor._sor_nb(*system, 0.012, 1.8, n_iter, du, dv, n_bands)
    np.testing.assert_allclose(du, du0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dv, dv0, rtol=1e-5, atol=1e-6)


def test_fused_split_system_matches_packing():
    rng = np.random.default_rng(6)
    h, w, c = 21, 27, 5
    mix = rng.random((h, w, c)).astype(np.float32)
    it = (rng.random((h, w, c)) * 0.1).astype(np.float32)
    u, v, du, dv = (rng.normal(0, 0.5, (h, w)).astype(np.float32) for _ in range(4))
    phi = (rng.random((h, w)) * 5).astype(np.float32)
    od1 = np.empty((h, w), np.float32)
    od2 = np.empty((h, w), np.float32)
    a12, b1, b2 = kernels._linear_system_nb(mix, it, u, v, du, dv, phi, 0.012, 1e-6, 1.8, od1, od2)
    w2 = (w + 1) // 2
    red = np.zeros((5, h, w2), np.float32)
    black = np.zeros((5, h, w2), np.float32)
    pr = np.zeros((h + 2, w2 + 2), np.float32)
    pb = np.zeros((h + 2, w2 + 2), np.float32)
    kernels._linear_system_split_nb(mix, it, u, v, du, dv, phi, 0.012, 1e-6, 1.8, red, black, pr, pb)
    for colour, (sys_, p) in enumerate([(red, pr), (black, pb)]):
        ref_sys, ref_p = sor._pack_system_nb(od1, od2, a12, b1, b2, phi, colour)
        np.testing.assert_array_equal(sys_, ref_sys)
        np.testing.assert_array_equal(p, ref_p)


def test_pointwise_kernels_match_numpy():
    rng = np.random.default_rng(2)
    h, w, c = 19, 26, 5
    f1 = rng.random((h, w, c)).astype(np.float32)
    f2 = rng.random((h, w, c)).astype(np.float32)
    u = rng.normal(0, 2, (h, w)).astype(np.float32)
    v = rng.normal(0, 2, (h, w)).astype(np.float32)
    u[0, 0] = -5.0  # outside the image: takes f1's value
    np.testing.assert_allclose(
        kernels._warp_bilinear_nb(f1, f2, u, v), reference._warp_bilinear_np(f1, f2, u, v), atol=1e-6)
    np.testing.assert_allclose(
        kernels._smoothness_weight_nb(u, v, 1e-6), reference._smoothness_weight_np(u, v, 1e-6), rtol=1e-6)
    mix, it = kernels._mix_nb(f1, f2)
    np.testing.assert_array_equal(mix, np.float32(0.4) * f1 + np.float32(0.6) * f2)
    np.testing.assert_array_equal(it, f2 - f1)
    phi = reference._smoothness_weight_np(u, v, 1e-6)
    du = rng.normal(0, 0.1, (h, w)).astype(np.float32)
    dv = rng.normal(0, 0.1, (h, w)).astype(np.float32)
    outs = []
    for fn in (kernels._linear_system_nb, reference._linear_system_np):
        od1 = np.empty((h, w), np.float32)
        od2 = np.empty((h, w), np.float32)
        mix = 0.4 * f1 + 0.6 * f2
        outs.append((*fn(mix, f2 - f1, u, v, du, dv, phi, 0.012, 1e-6, 1.8, od1, od2), od1, od2))
    for a, b in zip(*outs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_whole_method_numba_equals_numpy(photo):
    ref = photo[:48, :64]
    mov = _shift(ref, 1.3, -0.6)
    fast = F.pyflow_flow(ref, mov, n_outer=3, n_sor=10)
    slow = F.pyflow_flow(ref, mov, n_outer=3, n_sor=10, _backend="numpy")
    np.testing.assert_allclose(fast, slow, atol=1e-3)


def _bits_equal(a, b):
    return a.shape == b.shape and np.array_equal(
        np.asarray(a, np.float32).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))


@pytest.mark.parametrize("shape", [(21, 27, 5), (30, 40, 3), (3, 2, 5), (1, 7, 5), (2, 1, 3),
                                   (9, 257, 5), (13, 600, 3), (7, 1100, 5)])
@pytest.mark.parametrize("use_d", [True, False])
def test_planar_system_is_bit_identical(shape, use_d):
    # the chunked, vectorised system build of the fast path == _linear_system_split_nb, bit
    # for bit (chunk boundaries, edge rows and columns, du = dv = 0 shortcut)
    rng = np.random.default_rng(8)
    h, w, c = shape
    mix = rng.random((h, w, c)).astype(np.float32)
    it = (rng.random((h, w, c)) * 0.1 - 0.05).astype(np.float32)
    u, v, du, dv = (rng.normal(0, 0.5, (h, w)).astype(np.float32) for _ in range(4))
    if not use_d:
        du[...] = 0.0
        dv[...] = 0.0
    phi = (rng.random((h, w)) * 5).astype(np.float32)
    w2 = (w + 1) // 2
    outs = []
    for n_bands in (0, 1, 2, 3):
        out = [np.zeros((5, h, w2), np.float32), np.zeros((5, h, w2), np.float32),
               np.zeros((h + 2, w2 + 2), np.float32), np.zeros((h + 2, w2 + 2), np.float32)]
        if n_bands == 0:
            kernels._linear_system_split_nb(mix, it, u, v, du, dv, phi, 0.012, 1e-6, 1.8, *out)
        else:
            # use_d False: du, dv must not be read (the fast path leaves them unset)
            d_in = (du, dv) if use_d else (np.full_like(du, np.nan), np.full_like(dv, np.nan))
            planar._system_planar_nb(
                np.ascontiguousarray(mix.transpose(2, 0, 1)),
                np.ascontiguousarray(it.transpose(2, 0, 1)), u, v, *d_in, phi, 0.012, 1e-6,
                1.8, use_d, *out, min(n_bands, h))
        outs.append(out)
    for out in outs[1:]:
        assert all(_bits_equal(a, b) for a, b in zip(out, outs[0], strict=True))


@pytest.mark.parametrize(("h", "w", "n_bands", "n_half", "n_iter"), [
    (83, 47, 2, 8, 9), (83, 47, 3, 4, 9), (83, 47, 3, 8, 30), (40, 31, 1, 8, 7),
    (200, 65, 4, 12, 33), (61, 20, 2, 12, 10), (83, 47, 2, 2, 5)])
def test_blocked_sor_is_bit_identical(h, w, n_bands, n_half, n_iter):
    # several sweeps per pass (skewed wavefront per band, then the band boundaries) ==
    # plain sweeps, bit for bit
    rng = np.random.default_rng(9)
    w2 = (w + 1) // 2
    red = (rng.random((5, h, w2)) * 0.5 - 0.1).astype(np.float32)
    black = (rng.random((5, h, w2)) * 0.5 - 0.1).astype(np.float32)
    pr = np.zeros((h + 2, w2 + 2), np.float32)
    pb = np.zeros((h + 2, w2 + 2), np.float32)
    pr[1:-1, 1:-1] = rng.random((h, w2))
    pb[1:-1, 1:-1] = rng.random((h, w2))
    plain = np.zeros((4, h + 2, w2 + 2), np.float32)
    blocked = np.zeros((4, h + 2, w2 + 2), np.float32)
    sor._sor_split_nb(red, black, pr, pb, 0.012, 1.8, n_iter, *plain, 1)
    sor._sor_blocked_nb(red, black, pr, pb, 0.012, 1.8, n_iter, *blocked, n_bands, n_half)
    assert np.abs(plain).max() > 0.01
    assert _bits_equal(blocked, plain)


def test_features_match_numpy():
    rng = np.random.default_rng(10)
    image = (rng.random((23, 31, 3)) * 1.2 - 0.1).astype(np.float32)
    grey = (0.299 * image[:, :, 0] + 0.587 * image[:, :, 1] + 0.114 * image[:, :, 2])
    assert grey.dtype == np.float32
    feats = features._features(image)
    assert _bits_equal(feats[:, :, 0], grey)
    assert _bits_equal(feats[:, :, 3], image[:, :, 1] - image[:, :, 0])
    assert _bits_equal(feats[:, :, 4], image[:, :, 1] - image[:, :, 2])
    kx = features._DERIV_TAPS.astype(np.float32)
    gx = cv2.sepFilter2D(grey, -1, kx, np.ones(1, np.float32), borderType=cv2.BORDER_REPLICATE)
    assert _bits_equal(feats[:, :, 1], gx)
    assert features._features(image[:, :, 1].copy()).shape == (23, 31, 3)


@pytest.mark.parametrize("n_inner", [1, 2])
def test_fast_path_equals_interleaved_path(photo, n_inner):
    # the planar fast path == the previous (interleaved) numba path, bit for bit; 150x200
    # takes the parallel bands (and the blocked SOR) when numba has more than one thread
    ref = photo[:150, :200]
    mov = _shift(photo, 1.3, -0.6)[:150, :200]
    kw = dict(n_outer=2, n_inner=n_inner, n_sor=13)
    fast = F.pyflow_flow(ref, mov, **kw)
    old = F.pyflow_flow(ref, mov, **kw, _backend="numba-interleaved")
    assert _bits_equal(fast, old)


def _lexicographic_sor(od1, od2, a12, b1, b2, phi, alpha, omega, n_iter, du, dv):
    """The C++'s order (row by row, left to right), plain Python, float64."""
    h, w = du.shape
    for _ in range(n_iter):
        for i in range(h):
            for j in range(w):
                s1 = s2 = 0.0
                if j > 0:
                    s1 += phi[i, j - 1] * du[i, j - 1]
                    s2 += phi[i, j - 1] * dv[i, j - 1]
                if j < w - 1:
                    s1 += phi[i, j] * du[i, j + 1]
                    s2 += phi[i, j] * dv[i, j + 1]
                if i > 0:
                    s1 += phi[i - 1, j] * du[i - 1, j]
                    s2 += phi[i - 1, j] * dv[i - 1, j]
                if i < h - 1:
                    s1 += phi[i, j] * du[i + 1, j]
                    s2 += phi[i, j] * dv[i + 1, j]
                du[i, j] = (1 - omega) * du[i, j] + od1[i, j] * (
                    b1[i, j] + alpha * s1 - a12[i, j] * dv[i, j])
                dv[i, j] = (1 - omega) * dv[i, j] + od2[i, j] * (
                    b2[i, j] + alpha * s2 - a12[i, j] * du[i, j])


def _exact_solution(od1, od2, a12, b1, b2, phi, alpha, omega):
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    h, w = od1.shape
    n = h * w
    idx = np.arange(n).reshape(h, w)
    p64 = phi.astype(np.float64)
    rows, cols, vals = [], [], []
    diag1 = omega / od1.astype(np.float64)
    diag2 = omega / od2.astype(np.float64)
    for i in range(h):
        for j in range(w):
            p = idx[i, j]
            rows += [p, n + p, p, n + p]
            cols += [p, n + p, n + p, p]
            vals += [diag1[i, j], diag2[i, j], a12[i, j], a12[i, j]]
            for ii, jj, wgt in ((i, j + 1, p64[i, j]), (i + 1, j, p64[i, j])):
                if ii < h and jj < w:
                    q = idx[ii, jj]
                    rows += [p, q, n + p, n + q]
                    cols += [q, p, n + q, n + p]
                    vals += [-alpha * wgt] * 4
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(2 * n, 2 * n))
    x = spsolve(matrix, np.concatenate([b1.ravel(), b2.ravel()]).astype(np.float64))
    return x[:n].reshape(h, w), x[n:].reshape(h, w)


def test_red_black_converges_like_lexicographic(photo):
    """Red-black and the C++'s lexicographic SOR approach the exact solution of a real
    system (first outer iteration of a 30x40 crop, 30 sweeps) at the same rate."""
    ref = photo[100:130, 120:160]
    mov = _shift(photo, 1.3, -0.6)[100:130, 120:160]
    f1s = features._smooth5(features._features(ref))
    f2s = features._smooth5(features._features(mov))
    h, w = ref.shape[:2]
    zero = np.zeros((h, w), np.float32)
    phi = reference._smoothness_weight_np(zero, zero, 1e-6)
    od1 = np.empty((h, w), np.float32)
    od2 = np.empty((h, w), np.float32)
    system = reference._linear_system_np(
        0.4 * f1s + 0.6 * f2s, f2s - f1s, zero, zero, zero, zero, phi, 0.012, 1e-6, 1.8,
        od1, od2)
    args = (od1, od2, *system, phi)
    xu, xv = _exact_solution(*args, 0.012, 1.8)
    rb = [np.zeros((h, w), np.float32) for _ in range(2)]
    sor._sor_nb(*args, 0.012, 1.8, 30, *rb)
    lx = [np.zeros((h, w)) for _ in range(2)]
    _lexicographic_sor(*args, 0.012, 1.8, 30, *lx)
    err_rb = np.sqrt(((rb[0] - xu) ** 2 + (rb[1] - xv) ** 2).mean())
    err_lx = np.sqrt(((lx[0] - xu) ** 2 + (lx[1] - xv) ** 2).mean())
    start = np.sqrt((xu**2 + xv**2).mean())
    print(f"rms distance to the exact solution: start {start:.3f}, after 30 sweeps "
          f"red-black {err_rb:.3f}, lexicographic {err_lx:.3f}")
    assert err_rb < 0.95 * start and err_lx < 0.95 * start
    assert 0.8 < err_rb / err_lx < 1.25


# ---- accuracy ----------------------------------------------------------------------------


def test_constant_translation_is_recovered(photo):
    dx, dy = 2.3, -1.7
    mov = _shift(photo, dx, dy)
    flow = F.pyflow_flow(photo, mov)
    truth = np.empty_like(flow)
    truth[..., 0], truth[..., 1] = dx, dy
    valid = _interior(flow.shape, 16)
    mean = flow[valid].mean(axis=0)
    assert abs(mean[0] - dx) < 0.05 and abs(mean[1] - dy) < 0.05, mean
    assert F.end_point_error(flow, truth, valid) < 0.1


def test_twin_flow_accuracy(twin_pair, twin_flows):
    _, _, truth = twin_pair
    valid = _interior(truth.shape)
    epe = {name: F.end_point_error(f, truth, valid) for name, f in twin_flows.items()}
    print("twin 512x342 EPE (px):", {k: round(v, 4) for k, v in epe.items()})
    assert epe["pyflow"] <= 0.1
    # loose bounds: reported, not targets
    assert epe["pyflow_noisy"] <= 0.3
    assert epe["deepflow"] <= 0.3 and epe["deepflow_noisy"] <= 0.5
    assert epe["dis"] <= 0.3 and epe["dis_noisy"] <= 0.5


def test_convention_remap_aligns_moving_onto_reference(twin_pair, twin_flows):
    ref, mov, truth = twin_pair
    h, w = truth.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    valid = _interior(truth.shape, 16)
    before = np.abs(mov - ref)[valid].mean()
    for name in ("pyflow", "deepflow", "dis"):
        f = twin_flows[name]
        aligned = cv2.remap(mov, xx + f[..., 0], yy + f[..., 1], cv2.INTER_LINEAR)
        after = np.abs(aligned - ref)[valid].mean()
        assert after < 0.2 * before, (name, before, after)
        # and the opposite sign is wrong
        wrong = cv2.remap(mov, xx - f[..., 0], yy - f[..., 1], cv2.INTER_LINEAR)
        assert np.abs(wrong - ref)[valid].mean() > before


def test_compute_flow_dispatch(photo):
    ref = photo[:64, :80]
    mov = _shift(ref, 1.0, 0.5)
    for method in F.METHODS:
        assert F.compute_flow(ref, mov, method).shape == (64, 80, 2)
    assert F.DEFAULT_METHOD in F.METHODS
    with pytest.raises(F.FlowInputError, match="unknown flow method"):
        F.compute_flow(ref, mov, "farneback")


def test_the_method_names_are_the_registry_keys():
    assert tuple(F.FLOW_METHODS) == F.METHODS == ("pyflow", "deepflow", "dis")
    assert F.FLOW_METHODS["dis"] is F.dis_flow
    grey = np.zeros((8, 8), np.float32)
    with pytest.raises(F.FlowInputError, match="choose one of pyflow, deepflow, dis"):
        F.compute_flow(grey, grey, "farneback")


# ---- helpers and errors ------------------------------------------------------------------


def test_flow_to_png_colours():
    flow = np.zeros((4, 4, 2), np.float32)
    flow[0, 0] = (2.0, 0.0)  # +x: red
    flow[0, 1] = (-2.0, 0.0)  # -x: cyan
    flow[0, 2] = (1.0, 0.0)  # half the max: half value
    png = F.flow_to_png(flow)
    assert png.dtype == np.uint8 and png.shape == (4, 4, 3)
    assert tuple(png[0, 0]) == (255, 0, 0)
    assert tuple(png[0, 1]) == (0, 255, 255)
    assert tuple(png[0, 2]) == (128, 0, 0)
    assert tuple(png[3, 3]) == (0, 0, 0)
    assert tuple(F.flow_to_png(flow, max_magnitude=4.0)[0, 0]) == (128, 0, 0)


def test_end_point_error():
    a = np.zeros((3, 4, 2))
    b = np.zeros((3, 4, 2))
    b[..., 0] = 3.0
    b[..., 1] = 4.0
    assert F.end_point_error(a, b) == pytest.approx(5.0)
    valid = np.zeros((3, 4), bool)
    valid[0, 0] = True
    b[1, 1] = 100.0
    assert F.end_point_error(a, b, valid) == pytest.approx(5.0)
    with pytest.raises(F.FlowInputError, match="selects no pixel"):
        F.end_point_error(a, b, np.zeros((3, 4), bool))
    with pytest.raises(F.FlowInputError, match="size mismatch"):
        F.end_point_error(a, b[:2])


@pytest.mark.parametrize("method", ["pyflow", "deepflow", "dis"])
def test_bad_inputs_raise_named_errors(method):
    ref = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32)
    with pytest.raises(F.FlowInputError, match="size mismatch"):
        F.compute_flow(ref, ref[:, :39], method)
    bad = ref.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(F.FlowInputError, match="moving contains 1 non-finite"):
        F.compute_flow(ref, bad, method)
    with pytest.raises(F.FlowInputError, match="reference must be a float image"):
        F.compute_flow((ref * 255).astype(np.uint8), ref, method)
    with pytest.raises(F.FlowInputError, match="RGB image"):
        F.compute_flow(ref[..., :2], ref[..., :2], method)
