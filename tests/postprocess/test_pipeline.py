"""The per-scene pipeline on twin scenes: accuracy against the truth, products, failures, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from acquisition.raw_import import import_scene
from api.cli import app
from core import migrate
from core.db import dispose_engines, make_engine, session_factory
from core.dng import read_dng, write_dng
from core.filestore import read_mask_png, read_png, sha256_file
from core.models import Calibration, Capture, CaptureKind, Frame, ProcessingRun, Product, RunStatus
from core.settings import get_settings
from deblur.data import ReLoBlurDataset
from hardware_sim.scene_writer import simulate_scene
from hardware_sim.spec import load_preset, with_sensor_size
from postprocess.export import ExportError, export_dataset
from postprocess.params import PipelineParams, load_params
from postprocess.pipeline import process_scene, scene_names_to_process
from postprocess.verify import verify_pipeline

SMALL = (256, 172)



def add_scene(engine, tmp_path: Path, preset: str = "car", pairs: int = 3, size=SMALL, seed: int = 0,
              name: str | None = None) -> tuple[str, Path, Path]:
    """Simulate a twin scene and import it; returns (scene name, data dir, simulation dir)."""
    spec = with_sensor_size(load_preset(preset), *size)
    if name is not None:
        spec = spec.model_copy(update={"name": name})
    sim = tmp_path / f"sim-{spec.name}"
    simulate_scene(spec, pairs, sim, seed=seed)
    data_dir = tmp_path / "data"
    summary = import_scene(sim, None, engine, data_dir)
    return summary.scene, data_dir, sim


def product_files(data_dir: Path) -> set[str]:
    root = data_dir / "processed"
    return {str(p.relative_to(data_dir)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def product_rows(engine) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(Product.path)).all())


def replace_frame(engine, data_dir: Path, capture_kind: str, trigger_index: int, role: str, cfa, meta) -> None:
    """Overwrite a stored RAW (and its recorded sha256) to inject bad input after import."""
    with session_factory(engine)() as session:
        frame = session.scalar(select(Frame).join(Capture).where(
            Capture.kind == CaptureKind(capture_kind), Capture.trigger_index == trigger_index, Frame.role == role))
        path = data_dir / frame.path
        path.unlink()
        frame.sha256 = write_dng(path, cfa, meta)
        frame.height_px, frame.width_px = cfa.shape
        session.commit()


# --------------------------------------------------------------------------- accuracy (issue §7)


@pytest.mark.parametrize("preset", ["car", "pedestrian", "ball"])
def test_every_stage_meets_its_target_against_the_twin(preset, tmp_path):
    report = verify_pipeline(preset, 640, 428, pairs=4, seed=1, workdir=tmp_path)
    checks = {(c.stage, c.measure): c for c in report.checks}
    assert not report.failures
    assert report.passed, report.table()
    measured = {c.stage for c in report.checks if c.passed is not None}
    assert measured == {"calibration", "photometric", "alignment", "isp", "masks"}
    assert sum(1 for key in checks if key[0] == "calibration" and "spread" in key[1]) == 2


def test_noise_free_alignment_reaches_40_db_through_the_whole_pipeline(tmp_path):
    report = verify_pipeline("car", 640, 428, pairs=2, noise_free=True, workdir=tmp_path)
    psnr = next(c for c in report.checks if c.measure.startswith("aligned reference"))
    assert psnr.target == "≥ 40 dB" and psnr.passed, report.table()


# --------------------------------------------------------------------------- products


def test_products_are_recorded_and_reused_and_new_params_make_new_ones(engine, tmp_path):
    scene, data_dir, _ = add_scene(engine, tmp_path)
    first = process_scene(engine, data_dir, scene)
    assert first.status == RunStatus.COMPLETE and not first.failures
    assert first.made == {"calibration": 2, "flow": 1, "scene_colour": 1, "blurred": 4, "sharp": 4, "mask": 3}
    files = product_files(data_dir)
    assert files == product_rows(engine)
    with session_factory(engine)() as session:
        for row in session.scalars(select(Product)):
            assert sha256_file(data_dir / row.path) == row.sha256
            assert row.pipeline_version and len(row.params_hash) == 64

    again = process_scene(engine, data_dir, scene)
    assert not again.made and again.reused["blurred"] == 4 and again.reused["mask"] == 3
    assert product_files(data_dir) == files

    masks = PipelineParams.model_validate({"masks": {"var_threshold": 20.0}})
    third = process_scene(engine, data_dir, scene, masks)
    assert third.made == {"mask": 3}
    warp = PipelineParams.model_validate({"alignment": {"warp_method": "lanczos4"}})
    fourth = process_scene(engine, data_dir, scene, warp)
    assert fourth.made == {"blurred": 4, "mask": 3}  # sharp images, flow and calibration reused
    assert files < product_files(data_dir)  # old products stay
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(ProcessingRun)) == 4
        assert session.scalar(select(func.count()).select_from(Calibration)) == 2


def test_images_are_8_bit_srgb_aligned_and_masks_binary(engine, tmp_path):
    scene, data_dir, sim = add_scene(engine, tmp_path)
    outcome = process_scene(engine, data_dir, scene)
    truth_flow = np.load(sim / "truth" / "flow_b_from_s.npy")
    with session_factory(engine)() as session:
        images = {i: [read_png(data_dir / session.get(Product, pid).path) for pid in (p.blurred, p.sharp)]
                  + [read_mask_png(data_dir / session.get(Product, p.mask).path)]
                  for i, p in outcome.pairs.items()}
    (blurred, sharp, mask), (_, other_sharp, other_mask) = images[0], images[1]
    assert blurred.dtype == sharp.dtype == np.uint8 and blurred.shape == (SMALL[1], SMALL[0], 3)
    assert mask.dtype == bool and 0 < mask.mean() < 0.5
    assert np.abs(truth_flow).max() > 1.0  # B was misaligned…
    static = ~(mask | other_mask)
    static[:16], static[-16:], static[:, :16], static[:, -16:] = False, False, False, False
    aligned = np.abs(blurred.astype(float) - sharp.astype(float))[static].mean()
    noise = np.abs(other_sharp.astype(float) - sharp.astype(float))[static].mean()
    shifted = np.abs(np.roll(blurred, 3, axis=1).astype(float) - sharp.astype(float))[static].mean()
    # …and its static background now differs from S about as two S frames do (their noise; B's is
    # raised a little by the warp and its own demosaicing), far less than after a 3 px shift.
    assert aligned < 1.5 * noise and aligned < 0.3 * shifted


def test_the_gallery_previews_are_made_as_the_products_are_stored(engine, tmp_path):
    import cv2

    from core import previews

    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=2)
    outcome = process_scene(engine, data_dir, scene)
    from postprocess.stages.common import GALLERY_KINDS

    with session_factory(engine)() as session:
        items = [(r.path, r.sha256) for r in session.scalars(select(Product).where(Product.kind.in_(GALLERY_KINDS)))]
    assert len(items) >= 6 and outcome.pairs  # the pairs' and the reference's images and masks
    cache = data_dir / previews.CACHE_DIR
    made = {p.stem for p in cache.glob("*")}
    assert made == {f"{sha}_{previews.GALLERY_SIDE}" for _, sha in items}
    assert {p.suffix for p in cache.glob("*")} == {".jpg", ".png"}  # colour images, masks
    thumb = cv2.imread(str(next(cache.glob(f"{items[0][1]}_{previews.GALLERY_SIDE}.*"))), cv2.IMREAD_UNCHANGED)
    assert max(thumb.shape[:2]) == min(previews.GALLERY_SIDE, max(SMALL))
    # the cache is the route's: asking for the preview again makes nothing
    assert previews.warm(data_dir, items) == 0
    # products stored before previews were made at storing get theirs when the scene is processed again
    shutil.rmtree(cache)
    process_scene(engine, data_dir, scene)
    assert {p.stem for p in cache.glob("*")} == made


def test_16_bit_outputs(engine, tmp_path):
    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=2)
    params = PipelineParams.model_validate({"isp": {"output_bits": 16}})
    outcome = process_scene(engine, data_dir, scene, params)
    with session_factory(engine)() as session:
        image = read_png(data_dir / session.get(Product, outcome.pairs[0].sharp).path)
    assert image.dtype == np.uint16 and outcome.pairs[0].mask is not None
    with pytest.raises(ExportError, match="8-bit"):
        export_dataset(engine, data_dir, tmp_path / "out", [scene], params=params)


def test_pair_photometric_source_with_static_regions(engine, tmp_path):
    scene, data_dir, sim = add_scene(engine, tmp_path, pairs=2, size=(640, 428))
    params = PipelineParams.model_validate({"photometric": {"source": "pair", "static_only": True}})
    outcome = process_scene(engine, data_dir, scene, params)
    truth = np.array(json.loads((sim / "truth" / "truth.json").read_text())["beta"])
    with session_factory(engine)() as session:
        for pair in outcome.pairs.values():
            beta = np.array(session.get(Product, pair.blurred).info["beta"])
            assert np.max(np.abs(beta / truth - 1)) <= 0.003


# --------------------------------------------------------------------------- bad input


def test_a_bad_pair_fails_alone_and_leaves_nothing(engine, tmp_path):
    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=4)
    cfa, meta = read_dng(next((data_dir / "raw").rglob("pair_0001_B.dng")))
    replace_frame(engine, data_dir, "pair", 1, "B", np.ascontiguousarray(cfa[:-2, :-2]), meta)  # size mismatch
    changed = next((data_dir / "raw").rglob("pair_0002_S.dng"))
    changed.write_bytes(changed.read_bytes()[:-10] + b"0123456789")  # changed after import
    outcome = process_scene(engine, data_dir, scene)
    assert outcome.status == RunStatus.COMPLETE
    failed = {f["unit"]: f["error"] for f in outcome.failures}
    assert failed == {"pair_0001": "FrameSizeMismatchError", "pair_0002": "CorruptFrameError"}
    assert sorted(outcome.pairs) == [0, 3]
    assert all(p.mask is not None for p in outcome.pairs.values())
    assert not any("pair_0001" in f or "pair_0002" in f for f in product_files(data_dir))
    assert product_files(data_dir) == product_rows(engine)
    with session_factory(engine)() as session:
        run = session.scalar(select(ProcessingRun))
        assert "FrameSizeMismatchError" in run.error and len(run.outcome["failures"]) == 2


def test_unreadable_raw_is_a_named_failure_of_its_pair(engine, tmp_path):
    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=2)
    with session_factory(engine)() as session:
        frame = session.scalar(select(Frame).join(Capture).where(
            Capture.kind == CaptureKind.PAIR, Capture.trigger_index == 0, Frame.role == "S"))
        path = data_dir / frame.path
        path.unlink()
        path.write_bytes(b"not a raw file at all" * 100)
        frame.sha256 = sha256_file(path)
        session.commit()
    outcome = process_scene(engine, data_dir, scene)
    assert [f["unit"] for f in outcome.failures] == ["pair_0000"]
    assert sorted(outcome.pairs) == [1]


def test_saturated_whiteboard_fails_the_scene_with_nothing_written(engine, tmp_path):
    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=2)
    cfa, meta = read_dng(next((data_dir / "raw").rglob("whiteboard_0000_S.dng")))
    replace_frame(engine, data_dir, "whiteboard", 0, "S", np.full_like(cfa, meta.white_level), meta)
    outcome = process_scene(engine, data_dir, scene)
    assert outcome.status == RunStatus.FAILED
    assert [(f["unit"], f["error"]) for f in outcome.failures] == [("scene", "WhiteboardSaturatedError")]
    assert product_files(data_dir) == set() == product_rows(engine)


def test_scene_without_reference_pair_or_lightbox_names_what_is_missing(engine, tmp_path):
    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=2)
    with session_factory(engine)() as session:
        session.delete(session.scalar(select(Capture).where(Capture.kind == CaptureKind.REFERENCE)))
        session.commit()
    outcome = process_scene(engine, data_dir, scene)
    assert outcome.failures[0]["error"] == "MissingCaptureError" and "reference" in outcome.failures[0]["message"]

    other, _, _ = add_scene(engine, tmp_path, preset="ball", pairs=2, name="no-lightbox")
    with session_factory(engine)() as session:
        for capture in session.scalars(select(Capture).where(Capture.kind == CaptureKind.LIGHTBOX)):
            session.delete(capture)
        session.commit()
    outcome = process_scene(engine, data_dir, other)
    assert outcome.failures[0]["error"] == "MissingCalibrationError"
    assert product_files(data_dir) == set() == product_rows(engine)


def test_a_crash_while_writing_a_pair_leaves_no_orphan(engine, tmp_path, monkeypatch):
    import postprocess.stages.pairs as pairs_stage  # the stage that writes the pairs' PNGs

    scene, data_dir, _ = add_scene(engine, tmp_path, pairs=2)
    real = pairs_stage.write_png
    calls = {"n": 0}

    def fail_on_blurred(path, image, bits=None):
        calls["n"] += 1
        if "/blurred/pair_0001" in str(path):
            raise OSError(28, "No space left on device")
        return real(path, image, bits)

    monkeypatch.setattr(pairs_stage, "write_png", fail_on_blurred)
    with pytest.raises(OSError):
        process_scene(engine, data_dir, scene)
    assert not any("pair_0001" in f for f in product_files(data_dir))
    assert product_files(data_dir) == product_rows(engine)
    with session_factory(engine)() as session:
        assert session.scalar(select(ProcessingRun.status)) == RunStatus.FAILED
    monkeypatch.setattr(pairs_stage, "write_png", real)
    outcome = process_scene(engine, data_dir, scene)  # the next run completes what is missing
    assert outcome.status == RunStatus.COMPLETE and outcome.made["blurred"] == 1 and outcome.reused["blurred"] == 2


# --------------------------------------------------------------------------- export and CLI


def test_export_writes_relobur_layout_with_scene_disjoint_splits(engine, tmp_path):
    car, data_dir, _ = add_scene(engine, tmp_path, "car", pairs=2)
    ball, _, _ = add_scene(engine, tmp_path, "ball", pairs=2)
    assert scene_names_to_process(engine) == sorted([car, ball])
    for scene in (car, ball):
        process_scene(engine, data_dir, scene)
    out = tmp_path / "export"
    summary = export_dataset(engine, data_dir, out, test_scenes=[ball])
    assert summary.splits == {"train": [car], "test": [ball]}
    assert sorted(p.name for p in (out / "dataset" / "train" / car / "00").iterdir()) == [
        "00000_blur.png", "00000_sharp.png", "00001_blur.png", "00001_sharp.png"]
    assert sorted(p.name for p in (out / "masks" / "test" / ball / "00").iterdir()) == ["00000.png", "00001.png"]
    preview = read_png(out / "preview" / "test" / ball / "00" / "00001.png")
    assert preview.shape == (SMALL[1] // 2, 3 * SMALL[0] // 2, 3)
    manifest = json.loads((out / "export.json").read_text())
    assert all(sha256_file(out / rel) == sha for rel, sha in manifest["files"].items())
    train = ReLoBlurDataset(out, "train")
    test = ReLoBlurDataset(out, "test")
    assert len(train) == 2 and len(test) == 2
    assert not {i.split("/")[0] for i in train.ids} & {i.split("/")[0] for i in test.ids}
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(engine, data_dir, out, test_scenes=[ball])
    with pytest.raises(ExportError, match="not among"):
        export_dataset(engine, data_dir, tmp_path / "other", test_scenes=["nowhere"])
    assert not (tmp_path / "other").exists()


@pytest.fixture
def _fresh_settings():
    yield
    get_settings.cache_clear()
    dispose_engines()


@pytest.mark.usefixtures("_fresh_settings")
def test_cli_process_export_and_params_file(tmp_path, monkeypatch):
    db = tmp_path / "cli.sqlite"
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("RELOBLUR_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    dispose_engines()
    migrate.upgrade(f"sqlite:///{db}")
    engine = make_engine(f"sqlite:///{db}")
    car, _, _ = add_scene(engine, tmp_path, "car", pairs=2)
    ball, _, _ = add_scene(engine, tmp_path, "ball", pairs=2)
    engine.dispose()
    params = tmp_path / "params.yaml"
    params.write_text("masks:\n  var_threshold: 14\n")
    runner = CliRunner()
    result = runner.invoke(app, ["process", "--all", "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert f"{car}: complete" in result.output and f"{ball}: complete" in result.output
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "ds"), "--test-scenes", ball,
                                 "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ds" / "dataset" / "test" / ball / "00" / "00000_blur.png").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("alignment:\n  flow_method: magic\n")
    result = runner.invoke(app, ["process", "--all", "--params", str(bad)])
    assert result.exit_code == 2 and "alignment.flow_method" in result.output
    result = runner.invoke(app, ["process", "--scene", "nowhere"])
    assert result.exit_code == 2 and "no scene named 'nowhere'" in result.output
    assert load_params(params).masks.var_threshold == 14


def test_the_shipped_parameter_file_spells_out_the_defaults():
    shipped = Path(__file__).parents[2] / "configs" / "pipeline.yaml"
    assert load_params(shipped) == PipelineParams()
    assert load_params(None).hash() == PipelineParams().hash()
