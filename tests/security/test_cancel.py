"""Issue #13 item 4, cancel races: one cancel path, atomic against the worker's claim, and a run
that never ends ``succeeded`` once a cancel was accepted (its partial products removed).

Part 1 works on the records (``core.jobs``) on SQLite and PostgreSQL: a claim that lands between
a cancel's read and its write, the same race on two threads, a cancel after the last progress
point, the fan-out's children. Part 2 goes through the HTTP route of a live server whose job
runner has one worker thread (SQLite and PostgreSQL): queued cancels (25 tries), cancels racing
the start (25), running deblur jobs cancelled at random points (10), a cancel after the last
image, concurrent cancel requests, a finished job, a reprocess parent and its children. Each
race loop records every try that went wrong and reports how many did, bounded in time by the
waits' timeouts.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, event, make_url, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from core.db import make_engine, session_factory
from core.jobs import (
    JobCancelled,
    JobStateError,
    cancel_finished,
    claim,
    create_job,
    finish_job,
    get_job,
    report_progress,
    request_cancel,
    requeue_orphans,
)
from core.models import Job, JobKind, JobStatus

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
"""Longest wait for any one job state in these tests (s)."""


def new_job(engine, kind: JobKind | str = JobKind.POSTPROCESS, params: dict | None = None, **kw) -> int:
    kw.setdefault("max_attempts", 3)
    with session_factory(engine)() as session:
        job = create_job(session, kind, params if params is not None else {"scene": "car"}, **kw)
        session.commit()
        return job.id


def load(engine, job_id: int) -> Job:
    with session_factory(engine)() as session:
        return get_job(session, job_id)


# =========================================================================== 1. the records


def test_a_claim_between_the_cancels_read_and_write_does_not_become_cancelled_before_start(engine):
    """The worker claims the job just before the cancel writes (injected deterministically at
    the cancel's first UPDATE): the job is running with ``cancel_requested``, never "cancelled
    before it started" with ``started_at`` set."""
    problems = []
    for _ in range(10):
        job_id = new_job(engine)
        fired: list[Any] = []

        def claim_first(conn, cursor, statement, parameters, context, executemany,
                        job_id: int = job_id, fired: list = fired) -> None:
            if not fired and statement.lstrip().upper().startswith("UPDATE JOBS"):
                fired.append("claiming")  # the claim's own UPDATE passes through here too
                fired[0] = claim(engine, job_id, "w")

        event.listen(engine, "before_cursor_execute", claim_first)
        try:
            with session_factory(engine)() as session:
                answer = request_cancel(session, job_id)
                answered = (answer.status, answer.cancel_requested)
                session.commit()
        finally:
            event.remove(engine, "before_cursor_execute", claim_first)
        job = load(engine, job_id)
        if fired[0] is None or answered != (JobStatus.RUNNING, True) or job.status != JobStatus.RUNNING \
                or not job.cancel_requested or job.started_at is None:
            problems.append((job_id, answered, job.status.value, job.message, job.started_at))
        cancel_finished(engine, job_id)
    assert not problems, f"{len(problems)} of 10 tries went wrong: {problems}"


def test_cancel_racing_the_claim_on_two_threads(engine):
    """25 tries: either the cancel wins (cancelled, never started, the claim runs nothing) or
    the claim wins (running with the cancel requested); nothing in between."""
    problems = []
    for _ in range(25):
        job_id = new_job(engine)
        barrier = threading.Barrier(2, timeout=WAIT_S)
        out: dict[str, Any] = {}

        def do_claim(job_id: int = job_id, barrier=barrier, out=out) -> None:
            barrier.wait()
            out["claim"] = claim(engine, job_id, "w")

        def do_cancel(job_id: int = job_id, barrier=barrier, out=out) -> None:
            barrier.wait()
            try:
                with session_factory(engine)() as session:
                    job = request_cancel(session, job_id)
                    out["cancel"] = job.status
                    session.commit()
            except Exception as exc:  # noqa: BLE001 - recorded as a problem
                out["cancel"] = exc

        threads = [threading.Thread(target=do_claim), threading.Thread(target=do_cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        job = load(engine, job_id)
        if out.get("cancel") == JobStatus.CANCELLED:
            ok = (out["claim"] is None and job.status == JobStatus.CANCELLED and job.started_at is None
                  and job.attempts == 0)
        elif out.get("cancel") == JobStatus.RUNNING:
            ok = out["claim"] is not None and job.status == JobStatus.RUNNING and job.cancel_requested
        else:
            ok = False
        if not ok:
            problems.append((job_id, out, job.status.value, job.started_at, job.message))
        cancel_finished(engine, job_id)
    assert not problems, f"{len(problems)} of 25 tries went wrong: {problems}"


def test_a_cancel_after_the_last_progress_point_never_succeeds(engine):
    job_id = new_job(engine)
    claim(engine, job_id, "w")
    report_progress(engine, job_id, 0.9, "last step")
    with session_factory(engine)() as session:
        assert request_cancel(session, job_id).cancel_requested
        session.commit()
    with pytest.raises(JobCancelled):
        finish_job(engine, job_id, {"made": 1})
    job = load(engine, job_id)
    assert job.status == JobStatus.RUNNING and job.result is None  # the caller removes, then:
    cancel_finished(engine, job_id)
    job = load(engine, job_id)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    with session_factory(engine)() as session, pytest.raises(JobStateError, match="already ended"):
        request_cancel(session, job_id)
    with pytest.raises(JobCancelled):
        finish_job(engine, job_id, {})
    assert load(engine, job_id).status == JobStatus.CANCELLED


def test_a_second_claim_leaves_a_cancel_requested_job_to_its_live_worker(engine):
    """Another task of the job (a Dask retry) must not mark it cancelled while its worker still
    runs it: the worker stops at its next progress point and removes its partial products."""
    job_id = new_job(engine)
    claim(engine, job_id, "w1")
    with session_factory(engine)() as session:
        request_cancel(session, job_id)
        session.commit()
    assert claim(engine, job_id, "w2") is None
    assert claim(engine, job_id, "w2", live_workers={"w1", "w2"}) is None
    assert load(engine, job_id).status == JobStatus.RUNNING
    assert claim(engine, job_id, "w2", live_workers={"w2"}) is None  # w1 died: nothing to stop
    job = load(engine, job_id)
    assert job.status == JobStatus.CANCELLED and job.attempts == 1


def test_an_orphan_with_a_cancel_request_is_cancelled_not_requeued(engine):
    job_id = new_job(engine)
    claim(engine, job_id, "lost")
    with session_factory(engine)() as session:
        request_cancel(session, job_id)
        session.commit()
    assert requeue_orphans(engine, {"alive"}) == []
    assert load(engine, job_id).status == JobStatus.CANCELLED


def test_cancelling_a_parent_cancels_its_children(engine):
    parent = new_job(engine, JobKind.REPROCESS, {})
    claim(engine, parent, "w")
    queued = new_job(engine, parent_id=parent)
    running = new_job(engine, parent_id=parent)
    done = new_job(engine, parent_id=parent)
    claim(engine, running, "w")
    claim(engine, done, "w")
    finish_job(engine, done, {})
    with session_factory(engine)() as session:
        job = request_cancel(session, parent)
        assert job.status == JobStatus.RUNNING and job.cancel_requested
        session.commit()
    assert load(engine, queued).status == JobStatus.CANCELLED
    assert load(engine, queued).started_at is None
    assert load(engine, running).status == JobStatus.RUNNING and load(engine, running).cancel_requested
    assert load(engine, done).status == JobStatus.SUCCEEDED and not load(engine, done).cancel_requested
    queued_parent = new_job(engine, JobKind.REPROCESS, {})
    child = new_job(engine, parent_id=queued_parent)  # from an earlier attempt of the parent
    with session_factory(engine)() as session:
        assert request_cancel(session, queued_parent).status == JobStatus.CANCELLED
        session.commit()
    assert load(engine, child).status == JobStatus.CANCELLED


def test_what_a_cancelled_run_removes_and_keeps(engine, tmp_path):
    """``_discard``: the files a run wrote and the folders it made go, other files stay; a
    postprocess run's processing-run row becomes interrupted (its products are kept); a
    finished export folder (``export.json``) goes, anything else named in the result stays."""
    from api.jobs.context import JobContext
    from api.jobs.worker import _discard
    from core.models import CFAPattern, ProcessingRun, RigRecord, RunStatus, Scene
    from core.settings import Settings

    data = tmp_path / "data"
    (data / "deblur/mine").mkdir(parents=True)
    (data / "deblur/mine/keep.png").write_bytes(b"other")
    settings = Settings(data_dir=data, database_url=str(engine.url))

    def context(kind, params) -> JobContext:
        job_id = new_job(engine, kind, params)
        return JobContext(claim(engine, job_id, "w"), engine, settings, str(engine.url), {})

    ctx = context(JobKind.DEBLUR, {"inputs": ["x.png"]})
    for folder in ("deblur/mine", "deblur/mine/sub/deeper", f"deblur/job-{ctx.job.id}"):
        ctx.will_write_in(data / folder)
        (data / folder).mkdir(parents=True, exist_ok=True)
        (data / folder / "x_deblurred.png").write_bytes(b"mine")
        ctx.written.append(data / folder / "x_deblurred.png")
    removed = _discard(ctx, None)
    assert sorted(removed) == sorted(f"{f}/x_deblurred.png" for f in (
        "deblur/mine", "deblur/mine/sub/deeper", f"deblur/job-{ctx.job.id}"))
    assert sorted(q.relative_to(data).as_posix() for q in data.rglob("*")) == [
        "deblur", "deblur/mine", "deblur/mine/keep.png"]

    with session_factory(engine)() as session:
        rig = RigRecord(name="twin", pixel_pitch_um=9.0, focal_length_mm=50, nd_filters=[], cfa_pattern=CFAPattern("RGGB"),
                  bit_depth=12, sensor_width_px=48, sensor_height_px=32)
        session.add(Scene(name="car", rig=rig))
        session.commit()
    ctx = context(JobKind.POSTPROCESS, {"scene": "car"})
    with session_factory(engine)() as session:
        scene_id = session.scalar(select(Scene.id))
        session.add(ProcessingRun(scene_id=scene_id, params_hash="h", pipeline_version="t",
                                  status=RunStatus.FAILED, error="scene: JobCancelled: job 1: cancel requested"))
        session.commit()
    assert _discard(ctx, None) == []
    with session_factory(engine)() as session:
        run = session.scalar(select(ProcessingRun))
        assert (run.status, run.error) == (RunStatus.INTERRUPTED, f"cancelled (job {ctx.job.id})")

    ctx = context(JobKind.EXPORT, {"out": "exports/one", "test_scenes": []})
    (data / "exports/one").mkdir(parents=True)
    (data / "exports/one/export.json").write_text("{}")
    (data / "exports/notmine").mkdir(parents=True)
    assert _discard(ctx, None) == [] and (data / "exports/one").is_dir()  # mid-run: nothing there
    assert _discard(ctx, {"out": "exports/notmine"}) == [] and (data / "exports/notmine").is_dir()
    assert _discard(ctx, {"out": "exports/one"}) == ["exports/one"]
    assert not (data / "exports/one").exists()


# =========================================================================== 2. the route


@dataclass
class Lab:
    """A live server with a one-thread job runner, its engine, data dir and operator token."""

    url: str
    engine: Any
    runner: Any
    data_dir: Path
    token: str
    images: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=WAIT_S)


def _database(request: pytest.FixtureRequest, root: Path) -> tuple[str, Any]:
    """A SQLite file URL, or a fresh PostgreSQL schema (and a function dropping it)."""
    if request.param == "sqlite":
        return f"sqlite:///{root / 'db' / 'reloblur.db'}", None
    base = os.environ.get("RELOBLUR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    admin = create_engine(base, poolclass=NullPool)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server: {exc}")

    def drop() -> None:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from api.http import auth
    from api.http.app import create_app
    from api.http.server import ServerThread
    from api.jobs.runner import JobRunner
    from core import migrate
    from core.settings import Settings
    from deblur.infer import random_init_checkpoint

    root = tmp_path_factory.mktemp("cancel")
    url, drop = _database(request, root)
    migrate.upgrade(url)
    engine = make_engine(url)
    data_dir = root / "data"
    (data_dir / "inbox").mkdir(parents=True)
    images = []
    for i in range(4):
        img = np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)
        cv2.imwrite(str(data_dir / f"inbox/img{i}.png"), img)
        images.append(f"inbox/img{i}.png")
    random_init_checkpoint("lbag", data_dir / "lbag.pt", seed=0, num_res=1)
    settings = Settings(data_dir=data_dir, database_url=url, rigs_dir=REPO / "configs" / "rigs",
                        device="cpu", dask_workers=1, dask_threads_per_worker=1, job_max_attempts=2)
    with session_factory(engine)() as session:
        _, token = auth.create_token(session, "cancel-operator", "operator")
        session.commit()
    runner = JobRunner(settings, n_workers=1, processes=False).start()
    try:
        app = create_app(settings, runner=runner, start_runner=False)
        with ServerThread(app) as base:
            yield Lab(base, engine, runner, data_dir, token, images)
    finally:
        runner.close()
        engine.dispose()
        if drop is not None:
            drop()


def wait_for(lab: Lab, job_id: int, until, timeout: float = WAIT_S) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = load(lab.engine, job_id)
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never reached the awaited state: {job.status.value}, "
                                 f"{job.progress:.2f} {job.message!r}")
        time.sleep(0.01)


def ended(job: Job) -> bool:
    return job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def submit_deblur(c: httpx.Client, lab: Lab, inputs: list[str] | None = None, **extra) -> int:
    body = {"inputs": inputs or lab.images[:1], "checkpoint": "lbag.pt", **extra}
    r = c.post("/api/v1/jobs/deblur", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def cancel(c: httpx.Client, job_id: int) -> httpx.Response:
    return c.post(f"/api/v1/jobs/{job_id}/cancel")


def outputs(lab: Lab, job_id: int, out: str | None = None) -> list[str]:
    folder = lab.data_dir / (out or f"deblur/job-{job_id}")
    if not folder.exists():
        return []
    return sorted(p.relative_to(lab.data_dir).as_posix() for p in folder.rglob("*"))


@contextmanager
def worker_held(lab: Lab) -> Iterator[None]:
    """The runner's only worker thread busy with a test job (a lightbox job whose handler
    waits), so that the jobs submitted meanwhile stay queued; released on exit."""
    from api.jobs.handlers import HANDLERS

    release = threading.Event()

    def hold(ctx) -> dict:
        release.wait(WAIT_S)
        return {"held": True}

    with mock.patch.dict(HANDLERS, {JobKind.LIGHTBOX: hold}):
        holder = new_job(lab.engine, JobKind.LIGHTBOX, {"rig": "twin"})
        lab.runner.submit(holder)
        wait_for(lab, holder, lambda j: j.status == JobStatus.RUNNING)
        try:
            yield
        finally:
            release.set()
            assert lab.runner.wait(holder, timeout=WAIT_S).status == JobStatus.SUCCEEDED


def settle(lab: Lab) -> None:
    """Wait until the worker has taken every task submitted before (a last quick job ran)."""
    from api.jobs.handlers import HANDLERS

    with mock.patch.dict(HANDLERS, {JobKind.LIGHTBOX: lambda ctx: {}}):
        last = new_job(lab.engine, JobKind.LIGHTBOX, {"rig": "twin"})
        lab.runner.submit(last)
        assert lab.runner.wait(last, timeout=WAIT_S).status == JobStatus.SUCCEEDED


def test_cancel_a_queued_job_25_times(lab):
    """Every answer 200 with the job cancelled and never started; its Dask task cancelled;
    nothing runs once the worker is free."""
    problems = []
    ids = []
    with lab.client() as c, worker_held(lab):
        for _ in range(25):
            job_id = submit_deblur(c, lab)
            ids.append(job_id)
            r = cancel(c, job_id)
            body = r.json()
            if r.status_code != 200 or body.get("status") != "cancelled" or body.get("started_at") is not None \
                    or not body.get("cancel_requested"):
                problems.append((job_id, r.status_code, body))
            future = lab.runner._futures.get(job_id)
            if future is None or future.status != "cancelled":
                problems.append((job_id, "dask future", None if future is None else future.status))
    settle(lab)
    for job_id in ids:
        job = load(lab.engine, job_id)
        if job.status != JobStatus.CANCELLED or job.started_at is not None or job.attempts or outputs(lab, job_id):
            problems.append((job_id, "final", job.status.value, job.started_at, job.attempts))
    assert not problems, f"{len(problems)} problems in 25 tries: {problems}"


def test_cancel_racing_the_start_25_times(lab):
    """Submit and cancel at once, the worker idle: queued (cancelled, never started) or running
    (cancel requested, ends cancelled); never 409 for a job that had not ended, never
    "cancelled before it started" with ``started_at`` set, never succeeded after a 200."""
    problems = []
    answers: Counter = Counter()
    with lab.client() as c:
        for _ in range(25):
            job_id = submit_deblur(c, lab)
            r = cancel(c, job_id)
            body = r.json()
            job = wait_for(lab, job_id, ended)
            answers[(r.status_code, body.get("status"))] += 1
            if r.status_code == 200 and body["status"] == "cancelled":
                ok = body["started_at"] is None and job.started_at is None and job.attempts == 0
            elif r.status_code == 200 and body["status"] == "running":
                ok = body["cancel_requested"] and job.status == JobStatus.CANCELLED \
                     and job.message != "cancelled before it started"
            elif r.status_code == 409:  # only for a job that had already succeeded
                ok = job.status == JobStatus.SUCCEEDED and not job.cancel_requested \
                     and "already ended (succeeded)" in body["detail"]
            else:
                ok = False
            if r.status_code == 200 and job.status == JobStatus.SUCCEEDED:
                ok = False  # an accepted cancel
            if job.status == JobStatus.CANCELLED and (outputs(lab, job_id) or (
                    job.started_at is not None and job.message == "cancelled before it started")):
                ok = False
            if not ok:
                problems.append((job_id, r.status_code, body.get("status"), job.status.value,
                                 job.started_at, job.message, outputs(lab, job_id)))
    assert not problems, f"{len(problems)} of 25 tries went wrong ({dict(answers)}): {problems}"


def test_cancel_running_deblur_jobs_at_random_points(lab):
    """10 deblur jobs of 4 images, each cancelled at a random moment of its run (up to 80 % of
    how long an uncancelled one ran): after a 200 the job ends cancelled, its output folder
    removed; a 409 only for a job that had succeeded."""
    rng = random.Random(13)
    problems = []
    answers: Counter = Counter()
    with lab.client() as c:
        timed = wait_for(lab, submit_deblur(c, lab, lab.images), ended)
        assert timed.status == JobStatus.SUCCEEDED, timed.error
        run_s = (timed.finished_at - timed.started_at).total_seconds()
        for _ in range(10):
            job_id = submit_deblur(c, lab, lab.images)
            wait_for(lab, job_id, lambda j: j.status != JobStatus.QUEUED)
            time.sleep(rng.uniform(0.0, 0.8 * run_s))
            r = cancel(c, job_id)
            body = r.json()
            job = wait_for(lab, job_id, ended)
            answers[(r.status_code, job.status.value)] += 1
            if r.status_code == 200:
                ok = body["status"] == "running" and body["cancel_requested"] \
                     and job.status == JobStatus.CANCELLED and not outputs(lab, job_id)
            elif r.status_code == 409:
                ok = job.status == JobStatus.SUCCEEDED and not job.cancel_requested
            else:
                ok = False
            if not ok:
                problems.append((job_id, r.status_code, body.get("status"), job.status.value,
                                 job.message, outputs(lab, job_id)))
    assert not problems, f"{len(problems)} of 10 tries went wrong ({dict(answers)}): {problems}"
    assert answers[(200, "cancelled")] >= 3, f"too few cancels landed mid-run ({run_s:.2f} s a run): {dict(answers)}"


def test_a_cancel_during_the_last_image_removes_what_the_run_wrote(lab):
    """The cancel arrives after the last progress point (while the last image is deblurred):
    the job ends cancelled, not succeeded, and removes the files it wrote: the whole default
    folder ``deblur/job-<id>``, or only its own files in a folder given as ``out``."""
    import deblur.infer as infer

    real = infer.deblur_image  # what deblur.services.deblur runs per image, after its progress point
    (lab.data_dir / "deblur/mine").mkdir(parents=True, exist_ok=True)
    (lab.data_dir / "deblur/mine/keep.txt").write_text("not this job's")
    problems = []
    with lab.client() as c:
        for out in (None, "deblur/mine"):
            reached, go_on = threading.Event(), threading.Event()
            calls: list = []

            def last_image_waits(*a, reached=reached, go_on=go_on, calls=calls, **kw):
                result = real(*a, **kw)
                calls.append(1)
                if len(calls) == 2:  # the last image: deblurred, its files not yet written
                    reached.set()
                    go_on.wait(WAIT_S)
                return result

            with mock.patch.object(infer, "deblur_image", last_image_waits):
                job_id = submit_deblur(c, lab, lab.images[:2], **({"out": out} if out else {}))
                assert reached.wait(WAIT_S), load(lab.engine, job_id).message
                r = cancel(c, job_id)
                go_on.set()
                job = wait_for(lab, job_id, ended)
            left = outputs(lab, job_id, out)
            if r.status_code != 200 or r.json()["status"] != "running" or job.status != JobStatus.CANCELLED \
                    or left != ([] if out is None else ["deblur/mine/keep.txt"]):
                problems.append((out, r.status_code, r.json(), job.status.value, job.message, left))
    assert not problems, problems


def test_concurrent_cancels_of_one_job(lab):
    """6 requests at once, 10 queued jobs: exactly one 200 (cancelled), the others 409; then 3
    running jobs: every answer 200 or 409, at least one 200, the job ends cancelled; no 500."""
    problems = []

    def burst(job_id: int, n: int = 6) -> list[tuple[int, str | None]]:
        barrier = threading.Barrier(n, timeout=WAIT_S)
        got: list[tuple[int, str | None]] = []

        def one() -> None:
            with lab.client() as c:
                barrier.wait()
                r = cancel(c, job_id)
                got.append((r.status_code, r.json().get("status")))

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        return got

    with lab.client() as c:
        with worker_held(lab):
            for _ in range(10):
                job_id = submit_deblur(c, lab)
                got = burst(job_id)
                codes = Counter(code for code, _ in got)
                if codes != {200: 1, 409: 5} or (200, "cancelled") not in got:
                    problems.append(("queued", job_id, got))
        settle(lab)
        for _ in range(3):
            job_id = submit_deblur(c, lab, lab.images[:3])
            wait_for(lab, job_id, lambda j: j.status == JobStatus.RUNNING and j.progress > 0)
            got = burst(job_id)
            job = wait_for(lab, job_id, ended)
            codes = Counter(code for code, _ in got)
            if set(codes) - {200, 409} or not codes[200] or job.status != JobStatus.CANCELLED \
                    or outputs(lab, job_id):
                problems.append(("running", job_id, got, job.status.value))
    assert not problems, f"{len(problems)} of 13 bursts went wrong: {problems}"


def test_cancel_a_finished_job_is_409(lab):
    with lab.client() as c:
        job_id = submit_deblur(c, lab)
        job = wait_for(lab, job_id, ended)
        assert job.status == JobStatus.SUCCEEDED, job.error
        r = cancel(c, job_id)
        assert r.status_code == 409 and "already ended (succeeded)" in r.json()["detail"]
        assert load(lab.engine, job_id).status == JobStatus.SUCCEEDED
        assert cancel(c, 10**9).status_code == 404


def test_cancelling_a_reprocess_parent_cancels_its_children(lab):
    """A fan-out whose (test-only, slow) children report progress every 50 ms: the parent's
    cancel stops the running child at its next progress point and the queued one never starts."""
    from api.jobs.handlers import HANDLERS

    def slow_scene(ctx) -> dict:
        for i in range(400):
            ctx.progress(i / 400, f"step {i}")
            time.sleep(0.05)
        return {"scene": ctx.job.params["scene"]}

    with mock.patch.dict(HANDLERS, {JobKind.POSTPROCESS: slow_scene}), lab.client() as c:
        r = c.post("/api/v1/jobs/reprocess", json={"scenes": ["a", "b"]})
        assert r.status_code == 202, r.text
        parent = r.json()["id"]
        deadline = time.monotonic() + WAIT_S
        while True:
            with session_factory(lab.engine)() as session:
                children = session.scalars(select(Job).where(Job.parent_id == parent)).all()
            if any(ch.status == JobStatus.RUNNING and ch.progress > 0 for ch in children):
                break
            assert time.monotonic() < deadline, [(ch.id, ch.status.value) for ch in children]
            time.sleep(0.02)
        r = cancel(c, parent)
        assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["cancel_requested"]
        job = wait_for(lab, parent, ended)
        assert job.status == JobStatus.CANCELLED
        kids = [wait_for(lab, ch.id, ended) for ch in children]
        assert [k.status for k in kids] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
        assert sorted(k.started_at is None for k in kids) == [False, True]
