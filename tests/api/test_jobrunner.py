"""Jobs on a real Dask LocalCluster with two worker processes and a SQLite file database:
the life cycle of a postprocess job, progress, a worker killed mid-job, the reprocess fan-out,
cancels, and a named failure that is not retried."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from acquisition.raw_import import import_scene
from api.jobs.runner import JobRunner
from core import migrate
from core.db import make_engine, session_factory
from core.filestore import is_temp_name
from core.jobs import create_job, get_job
from core.models import Job, JobStatus, Product
from core.settings import Settings
from hardware_sim.scene_writer import simulate_scene
from hardware_sim.spec import load_preset, with_sensor_size

SMALL = (192, 128)  # the lifecycle scene (px)
LARGER = (320, 214)  # the scene a worker is killed in: long enough to be caught mid-job (px)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A data dir with two imported twin scenes, its SQLite database, and a started runner."""
    root = tmp_path_factory.mktemp("jobs")
    db = root / "reloblur.db"
    url = f"sqlite:///{db}"
    migrate.upgrade(url)
    engine = make_engine(url)
    data_dir = root / "data"
    scenes = {}
    for key, preset, size, pairs in (("small", "car", SMALL, 4), ("larger", "pedestrian", LARGER, 10)):
        spec = with_sensor_size(load_preset(preset), *size)
        simulate_scene(spec, pairs, root / f"sim-{key}", seed=0)
        scenes[key] = import_scene(root / f"sim-{key}", None, engine, data_dir).scene
    settings = Settings(data_dir=data_dir, database_url=url, dask_workers=2, job_max_attempts=3)
    runner = JobRunner(settings, processes=True)
    runner.start()
    try:
        yield {"runner": runner, "engine": engine, "data_dir": data_dir, "db": db, "scenes": scenes}
    finally:
        runner.close()
        engine.dispose()


def new_job(lab, kind: str, params: dict) -> int:
    with session_factory(lab["engine"])() as session:
        job = create_job(session, kind, params, max_attempts=3)
        session.commit()
        return job.id


def load(lab, job_id: int) -> Job:
    with session_factory(lab["engine"])() as session:
        return get_job(session, job_id)


def watch(lab, job_id: int, until, timeout: float = 60.0) -> list[tuple[str, float, str | None]]:
    """Poll the job's row every 5 ms until ``until(job)``; the (status, progress, message) seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = load(lab, job_id)
        seen.append((job.status.value, job.progress, job.message))
        if until(job):
            return seen
        time.sleep(0.005)
    raise AssertionError(f"job {job_id} never reached the awaited state; last {seen[-1]}")


def files_and_rows(lab) -> tuple[set[str], list[str]]:
    """Files under processed/ and the product rows' paths (a list: duplicates would show)."""
    data_dir = lab["data_dir"]
    files = {p.relative_to(data_dir).as_posix() for p in (data_dir / "processed").rglob("*") if p.is_file()}
    with session_factory(lab["engine"])() as session:
        rows = list(session.scalars(select(Product.path)))
    return files, rows


def assert_products_consistent(lab) -> None:
    files, rows = files_and_rows(lab)
    assert not [f for f in files if is_temp_name(Path(f).name)]
    assert len(rows) == len(set(rows))
    assert files == set(rows)


def test_postprocess_job_lifecycle_and_progress(lab):
    scene = lab["scenes"]["small"]
    job_id = new_job(lab, "postprocess", {"scene": scene})
    lab["runner"].submit(job_id)
    seen = watch(lab, job_id, lambda j: j.status in (JobStatus.SUCCEEDED, JobStatus.FAILED))
    job = load(lab, job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.progress == 1.0 and job.message == "done"
    assert job.worker in lab["runner"].live_workers()
    assert job.started_at <= job.finished_at
    assert job.result["scene"] == scene and job.result["status"] == "complete"
    assert job.result["made"] == {"calibration": 2, "flow": 1, "scene_colour": 1, "blurred": 5,
                                  "sharp": 5, "mask": 4}
    assert not job.result["failures"]
    assert seen[0] == ("queued", 0.0, None) or seen[0][0] == "running"
    progress = [p for status, p, m in seen if status == "running" and m]
    assert progress == sorted(progress)  # progress only grows
    assert any(0.0 < p < 1.0 for p in progress), seen
    assert_products_consistent(lab)


def test_named_failure_is_not_retried(lab):
    job_id = new_job(lab, "postprocess", {"scene": "no-such-scene"})
    lab["runner"].submit(job_id)
    job = lab["runner"].wait(job_id, timeout=60)
    assert job.status == JobStatus.FAILED and job.attempts == 1
    assert job.error == "SceneNotFoundError: no scene named 'no-such-scene' in the database"


def test_worker_killed_mid_job_is_retried_without_loss_or_duplicates(lab):
    runner, scene = lab["runner"], lab["scenes"]["larger"]
    pids = runner.client.run(os.getpid)
    job_id = new_job(lab, "postprocess", {"scene": scene})
    runner.submit(job_id)
    # Wait until the scene stage and a pair are stored, then hold SQLite's write lock so that
    # the job blocks at its next write (a product row or a progress report): it is mid-job.
    watch(lab, job_id, lambda j: j.status == JobStatus.RUNNING and j.progress >= 0.1)
    lock = sqlite3.connect(lab["db"], timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        job = load(lab, job_id)
        assert job.status == JobStatus.RUNNING and job.progress < 0.99, job.message
        os.kill(pids[job.worker], signal.SIGKILL)
        time.sleep(0.3)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    job = runner.wait(job_id, timeout=90)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2
    with session_factory(lab["engine"])() as session:
        kinds = Counter(session.scalars(select(Product.kind).join(Product.scene)
                                        .where(Product.scene.has(name=scene))))
    assert {k.value: n for k, n in kinds.items()} == {"flow": 1, "scene_colour": 1, "blurred": 11,
                                                      "sharp": 11, "mask": 10}
    assert_products_consistent(lab)
    assert len(runner.live_workers()) >= 1


def test_cancel_a_queued_job(lab):
    runner = lab["runner"]
    job_id = new_job(lab, "postprocess", {"scene": lab["scenes"]["small"]})
    assert runner.cancel(job_id).status == JobStatus.CANCELLED
    runner.submit(job_id)  # a cancelled job is never run
    time.sleep(0.5)
    job = load(lab, job_id)
    assert job.status == JobStatus.CANCELLED and job.attempts == 0 and job.finished_at is not None


def test_cancel_a_running_job(lab):
    runner = lab["runner"]
    params = {"alignment": {"warp_method": "lanczos4"}}  # new blurred images and masks to make
    job_id = new_job(lab, "postprocess", {"scene": lab["scenes"]["larger"], "params": params})
    runner.submit(job_id)
    watch(lab, job_id, lambda j: j.status == JobStatus.RUNNING)
    job = runner.cancel(job_id)
    assert job.cancel_requested
    job = runner.wait(job_id, timeout=60)
    assert job.status == JobStatus.CANCELLED and job.attempts == 1
    assert_products_consistent(lab)


def test_reprocess_fans_out_one_child_per_scene(lab):
    runner = lab["runner"]
    parent_id = new_job(lab, "reprocess", {"params": {"masks": {"var_threshold": 20.0}}})
    runner.submit(parent_id)
    parent = runner.wait(parent_id, timeout=120)
    assert parent.status == JobStatus.SUCCEEDED, parent.error
    with session_factory(lab["engine"])() as session:
        children = session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.id)).all()
    assert sorted(c.params["scene"] for c in children) == sorted(lab["scenes"].values())
    assert all(c.status == JobStatus.SUCCEEDED and c.attempts == 1 for c in children)
    assert all(c.result["made"] == {"mask": c.result["reused"]["blurred"] - 1} for c in children)
    outcome = {c["job_id"]: c["status"] for c in parent.result["children"]}
    assert outcome == {c.id: "succeeded" for c in children}
    assert parent.result["counts"] == {"succeeded": 2}
    assert_products_consistent(lab)
