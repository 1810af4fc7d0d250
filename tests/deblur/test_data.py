"""Data: ReLoBlur-layout reader on a tiny exported twin dataset, BAPC, twin pairs, sampling."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from core import srgb
from deblur.data import (
    CorruptImageError,
    MissingFileError,
    PatchDataset,
    ReLoBlurDataset,
    SizeMismatchError,
    StepBatchSampler,
    bapc_crop,
    make_loader,
    uniform_crop,
)
from hardware_sim.training_data import TwinPairDataset, export_twin_dataset

W, H = 96, 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """ball + car (train) and pedestrian (test), 1 scene each, 2 pairs, 96×64."""
    root = tmp_path_factory.mktemp("twin_export")
    export_twin_dataset(root, ("ball", "car", "pedestrian"), n_scenes=1, pairs=2, width=W, height=H,
                        test_presets=("pedestrian",))
    return root


@pytest.fixture
def dataset_copy(exported, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(exported, root)
    return root


# ------------------------------------------------------------------------------ export/read


def test_export_layout_and_scene_disjoint_splits(exported):
    blur = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*_blur.png"))
    assert blur == [
        "dataset/test/pedestrian_s0/00/00000_blur.png",
        "dataset/test/pedestrian_s0/00/00001_blur.png",
        "dataset/train/ball_s0/00/00000_blur.png",
        "dataset/train/ball_s0/00/00001_blur.png",
        "dataset/train/car_s0/00/00000_blur.png",
        "dataset/train/car_s0/00/00001_blur.png",
    ]
    for b in exported.rglob("*_blur.png"):
        rel = b.relative_to(exported / "dataset")
        split, scene, seq = rel.parts[:3]
        idx = b.name.removesuffix("_blur.png")
        sharp = b.with_name(f"{idx}_sharp.png")
        mask = exported / "masks" / split / scene / seq / f"{idx}.png"
        img = cv2.imread(str(b), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (H, W, 3)
        assert cv2.imread(str(sharp), cv2.IMREAD_UNCHANGED).shape == (H, W, 3)
        m = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
        assert m.dtype == np.uint8 and m.shape == (H, W)
        assert set(np.unique(m)) <= {0, 255} and (m == 255).any()
    train = {p.name for p in (exported / "dataset" / "train").iterdir()}
    test = {p.name for p in (exported / "dataset" / "test").iterdir()}
    assert train == {"ball_s0", "car_s0"} and test == {"pedestrian_s0"}
    assert not train & test


def test_export_refuses_non_disjoint_or_existing(exported, tmp_path):
    with pytest.raises(ValueError, match="scene-disjoint"):
        export_twin_dataset(tmp_path / "a", ("ball",), 1, 1, W, H, test_presets=("ball",))
    with pytest.raises(ValueError, match="not among the presets"):
        export_twin_dataset(tmp_path / "b", ("ball", "car"), 1, 1, W, H, test_presets=("pedestrian",))
    with pytest.raises(FileExistsError):
        export_twin_dataset(exported, ("ball", "car"), 1, 1, W, H)


def test_export_matches_twin_dataset(exported):
    twin = TwinPairDataset(["car"], W, H, seeds=[0], pairs_per_scene=2)
    blur, sharp, mask, sid = twin.load_arrays(1)
    assert sid == "car_s0/00/00001"
    ds = ReLoBlurDataset(exported, "train")
    s = ds[ds.ids.index(sid)]
    np.testing.assert_allclose(s["blur"].numpy().transpose(1, 2, 0), blur, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(s["sharp"].numpy().transpose(1, 2, 0), sharp, atol=0.5 / 255 + 1e-6)
    assert np.array_equal(s["mask"][0].numpy() > 0, mask)


def test_reader_samples(exported):
    ds = ReLoBlurDataset(exported, "train")
    assert len(ds) == 4
    assert ds.ids[0] == "ball_s0/00/00000"
    s = ds[0]
    assert s["id"] == "ball_s0/00/00000"
    assert s["blur"].shape == (3, H, W) and s["sharp"].shape == (3, H, W)
    assert s["mask"].shape == (1, H, W)
    for k in ("blur", "sharp", "mask"):
        assert s[k].dtype == torch.float32
        assert float(s[k].min()) >= 0.0 and float(s[k].max()) <= 1.0
    assert set(torch.unique(s["mask"]).tolist()) == {0.0, 1.0}
    assert len(ReLoBlurDataset(exported, "test")) == 2
    assert len(ReLoBlurDataset(exported, "train", scenes=["car_s0"])) == 2


def test_mask_binarised_with_gt_zero(dataset_copy):
    mask_path = dataset_copy / "masks/train/ball_s0/00/00000.png"
    m = np.zeros((H, W), np.uint8)
    m[10:20, 10:30] = 1
    m[30:40, 40:50] = 128
    cv2.imwrite(str(mask_path), m)
    s = ReLoBlurDataset(dataset_copy, "train")[0]
    assert np.array_equal(s["mask"][0].numpy(), (m > 0).astype(np.float32))


def test_corrupt_mask_is_named_error(dataset_copy):
    bad = dataset_copy / "masks/train/car_s0/00/00001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    ds = ReLoBlurDataset(dataset_copy, "train")
    i = ds.ids.index("car_s0/00/00001")
    with pytest.raises(CorruptImageError, match=str(bad)) as info:
        ds[i]
    assert info.value.path == bad
    with pytest.raises(CorruptImageError, match=str(bad)):
        ReLoBlurDataset(dataset_copy, "train", verify=True)


def test_corrupt_mask_skip_mode_warns_and_skips(dataset_copy):
    bad = dataset_copy / "masks/train/car_s0/00/00001.png"
    bad.write_bytes(b"")
    with pytest.warns(UserWarning, match=str(bad)):
        ds = ReLoBlurDataset(dataset_copy, "train", on_bad="skip", verify=True)
    assert len(ds) == 3 and "car_s0/00/00001" not in ds.ids
    # Lazily (no verify): the bad sample is replaced by the next good one, with a warning.
    lazy = ReLoBlurDataset(dataset_copy, "train", on_bad="skip")
    i = lazy.ids.index("car_s0/00/00001")
    with pytest.warns(UserWarning, match=str(bad)):
        s = lazy[i]
    assert s["id"] == lazy.ids[(i + 1) % len(lazy)]


def test_missing_mask_error_and_skip(dataset_copy):
    gone = dataset_copy / "masks/train/ball_s0/00/00001.png"
    gone.unlink()
    with pytest.raises(MissingFileError, match=str(gone)):
        ReLoBlurDataset(dataset_copy, "train")
    with pytest.warns(UserWarning, match=str(gone)):
        ds = ReLoBlurDataset(dataset_copy, "train", on_bad="skip")
    assert len(ds) == 3


def test_size_mismatch_names_both_files(dataset_copy):
    folder = dataset_copy / "dataset/train/ball_s0/00"
    sharp = folder / "00000_sharp.png"
    cv2.imwrite(str(sharp), np.zeros((H, W - 4, 3), np.uint8))
    ds = ReLoBlurDataset(dataset_copy, "train")
    with pytest.raises(SizeMismatchError) as info:
        ds[0]
    assert str(folder / "00000_blur.png") in str(info.value) and str(sharp) in str(info.value)


# ------------------------------------------------------------------------------------- BAPC


def _coords_image(h: int, w: int) -> np.ndarray:
    """H×W×3 int32 image whose pixels encode their own (y, x)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, yy * w + xx], axis=2).astype(np.int32)


def test_bapc_centre_on_blur_patch_inside_and_flips():
    h, w, size = 120, 160, 32
    img = _coords_image(h, w)
    mask = np.zeros((h, w), bool)
    mask[5:25, 120:158] = True  # near a corner: clamping must keep the patch inside
    mask[70:100, 30:60] = True
    rng = np.random.default_rng(1)
    flips = set()
    for _ in range(200):
        b, s, m, info = bapc_crop(img, img, mask, size, p_blur=1.0, rng=rng, return_info=True)
        cy, cx = info["centre"]
        assert info["mode"] == "blur" and mask[cy, cx]
        assert mask[max(cy - 3, 0): cy + 4, max(cx - 3, 0): cx + 4].all()  # interior (eroded 3 px)
        top, left = info["top"], info["left"]
        assert 0 <= top <= h - size and 0 <= left <= w - size
        assert top <= cy < top + size and left <= cx < left + size
        assert b.shape == (size, size, 3) and m.shape == (size, size)
        expected = img[top: top + size, left: left + size]
        if info["hflip"]:
            expected = expected[:, ::-1]
        if info["vflip"]:
            expected = expected[::-1]
        assert np.array_equal(b, expected) and np.array_equal(s, expected)
        exp_m = mask[top: top + size, left: left + size]
        exp_m = exp_m[:, ::-1] if info["hflip"] else exp_m
        exp_m = exp_m[::-1] if info["vflip"] else exp_m
        assert np.array_equal(m, exp_m)
        if not (top + size // 2 == cy and left + size // 2 == cx):
            assert top in (0, h - size) or left in (0, w - size)  # off-centre only when clamped
        flips.add((info["hflip"], info["vflip"]))
    assert flips == {(False, False), (True, False), (False, True), (True, True)}


def test_bapc_p0_is_uniform_and_fallbacks():
    h, w, size = 100, 100, 20
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), bool)
    mask[0:10, 0:10] = True
    rng = np.random.default_rng(0)
    tops = []
    for _ in range(300):
        *_, info = bapc_crop(img, img, mask, size, p_blur=0.0, rng=rng, return_info=True)
        assert info["mode"] == "uniform" and info["centre"] is None
        tops.append(info["top"])
        *_, info = uniform_crop(img, img, mask, size, rng=rng, return_info=True)
        assert 0 <= info["top"] <= h - size and 0 <= info["left"] <= w - size
    assert min(tops) < 10 and max(tops) > 70  # spread over the whole range
    # A mask too thin to survive the erosion → its own pixels; an empty mask → uniform.
    thin = np.zeros((h, w), bool)
    thin[50, 10:90] = True
    *_, info = bapc_crop(img, img, thin, size, p_blur=1.0, rng=rng, return_info=True)
    assert info["mode"] == "blur_edge" and info["centre"][0] == 50
    *_, info = bapc_crop(img, img, np.zeros((h, w), bool), size, 1.0, rng, return_info=True)
    assert info["mode"] == "uniform_empty_mask"
    with pytest.raises(ValueError, match="larger than the image"):
        bapc_crop(img, img, mask, 128, rng=rng)


def test_bapc_seeded_determinism():
    rng_img = np.random.default_rng(5)
    img = rng_img.integers(0, 255, (80, 90, 3), dtype=np.uint8)
    mask = rng_img.random((80, 90)) > 0.7
    a = [bapc_crop(img, img, mask, 32, 0.5, np.random.default_rng(42)) for _ in range(2)]
    for x, y in zip(a[0], a[1], strict=True):
        assert np.array_equal(x, y)
    outs = {bapc_crop(img, img, mask, 32, 0.5, np.random.default_rng(s))[0].tobytes() for s in range(10)}
    assert len(outs) > 1


# ------------------------------------------------------------------------------------- twin


def test_twin_pair_dataset_deterministic_srgb_and_noise():
    from hardware_sim.spec import load_preset, with_sensor_size
    from hardware_sim.twin import RigTwin

    ds = TwinPairDataset(["ball", "car"], W, H, seeds=[0, 3], pairs_per_scene=2)
    assert len(ds) == 8
    assert ds.locate(5) == ("car", 0, 1) and ds.locate(7) == ("car", 3, 1)
    a, b = ds[6], TwinPairDataset(["ball", "car"], W, H, seeds=[0, 3], pairs_per_scene=2)[6]
    for k in ("blur", "sharp", "mask"):
        assert torch.equal(a[k], b[k])
    assert a["id"] == "car_s3/00/00000"
    shot = RigTwin(with_sensor_size(load_preset("car"), W, H), 3).pair(0, 2)
    np.testing.assert_array_equal(a["blur"].numpy().transpose(1, 2, 0), srgb.encode(shot.blurred_linear))
    np.testing.assert_array_equal(a["mask"][0].numpy() > 0, shot.mask)
    assert float(a["blur"].min()) >= 0.0 and float(a["blur"].max()) <= 1.0
    noisy = TwinPairDataset(["car"], W, H, seeds=[3], pairs_per_scene=2, noise_sigma=0.02)
    n1, n2 = noisy[0], noisy[0]
    assert torch.equal(n1["blur"], n2["blur"]) and torch.equal(n1["sharp"], a["sharp"])
    assert 0.01 < float((n1["blur"] - a["blur"]).std()) < 0.03
    assert float(n1["blur"].min()) >= 0.0 and float(n1["blur"].max()) <= 1.0
    # IEC sRGB curve: linear segment and the 0.5 → 0.7354 point.
    np.testing.assert_allclose(srgb.encode(np.array([0.001, 0.5, 2.0])), [0.01292, 0.735357, 1.0], atol=1e-5)


def test_twin_noise_sigma_range_draws_one_sigma_per_pair_and_keeps_clean_pairs_possible():
    """``noise_sigma=(min, max)``: each pair gets its own σ from the range (deterministic per
    pair), the blurred image's noise has that σ, the sharp image none; a range out of [0, 1]
    or with min > max is refused by the dataset and by the training config."""
    from deblur.config import DataConfig

    clean = TwinPairDataset(["random"], W, H, seeds=[0, 1, 2, 3], pairs_per_scene=2)
    ranged = TwinPairDataset(["random"], W, H, seeds=[0, 1, 2, 3], pairs_per_scene=2, noise_sigma=(0.0, 0.03))
    sigmas = [ranged.noise_sigma_of(i) for i in range(len(ranged))]
    assert len(set(sigmas)) == len(sigmas) and all(0.0 <= s <= 0.03 for s in sigmas)
    assert max(sigmas) - min(sigmas) > 0.01  # spread over the range, not one value
    assert sigmas == [TwinPairDataset(["random"], W, H, seeds=[0, 1, 2, 3], pairs_per_scene=2,
                                      noise_sigma=(0.0, 0.03)).noise_sigma_of(i) for i in range(len(ranged))]
    for i in (int(np.argmin(sigmas)), int(np.argmax(sigmas))):
        blur, sharp, _, _ = ranged.load_arrays(i)
        c_blur, c_sharp, _, _ = clean.load_arrays(i)
        np.testing.assert_array_equal(sharp, c_sharp)
        inside = (c_blur > 0.1) & (c_blur < 0.9)  # away from the clipping at 0 and 1
        assert abs(float((blur - c_blur)[inside].std()) - sigmas[i]) < 0.1 * sigmas[i] + 1e-4
    assert TwinPairDataset(["car"], W, H, noise_sigma=0.02).noise_sigma_of(0) == 0.02
    for bad in ((0.02, 0.01), (-0.01, 0.01), (0.0, 1.5), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="noise_sigma"):
            TwinPairDataset(["car"], W, H, noise_sigma=bad)
        with pytest.raises(ValueError, match="noise_sigma"):
            DataConfig(source="twin", noise_sigma=bad)
    assert DataConfig(source="twin", noise_sigma=[0.0, 0.02]).noise_sigma == (0.0, 0.02)


def test_twin_pair_cache_returns_the_rendered_pair_read_only():
    """``cache_pairs`` keeps the newest rendered pairs: a cached pair equals a fresh render,
    cannot be modified in place, and the cache stays within its size (and is not pickled)."""
    import pickle

    fresh = TwinPairDataset(["ball", "car"], W, H, seeds=[0], pairs_per_scene=2, noise_sigma=0.01)
    cached = TwinPairDataset(["ball", "car"], W, H, seeds=[0], pairs_per_scene=2, noise_sigma=0.01,
                             cache_pairs=2)
    for i in (0, 3, 0, 1, 2, -1):
        a, b = fresh.load_arrays(i), cached.load_arrays(i)
        for x, y in zip(a[:3], b[:3], strict=True):
            np.testing.assert_array_equal(x, y)
        assert a[3] == b[3]
    assert list(cached._pairs) == [2, 3]
    blur = cached.load_arrays(3)[0]
    with pytest.raises(ValueError, match="read-only"):
        blur[0, 0, 0] = 0.5
    assert len(pickle.loads(pickle.dumps(cached))._pairs) == 0
    with pytest.raises(IndexError):
        cached.load_arrays(4)
    with pytest.raises(ValueError, match="cache_pairs"):
        TwinPairDataset(["ball"], W, H, cache_pairs=-1)


def test_twin_renders_kept_on_disk_are_shared_and_equal_a_fresh_render(tmp_path, monkeypatch):
    """``render_dir``: the first dataset renders and keeps each pair; a second one over the same
    scenes (another run, another process) loads them without rendering, with its own noise
    added after loading; other scenes get other files."""
    from hardware_sim.twin import RigTwin

    fresh = TwinPairDataset(["random"], W, H, seeds=[0, 1], pairs_per_scene=2, noise_sigma=0.01)
    expected = [fresh.load_arrays(i)[:3] for i in range(len(fresh))]
    first = TwinPairDataset(["random"], W, H, seeds=[0, 1], pairs_per_scene=2, noise_sigma=0.01,
                            render_dir=tmp_path / "renders")
    for i in range(len(first)):
        first.load_arrays(i)
    kept = sorted((tmp_path / "renders").glob("*.npz"))
    assert len(kept) == 4 and not list((tmp_path / "renders").glob(".*"))  # no temporary left

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered although the pair is on disk")

    monkeypatch.setattr(RigTwin, "pair", no_rendering)
    second = TwinPairDataset(["random"], W, H, seeds=[0, 1], pairs_per_scene=2, noise_sigma=0.01,
                             render_dir=tmp_path / "renders")
    for i in range(len(second)):
        for a, b in zip(expected[i], second.load_arrays(i)[:3], strict=True):
            np.testing.assert_array_equal(a, b)
    other = TwinPairDataset(["random"], W, H, seeds=[0, 1], pairs_per_scene=2, movers=["disc", "wheel"],
                            render_dir=tmp_path / "renders")
    with pytest.raises(AssertionError, match="rendered although"):
        other.load_arrays(0)


def test_twin_pairs_take_the_sharp_frame_at_the_centre_of_the_blurred_exposure_by_default():
    """``sharp_timing`` reaches the twin: ``centre`` (default) renders the sharp image over the
    middle of B's window, ``start`` over its first tS (the published set's timing); the blurred
    image and the mask do not change."""
    from hardware_sim.spec import load_preset, with_sensor_size, with_sharp_timing
    from hardware_sim.twin import RigTwin

    centre = TwinPairDataset(["car"], W, H, seeds=[3], pairs_per_scene=2)
    start = TwinPairDataset(["car"], W, H, seeds=[3], pairs_per_scene=2, sharp_timing="start")
    assert centre.sharp_timing == "centre"
    spec = with_sensor_size(load_preset("car"), W, H)
    for ds, timing in ((centre, "centre"), (start, "start")):
        shot = RigTwin(with_sharp_timing(spec, timing), 3).pair(1, 2)
        assert shot.info["sharp_timing"] == timing
        blur, sharp, mask, _ = ds.load_arrays(1)
        np.testing.assert_array_equal(sharp, srgb.encode(shot.sharp_linear))
        np.testing.assert_array_equal(blur, srgb.encode(shot.blurred_linear))
        np.testing.assert_array_equal(mask, shot.mask)
    c, s = centre.load_arrays(1), start.load_arrays(1)
    np.testing.assert_array_equal(c[0], s[0])
    np.testing.assert_array_equal(c[2], s[2])
    assert not np.array_equal(c[1], s[1])

    with pytest.raises(ValueError, match="sharp_timing must be one of centre, start"):
        TwinPairDataset(["car"], W, H, sharp_timing="middle")


def test_sharp_timing_passes_through_the_export_and_the_training_config(tmp_path):
    from deblur.config import parse_config
    from deblur.data import read_image
    from deblur.train import _datasets

    summary = export_twin_dataset(tmp_path / "start", ("ball", "car"), n_scenes=1, pairs=1, width=W, height=H,
                                  sharp_timing="start")
    sid = summary["train"][0]
    scene, seq, idx = sid.split("/")
    written = read_image(tmp_path / "start" / "dataset" / "train" / scene / seq / f"{idx}_sharp.png")
    expected = TwinPairDataset(["ball"], W, H, seeds=[0], pairs_per_scene=1, sharp_timing="start").load_arrays(0)[1]
    np.testing.assert_array_equal(written, np.round(np.clip(expected, 0, 1) * 255).astype(np.uint8))
    cfg = parse_config({"data": {"source": "twin", "width": W, "height": H, "sharp_timing": "start"}})
    train_ds, val_ds = _datasets(cfg)
    assert train_ds.sharp_timing == "start" and (val_ds is None or val_ds.sharp_timing == "start")
    assert parse_config({"data": {"source": "twin"}}).data.sharp_timing == "centre"


def test_twin_random_preset_is_a_new_scene_per_seed_without_excluded_assets():
    from hardware_sim.scene_sampler import random_scene
    from hardware_sim.spec import with_sensor_size
    from hardware_sim.twin import RigTwin

    ds = TwinPairDataset(["random", "car"], W, H, seeds=[0, 9], pairs_per_scene=1,
                         exclude_assets=["pedestrian"])
    assert ds.ids == ["random_s0/00/00000", "random_s9/00/00000", "car_s0/00/00000", "car_s9/00/00000"]
    r0, r1 = ds.load_arrays(0), ds.load_arrays(1)
    assert float(np.abs(r0[1] - r1[1]).mean()) > 0.05  # seeds 0 and 9: other object and background
    shot = RigTwin(with_sensor_size(random_scene(9, ["pedestrian"]), W, H), 9).pair(0, 1)
    np.testing.assert_array_equal(r1[0], srgb.encode(shot.blurred_linear))
    np.testing.assert_array_equal(r1[2], shot.mask)
    with pytest.raises(ValueError, match="unknown asset"):
        TwinPairDataset(["random"], W, H, exclude_assets=["unicorn"])


def test_twin_random_scenes_take_the_configured_movers_and_blur_range():
    """``data.movers`` and ``data.blur_b_px`` reach the training scenes (and only them)."""
    from deblur.config import ConfigError, parse_config
    from deblur.train import _datasets

    cfg = parse_config({"data": {"source": "twin", "presets": ["random"], "width": W, "height": H,
                                 "seeds": list(range(8)), "pairs_per_scene": 1,
                                 "movers": ["wheel", "tray"], "blur_b_px": [80, 90],
                                 "val_presets": ["random"], "val_seeds": [0]}})
    train_ds, val_ds = _datasets(cfg)
    specs = [train_ds._specs[("random", s)] for s in range(8)]
    assert {spec.objects[0].asset for spec in specs} == {"wheel", "tray"}
    scale = 2152 / W  # blur_b_px is in pixels of the full sensor
    assert all(79.9 <= spec.blur_px(spec.long_exposure_s) * scale <= 90.1 for spec in specs)
    val_spec = val_ds._specs[("random", 0)]
    assert val_spec.blur_px(val_spec.long_exposure_s) * scale <= 70.1
    with pytest.raises(ConfigError, match="blur_b_px"):
        parse_config({"data": {"source": "twin", "blur_b_px": [40, 20]}})
    with pytest.raises(ValueError, match="cannot move"):
        TwinPairDataset(["random"], W, H, movers=["poster"])


def test_patch_sampling_is_step_determined(exported):
    ds = ReLoBlurDataset(exported, "train")
    patches = PatchDataset(ds, patch_size=32, p_blur=0.5)
    sampler = StepBatchSampler(len(ds), batch_size=3, seed=7, start_step=0, total_steps=5)
    resumed = StepBatchSampler(len(ds), batch_size=3, seed=7, start_step=3, total_steps=5)
    assert list(sampler)[3:] == list(resumed)
    loader = make_loader(patches, batch_sampler=resumed, num_workers=0, seed=0)
    assert loader.pin_memory == torch.cuda.is_available()
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["blur"].shape == (3, 3, 32, 32) and b["mask"].shape == (3, 1, 32, 32)
    assert len(b["id"]) == 3
    again = patches[resumed.batch_for_step(3)[0]]
    assert torch.equal(again["blur"], b["blur"][0])


def test_colour_permutation_reorders_both_images_alike_and_keeps_the_crops(exported):
    ds = ReLoBlurDataset(exported, "train")
    plain = PatchDataset(ds, patch_size=32, p_blur=0.5)
    permuted = PatchDataset(ds, patch_size=32, p_blur=0.5, colour_permute=True)
    orders = set()
    for key in [(0, s) for s in range(24)]:
        a, b = plain[key], permuted[key]
        order = np.random.default_rng([key[1], 1]).permutation(3)
        assert torch.equal(b["blur"], a["blur"][order]) and torch.equal(b["sharp"], a["sharp"][order])
        assert torch.equal(b["mask"], a["mask"])
        orders.add(tuple(order))
    assert len(orders) == 6  # every channel order occurs


@pytest.mark.parametrize("source", ["reloblur", "twin"])
def test_loader_with_worker_matches_in_process(exported, source):
    """A worker process gives the same batches; twin rendering in a worker after the parent has
    rendered must not hang (workers are spawned, not forked)."""
    ds = ReLoBlurDataset(exported, "train") if source == "reloblur" else TwinPairDataset(["ball"], W, H, [0], 2)
    patches = PatchDataset(ds, patch_size=32, p_blur=1.0)
    mk = lambda n: make_loader(  # noqa: E731
        patches, batch_sampler=StepBatchSampler(len(ds), 2, 1, 0, 2), num_workers=n, seed=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = list(mk(0)), list(mk(1))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["blur"], y["blur"]) and x["id"] == y["id"]


# -------------------------------------------------------------------------------------- CLI


def test_cli_export_twin_dataset(tmp_path):
    from api.cli import app

    runner = CliRunner()
    out = tmp_path / "twin"
    r = runner.invoke(app, ["export-twin-dataset", "--out", str(out), "--presets", "ball,pedestrian",
                            "--test-presets", "pedestrian", "--scenes", "1", "--pairs", "1",
                            "--width", "64", "--height", "48"])
    assert r.exit_code == 0, r.output
    assert (out / "dataset/train/ball_s0/00/00000_blur.png").is_file()
    assert (out / "masks/test/pedestrian_s0/00/00000.png").is_file()
    r = runner.invoke(app, ["export-twin-dataset", "--out", str(tmp_path / "x"), "--presets", "ball,nope"])
    assert r.exit_code == 2 and "error:" in r.output and "nope" in r.output
    r = runner.invoke(app, ["export-twin-dataset", "--out", str(tmp_path / "r"), "--presets", "random,pedestrian",
                            "--scenes", "2", "--pairs", "1", "--width", "64", "--height", "48",
                            "--exclude-assets", "pedestrian"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "r/dataset/train").iterdir()) == ["random_s0", "random_s1"]
    r = runner.invoke(app, ["export-twin-dataset", "--out", str(tmp_path / "y"), "--presets", "random,pedestrian",
                            "--exclude-assets", "unicorn"])
    assert r.exit_code == 2 and "unicorn" in r.output
