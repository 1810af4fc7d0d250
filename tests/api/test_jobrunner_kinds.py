"""The job kinds without a test of their own through the runner: capture (the twin rig at a
small sensor size), export (after a postprocess job on a tiny imported scene) and deblur (a
random-init LBAG on a 64×64 PNG). One JobRunner on threads (light), a SQLite file database."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from sqlalchemy import select

from acquisition.raw_import import import_scene
from api.jobs.params import validate_params
from api.jobs.runner import JobRunner
from core import migrate
from core.db import make_engine, session_factory
from core.dng import read_dng
from core.jobs import JobParamsError, create_job
from core.models import Capture, CaptureKind, CaptureStatus, Frame, Job, JobKind, JobStatus, Scene
from core.settings import Settings
from hardware_sim.scene_writer import simulate_scene
from hardware_sim.spec import load_preset, with_sensor_size

REPO = Path(__file__).resolve().parents[2]
SENSOR = (192, 128)  # px: the twin rig's sensor, shrunk so that a capture takes seconds


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A data dir with one imported tiny scene, a rigs dir with a small twin rig, a random-init
    LBAG checkpoint, the SQLite database and a started runner (threads)."""
    from deblur.infer import random_init_checkpoint

    root = tmp_path_factory.mktemp("kinds")
    url = f"sqlite:///{root / 'reloblur.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    data_dir = root / "data"
    spec = with_sensor_size(load_preset("car"), *SENSOR)
    simulate_scene(spec, 2, root / "sim", seed=0)
    scene = import_scene(root / "sim", None, engine, data_dir).scene
    rigs = root / "rigs"
    rigs.mkdir()
    cfg = yaml.safe_load((REPO / "configs/rigs/twin.yaml").read_text())
    o = cfg["optics"]  # same field of view: the pixels grow as they get fewer
    scale = o["sensor_width_px"] / SENSOR[0]
    o.update(sensor_width_px=SENSOR[0], sensor_height_px=SENSOR[1],
             pixel_pitch_um=o["pixel_pitch_um"] * scale)
    (rigs / "twin.yaml").write_text(yaml.safe_dump(cfg))
    ckpt = random_init_checkpoint("lbag", root / "lbag.pt", seed=0, num_res=1)
    settings = Settings(data_dir=data_dir, database_url=url, rigs_dir=rigs, checkpoint=ckpt,
                        device="cpu", dask_workers=1, job_max_attempts=2)
    runner = JobRunner(settings, n_workers=1, processes=False)
    runner.start()
    try:
        yield {"runner": runner, "engine": engine, "data_dir": data_dir, "settings": settings,
               "scene": scene}
    finally:
        runner.close()
        engine.dispose()


def run(lab, kind: str, params: dict, timeout: float = 120) -> Job:
    """Validate, record and submit a job as the API does; wait until it has ended."""
    settings = lab["settings"]
    kind, model = validate_params(kind, params, settings)
    with session_factory(lab["engine"])() as session:
        job = create_job(session, kind, model.model_dump(mode="json"),
                         max_attempts=settings.job_max_attempts)
        session.commit()
        job_id = job.id
    lab["runner"].submit(job_id)
    return lab["runner"].wait(job_id, timeout=timeout)


def test_capture_job_stores_a_scene_session(lab):
    job = run(lab, "capture", {"rig": "twin", "scene": "cap1", "pairs": 1})
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.progress == 1.0
    r = job.result
    assert r["scene"] == "cap1" and r["rig"] == "twin" and r["status"] == "complete"
    assert len(r["stored"]) == 3 and r["already_present"] == []  # whiteboard, reference, 1 pair
    assert r["plan"]["long_exposure_s"] > r["plan"]["short_exposure_s"] > 0
    with session_factory(lab["engine"])() as session:
        caps = session.scalars(select(Capture).join(Scene).where(Scene.name == "cap1")
                               .order_by(Capture.trigger_index)).all()
        assert [c.kind for c in caps] == [CaptureKind.WHITEBOARD, CaptureKind.REFERENCE,
                                          CaptureKind.PAIR]
        assert all(c.status == CaptureStatus.COMPLETE for c in caps)
        frames = session.scalars(select(Frame).where(Frame.capture_id.in_([c.id for c in caps]))).all()
    assert len(frames) == 6 and {f.role for f in frames} == {"B", "S"}
    for f in frames:
        cfa, meta = read_dng(lab["data_dir"] / f.path)
        assert cfa.shape == (SENSOR[1], SENSOR[0]) and (f.width_px, f.height_px) == SENSOR
        assert meta.cfa_pattern == "RGGB" and meta.bits == 12
    pair = [f for f in frames if f.capture_id == caps[-1].id]
    assert {f.role: f.exposure_s for f in pair}["B"] > {f.role: f.exposure_s for f in pair}["S"]


def test_lightbox_job_stores_one_flat_field_per_camera(lab):
    job = run(lab, "lightbox", {"rig": "twin", "exposure_ms": 2.0, "nd": 0.25})
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["rig"] == "twin" and job.result["status"] == "complete"
    exposure = job.result["exposure_s"]
    assert exposure["B"] == pytest.approx(exposure["S"] / 0.25, rel=1e-3)
    with session_factory(lab["engine"])() as session:
        caps = session.scalars(select(Capture).where(Capture.kind == CaptureKind.LIGHTBOX)).all()
        assert len(caps) >= 1 and all(c.status == CaptureStatus.COMPLETE for c in caps)
        newest = max(caps, key=lambda c: c.id)
        frames = session.scalars(select(Frame).where(Frame.capture_id == newest.id)).all()
    assert {f.role: f.exposure_s for f in frames} == pytest.approx(exposure, rel=1e-6)
    for f in frames:
        cfa, _ = read_dng(lab["data_dir"] / f.path)
        assert cfa.shape == (SENSOR[1], SENSOR[0]) and 0 < cfa.mean() < 4095


def test_export_job_after_a_postprocess_job(lab):
    scene = lab["scene"]
    pp = run(lab, "postprocess", {"scene": scene})
    assert pp.status == JobStatus.SUCCEEDED, pp.error
    assert pp.result["made"]["mask"] == 2
    # `out` is relative to the exports root (default <data_dir>/exports); reported relative
    job = run(lab, "export", {"out": "one", "test_scenes": [scene], "scenes": [scene]})
    assert job.status == JobStatus.SUCCEEDED, job.error
    out = lab["data_dir"] / "exports/one"
    assert job.result["out"] == "exports/one" and job.result["exports_path"] == "one"
    assert job.result["splits"] == {"train": [], "test": [scene]}
    assert job.result["pairs"] == {scene: 2} and job.result["skipped"] == {scene: []}
    blur = sorted((out / "dataset/test" / scene).rglob("*_blur.png"))
    sharp = sorted((out / "dataset/test" / scene).rglob("*_sharp.png"))
    masks = sorted((out / "masks/test" / scene).rglob("*.png"))
    assert len(blur) == len(sharp) == len(masks) == 2
    assert not (out / "dataset/train").exists() or not any((out / "dataset/train").rglob("*.png"))
    img = cv2.imread(str(blur[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (SENSOR[1], SENSOR[0], 3) and img.dtype == np.uint8
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (SENSOR[1], SENSOR[0]) and set(np.unique(mask)) <= {0, 255}
    # an existing export without overwrite is refused when submitted (422 through the API)...
    with pytest.raises(JobParamsError, match="out: .*exists and is not empty \\(a previous export\\)"):
        run(lab, "export", {"out": "one", "test_scenes": [scene]})
    # ... and by the job itself, should one be recorded anyway: a named error, not retried
    params = {"out": "one", "test_scenes": [scene], "scenes": None, "overwrite": False}
    with session_factory(lab["engine"])() as session:
        job = create_job(session, JobKind.EXPORT, params, max_attempts=3)
        session.commit()
        job_id = job.id
    lab["runner"].submit(job_id)
    again = lab["runner"].wait(job_id, timeout=120)
    assert again.status == JobStatus.FAILED and again.attempts == 1
    assert again.error.startswith("ExportError: ") and "(a previous export)" in again.error


def test_deblur_job_on_a_png(lab):
    data_dir = lab["data_dir"]
    img = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    (data_dir / "inbox").mkdir(exist_ok=True)
    cv2.imwrite(str(data_dir / "inbox/blurry.png"), img)
    job = run(lab, "deblur", {"inputs": ["inbox/blurry.png"], "out": "deblur/mine", "tile": 48})
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["out"] == "deblur/mine"
    [row] = job.result["images"]
    assert row["input"] == "inbox/blurry.png" and (row["width"], row["height"]) == (64, 64)
    assert row["deblurred"] == "deblur/mine/blurry_deblurred.png"
    out = cv2.imread(str(data_dir / row["deblurred"]), cv2.IMREAD_UNCHANGED)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    soft = cv2.imread(str(data_dir / row["mask"]), cv2.IMREAD_UNCHANGED)
    hard = cv2.imread(str(data_dir / row["mask_bin"]), cv2.IMREAD_UNCHANGED)
    assert soft.shape == hard.shape == (64, 64) and set(np.unique(hard)) <= {0, 255}
    assert np.array_equal(hard == 255, soft >= 128)
    missing = run(lab, "deblur", {"inputs": ["inbox/none.png"]})
    assert missing.status == JobStatus.FAILED and missing.attempts == 1
    assert "none.png" in missing.error
