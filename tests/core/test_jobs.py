"""Job records on SQLite and PostgreSQL: creation, claims, attempts, cancels, progress, orphans,
and one winner among concurrent claims; core.jobs imports nothing of the layers above core.
(What each kind takes is validated in api.jobs.params: tests/api/test_jobparams.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import session_factory
from core.jobs import (
    JobCancelled,
    JobNotFoundError,
    JobParamsError,
    JobStateError,
    cancel_finished,
    claim,
    create_job,
    fail_job,
    finish_job,
    get_job,
    list_jobs,
    report_progress,
    request_cancel,
    requeue_orphans,
)
from core.models import Job, JobKind, JobStatus


def new_job(engine, kind=JobKind.POSTPROCESS, params=None, **kw) -> int:
    kw.setdefault("max_attempts", 3)
    with session_factory(engine)() as session:
        job = create_job(session, kind, params if params is not None else {"scene": "car"}, **kw)
        session.commit()
        return job.id


def load(engine, job_id) -> Job:
    with session_factory(engine)() as session:
        return get_job(session, job_id)


REPO = Path(__file__).resolve().parents[2]


def test_core_jobs_imports_no_upper_layer():
    code = (
        "import sys, core.jobs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'postprocess', 'deblur', 'acquisition', 'api', 'hardware_sim'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "", f"core.jobs pulled in: {out.stdout.strip()}"


def test_create_stores_params_as_given_and_lists_newest_first(engine):
    first = new_job(engine)
    params = {"params": {"masks": {"var_threshold": 20.0}}, "scenes": None}
    second = new_job(engine, "reprocess", params, max_attempts=5)
    job = load(engine, second)
    assert job.status == JobStatus.QUEUED and job.attempts == 0 and job.progress == 0.0
    assert job.params == params and job.max_attempts == 5 and job.kind == JobKind.REPROCESS
    with session_factory(engine)() as session:
        assert [j.id for j in list_jobs(session)] == [second, first]
        assert [j.id for j in list_jobs(session, kind="postprocess")] == [first]
        assert [j.id for j in list_jobs(session, status=JobStatus.QUEUED, limit=1)] == [second]
        assert list_jobs(session, parent_id=first) == []


@pytest.mark.parametrize(("kind", "params", "max_attempts", "names"), [
    ("train", {}, 3, "unknown job kind 'train'"),
    ("postprocess", None, 3, "params: expected an object, got NoneType"),
    ("postprocess", ["scene"], 3, "params: expected an object, got list"),
    ("postprocess", {"scene": "a"}, 0, "max_attempts must be an integer of at least 1, got 0"),
    ("postprocess", {"scene": "a"}, None, "max_attempts must be an integer of at least 1, got None"),
])
def test_bad_records_are_refused(engine, kind, params, max_attempts, names):
    with session_factory(engine)() as session, pytest.raises(JobParamsError, match=names):
        create_job(session, kind, params, max_attempts=max_attempts)


def test_max_attempts_is_required(engine):
    with session_factory(engine)() as session, pytest.raises(TypeError, match="max_attempts"):
        create_job(session, "postprocess", {"scene": "a"})


def test_unknown_job(engine):
    with session_factory(engine)() as session, pytest.raises(JobNotFoundError, match="42"):
        get_job(session, 42)


def test_claim_progress_finish(engine):
    job_id = new_job(engine)
    job = claim(engine, job_id, "w1")
    assert job.status == JobStatus.RUNNING and job.attempts == 1 and job.worker == "w1"
    assert job.started_at is not None
    assert claim(engine, job_id, "w2") is None  # running on w1: not taken
    assert claim(engine, job_id, "w2", live_workers={"w1", "w2"}) is None  # w1 alive
    report_progress(engine, job_id, 1.7, "almost")
    assert load(engine, job_id).progress == 1.0
    report_progress(engine, job_id, -3)
    job = load(engine, job_id)
    assert job.progress == 0.0 and job.message == "almost"
    report_progress(engine, job_id, 0.5, "half")
    finish_job(engine, job_id, {"made": 3})
    job = load(engine, job_id)
    assert (job.status, job.result, job.progress, job.finished_at is not None) == (
        JobStatus.SUCCEEDED, {"made": 3}, 1.0, True)
    assert claim(engine, job_id, "w1") is None
    with pytest.raises(JobStateError, match="succeeded"):
        finish_job(engine, job_id, {})


def test_takeover_of_a_job_whose_worker_died(engine):
    job_id = new_job(engine)
    claim(engine, job_id, "dead")
    job = claim(engine, job_id, "w2", live_workers={"w2"})
    assert job.attempts == 2 and job.worker == "w2"


def test_retryable_failures_requeue_until_attempts_run_out(engine):
    job_id = new_job(engine, max_attempts=2)
    claim(engine, job_id, "w")
    assert fail_job(engine, job_id, "OSError: disk", retryable=True) == JobStatus.QUEUED
    job = claim(engine, job_id, "w")
    assert job.attempts == 2 and job.error is None
    assert fail_job(engine, job_id, "OSError: disk again", retryable=True) == JobStatus.FAILED
    job = load(engine, job_id)
    assert job.status == JobStatus.FAILED and job.error == "OSError: disk again"


def test_claim_gives_up_after_max_attempts(engine):
    job_id = new_job(engine, max_attempts=1)
    claim(engine, job_id, "dead")
    assert requeue_orphans(engine, {"w"}) == [job_id]
    assert claim(engine, job_id, "w") is None
    job = load(engine, job_id)
    assert job.status == JobStatus.FAILED and job.error == "gave up after 1 attempts"


def test_named_failure_is_final(engine):
    job_id = new_job(engine)
    claim(engine, job_id, "w")
    assert fail_job(engine, job_id, "SceneNotFoundError: no scene", retryable=False) == JobStatus.FAILED
    assert claim(engine, job_id, "w") is None
    assert load(engine, job_id).attempts == 1


def test_cancel_states(engine):
    queued = new_job(engine)
    running = new_job(engine)
    claim(engine, running, "w")
    with session_factory(engine)() as session:
        assert request_cancel(session, queued).status == JobStatus.CANCELLED
        job = request_cancel(session, running)
        assert job.status == JobStatus.RUNNING and job.cancel_requested
        session.commit()
    assert load(engine, queued).finished_at is not None
    assert claim(engine, queued, "w") is None
    with pytest.raises(JobCancelled):
        report_progress(engine, running, 0.5, "still going")
    cancel_finished(engine, running)
    assert load(engine, running).status == JobStatus.CANCELLED
    with session_factory(engine)() as session:
        with pytest.raises(JobStateError, match="cancelled"):
            request_cancel(session, running)
        with pytest.raises(JobNotFoundError):
            request_cancel(session, 999)


def test_requeue_orphans(engine):
    a, b, c = new_job(engine), new_job(engine), new_job(engine)
    claim(engine, a, "lost")
    claim(engine, b, "alive")
    claim(engine, c, "elsewhere")
    assert requeue_orphans(engine, {"alive"}, among={"lost"}) == [a]
    assert load(engine, a).status == JobStatus.QUEUED and load(engine, a).worker is None
    assert load(engine, c).status == JobStatus.RUNNING
    assert requeue_orphans(engine, {"alive"}) == [c]
    assert load(engine, b).status == JobStatus.RUNNING
    assert claim(engine, a, "alive").attempts == 2


def test_children_link_to_their_parent(engine):
    parent = new_job(engine, "reprocess", {})
    child = new_job(engine, parent_id=parent)
    with session_factory(engine)() as session:
        assert [j.id for j in list_jobs(session, parent_id=parent)] == [child]


@pytest.mark.postgres
def test_concurrent_claims_have_exactly_one_winner(postgres_url):
    from core import migrate
    from core.db import make_engine

    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        for _ in range(10):
            job_id = new_job(engine)
            barrier = threading.Barrier(2)
            won: list[Job | None] = []

            def race(name: str, job_id: int = job_id, barrier: threading.Barrier = barrier,
                     won: list = won) -> None:
                barrier.wait()
                won.append(claim(engine, job_id, name))

            threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sum(j is not None for j in won) == 1
            assert load(engine, job_id).attempts == 1
        with session_factory(engine)() as session:
            assert session.scalar(select(Job.id).where(Job.attempts > 1)) is None
    finally:
        engine.dispose()
