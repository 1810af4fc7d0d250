"""Job records: what background work was asked for, its state, progress and outcome.

Pure SQLAlchemy; the execution (Dask distributed) lives in :mod:`api.jobs.runner` and what each
kind takes (its parameter model) in :mod:`api.jobs.params`: the records store parameters their
caller has validated, so that core imports nothing of the layers above it. A job moves
``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``; a running job whose
worker died goes back to ``queued`` (:func:`requeue_orphans`) while attempts remain.

Cancels. :func:`request_cancel` is the one way to ask: a queued job becomes ``cancelled`` at once
(it never starts), a running one gets ``cancel_requested`` and stops at its next progress report
(:func:`report_progress` raises JobCancelled) or, at the latest, when it would succeed
(:func:`finish_job` raises JobCancelled instead of recording success); its worker then removes
the run's partial products and calls :func:`cancel_finished`. Every step is a conditional
``UPDATE`` (``WHERE status = …`` and ``cancel_requested``), so a cancel racing a claim or a
finish has one outcome: a job is never started once cancelled, never marked "cancelled before it
started" once claimed, and never ``succeeded`` once a cancel was accepted. A cancel also reaches
the job's unfinished children (a fan-out).

Transactions. :func:`create_job`, :func:`get_job`, :func:`list_jobs` and :func:`request_cancel`
work in the caller's session (the caller commits). The functions that take an ``engine``
(:func:`claim`, :func:`report_progress`, :func:`finish_job`, :func:`fail_job`,
:func:`cancel_finished`, :func:`requeue_orphans`) are called by workers and run their own short
transaction, each a single conditional ``UPDATE`` so that they are safe under concurrency on
PostgreSQL (row locks) and SQLite (one writer at a time).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, case, select, update
from sqlalchemy.orm import Session

from core.errors import UserError
from core.models import Job, JobKind, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
"""States of a job that has not ended."""

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
"""States a job never leaves."""

MAX_MESSAGE_CHARS = 2000
"""Longest progress message or error kept in the table (longer ones are cut)."""


class JobError(UserError, ValueError):
    """Base of the job records' named errors."""


class JobNotFoundError(JobError):
    """No job with that id."""

    http_status = 404


class JobStateError(JobError):
    """The job's state does not allow the operation (e.g. cancelling a finished job)."""

    http_status = 409


class JobParamsError(JobError):
    """The parameters do not fit the job's kind; the message names the field and why.

    Raised by :func:`create_job` (unknown kind, params not an object, bad ``max_attempts``) and
    by the per-kind validation in :mod:`api.jobs.params`."""

    http_status = 422


class JobCancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a running job when a cancel was requested: by :func:`report_progress` (at a
    progress point) and by :func:`finish_job` (a cancel that arrived after the last one)."""


# --------------------------------------------------------------------------- records


def create_job(session: Session, kind: JobKind | str, params: dict[str, Any], *,
               created_by: int | None = None, parent_id: int | None = None,
               max_attempts: int) -> Job:
    """A queued job with ``params`` as given; flushed, not committed.

    The caller validates ``params`` for the kind first (the API: :mod:`api.jobs.params`, which
    knows the pipeline's parameters and the rig files); here only the record's shape is
    checked: JobParamsError for an unknown kind, params that are not an object, or
    ``max_attempts`` below 1.
    """
    try:
        kind = JobKind(kind)
    except ValueError:
        raise JobParamsError(f"kind: unknown job kind {kind!r}; one of "
                             f"{', '.join(k.value for k in JobKind)}") from None
    if not isinstance(params, dict):
        raise JobParamsError(f"params: expected an object, got {type(params).__name__}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise JobParamsError(f"max_attempts must be an integer of at least 1, got {max_attempts!r}")
    job = Job(kind=kind, params=params, status=JobStatus.QUEUED, progress=0.0, attempts=0,
              cancel_requested=False, created_by=created_by, parent_id=parent_id,
              max_attempts=max_attempts)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job of that id, or JobNotFoundError."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    return job


def list_jobs(session: Session, *, status: JobStatus | str | None = None,
              kind: JobKind | str | None = None, parent_id: int | None = None,
              limit: int = 100, offset: int = 0) -> list[Job]:
    """Jobs, newest first, optionally of one status, kind or parent."""
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == JobStatus(status))
    if kind is not None:
        query = query.where(Job.kind == JobKind(kind))
    if parent_id is not None:
        query = query.where(Job.parent_id == parent_id)
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query).all())


def request_cancel(session: Session, job_id: int) -> Job:
    """Cancel a job; returns it as it now is. JobStateError ("already ended") for a job that had
    ended before this call, JobNotFoundError for an unknown id.

    A queued job is cancelled at once with ``UPDATE … WHERE status = 'queued'``: a job a worker
    claimed meanwhile does not match (it is not marked cancelled with ``started_at`` set) and
    gets the running job's treatment instead, ``cancel_requested`` set with ``UPDATE … WHERE
    status = 'running'``; its handler stops at its next progress report, and it cannot succeed
    (:func:`finish_job`). Asking again while it runs answers the same (idempotent). The job's
    unfinished descendants (a fan-out's children) are cancelled the same way, in the same
    transaction. Works in the caller's session, which commits (on PostgreSQL the row stays
    locked until then, so a concurrent claim, finish or cancel waits and then sees the cancel).
    """
    conn = session.connection()
    for _ in range(3):  # a job requeued between the two UPDATEs (running → queued) is tried again
        now = utcnow()
        if _cancel_rows(conn, Job.id == job_id, now):
            _cancel_descendants(conn, [job_id], now)
            return get_job(session, job_id)
        job = get_job(session, job_id)
        if job.status in FINISHED:
            raise JobStateError(f"job {job_id} has already ended ({job.status.value}); "
                                "only queued or running jobs can be cancelled")
    raise JobStateError(f"job {job_id} keeps changing state ({job.status.value}); ask again")


def _cancel_rows(conn: Any, which: Any, now: Any, message: str = "cancelled before it started") -> int:
    """Queued rows matching ``which`` → cancelled, running ones → ``cancel_requested``: two
    conditional UPDATEs on ``conn``; the number of rows either matched."""
    queued = conn.execute(
        update(Job).where(which, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now,
                message=case((Job.attempts == 0, message), else_="cancelled while waiting for a retry")))
    running = conn.execute(
        update(Job).where(which, Job.status == JobStatus.RUNNING)
        .values(cancel_requested=True, updated_at=now))
    return queued.rowcount + running.rowcount


def _cancel_descendants(conn: Any, parents: list[int], now: Any) -> None:
    """Cancel the unfinished children of ``parents``, and theirs (:func:`_cancel_rows`)."""
    while parents:
        _cancel_rows(conn, Job.parent_id.in_(parents), now, "cancelled with its parent before it started")
        parents = list(conn.scalars(select(Job.id).where(Job.parent_id.in_(parents))))


# --------------------------------------------------------------------------- workers' side


def _load(engine: Engine, job_id: int) -> Job:
    with Session(engine, expire_on_commit=False) as session:
        return get_job(session, job_id)


def _update(engine: Engine, job_id: int, where: list[Any], **values: Any) -> bool:
    """One conditional UPDATE in its own transaction; True when the row matched."""
    values.setdefault("updated_at", utcnow())
    with engine.begin() as conn:
        result = conn.execute(update(Job).where(Job.id == job_id, *where).values(**values))
    return result.rowcount == 1


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 1] + "…"


def claim(engine: Engine, job_id: int, worker: str, *,
          live_workers: Collection[str] | None = None) -> Job | None:
    """Start an attempt of the job on ``worker``: running, ``attempts`` + 1, ``started_at``.

    A queued job is claimed with one ``UPDATE … WHERE status = 'queued'``, so of two
    concurrent claims exactly one wins. A job still marked running is taken over only when
    ``live_workers`` is given and its worker is not among them (the worker died before
    :func:`requeue_orphans` saw it); the takeover is a compare-and-set on (worker, attempts).
    Returns None (and runs nothing) when the job has ended, is running on a live worker, had a
    cancel requested (a queued one, or one whose worker is not among ``live_workers``, is marked
    cancelled; one running on a live worker is left to stop at its next progress report), or
    already used ``max_attempts`` (it is marked failed, error "gave up after N attempts").
    JobNotFoundError for an unknown id.
    """
    now = utcnow()
    start = {"status": JobStatus.RUNNING, "attempts": Job.attempts + 1, "started_at": now,
             "worker": worker, "error": None, "finished_at": None}
    fresh = [Job.attempts < Job.max_attempts, Job.cancel_requested.is_(False)]
    if _update(engine, job_id, [Job.status == JobStatus.QUEUED, *fresh], **start):
        return _load(engine, job_id)
    job = _load(engine, job_id)
    if job.status not in ACTIVE:
        return None
    if job.cancel_requested:  # never started again; ended here only when no live worker runs it
        if job.status == JobStatus.QUEUED:
            cancel_finished(engine, job_id, where=[Job.status == JobStatus.QUEUED])
        elif live_workers is not None and job.worker not in live_workers:
            cancel_finished(engine, job_id, message="cancelled (its worker died)",
                            where=[Job.status == JobStatus.RUNNING, Job.attempts == job.attempts])
        return None
    if job.attempts >= job.max_attempts:
        _update(engine, job_id, [Job.status.in_(ACTIVE)], status=JobStatus.FAILED,
                finished_at=now, error=f"gave up after {job.attempts} attempts")
        return None
    if job.status == JobStatus.RUNNING and live_workers is not None and job.worker not in live_workers:
        held = [Job.status == JobStatus.RUNNING, Job.attempts == job.attempts, *fresh,
                Job.worker.is_(None) if job.worker is None else Job.worker == job.worker]
        if _update(engine, job_id, held, **start):
            return _load(engine, job_id)
    return None


def report_progress(engine: Engine, job_id: int, fraction: float, message: str | None = None) -> None:
    """Record progress (``fraction`` clamped to [0, 1]) and ``message`` of a running job.

    Raises JobCancelled when a cancel was requested (nothing is recorded then); the caller
    stops, removes what the run made and calls :func:`cancel_finished`.
    """
    fraction = min(1.0, max(0.0, float(fraction)))
    if fraction != fraction:  # NaN
        fraction = 0.0
    values: dict[str, Any] = {"progress": fraction}
    if message is not None:
        values["message"] = _cut(message)
    if _update(engine, job_id, [Job.status == JobStatus.RUNNING, Job.cancel_requested.is_(False)], **values):
        return
    with engine.connect() as conn:
        row = conn.execute(select(Job.cancel_requested, Job.status).where(Job.id == job_id)).first()
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    if row.cancel_requested or row.status == JobStatus.CANCELLED:
        raise JobCancelled(f"job {job_id}: cancel requested")


def finish_job(engine: Engine, job_id: int, result: dict[str, Any]) -> None:
    """Mark a running job succeeded with ``result`` (JSON), progress 1 — only when no cancel
    was requested (one conditional UPDATE, so a concurrent :func:`request_cancel` either comes
    too late, 409, or wins).

    Raises JobCancelled when a cancel was requested (the job is left as it is: the caller
    removes the run's products, then calls :func:`cancel_finished`); JobStateError when the job
    has ended otherwise.
    """
    now = utcnow()
    if _update(engine, job_id, [Job.status.in_(ACTIVE), Job.cancel_requested.is_(False)],
               status=JobStatus.SUCCEEDED, result=result, progress=1.0, finished_at=now, error=None,
               message="done"):
        return
    job = _load(engine, job_id)
    if job.cancel_requested or job.status == JobStatus.CANCELLED:
        raise JobCancelled(f"job {job_id}: cancel requested before it could succeed")
    raise JobStateError(f"job {job_id} cannot succeed: it has already ended ({job.status.value})")


def fail_job(engine: Engine, job_id: int, error: str, retryable: bool) -> JobStatus:
    """Record a failed attempt: back to queued when ``retryable`` and attempts remain,
    else failed. Returns the job's new status (unchanged for a job that had ended)."""
    now = utcnow()
    error = _cut(error) or "unknown error"
    if retryable and _update(engine, job_id, [Job.status.in_(ACTIVE), Job.attempts < Job.max_attempts,
                                              Job.cancel_requested.is_(False)],
                             status=JobStatus.QUEUED, error=error, worker=None,
                             message=f"retrying after: {error}"[:MAX_MESSAGE_CHARS]):
        return JobStatus.QUEUED
    _update(engine, job_id, [Job.status.in_(ACTIVE)], status=JobStatus.FAILED, error=error,
            finished_at=now)
    return _load(engine, job_id).status


def cancel_finished(engine: Engine, job_id: int, message: str = "cancelled", *,
                    result: dict[str, Any] | None = None, where: list[Any] | None = None) -> bool:
    """Mark a job cancelled (its run stopped after a cancel request; ``result``, when given,
    says what it removed) and cancel its unfinished descendants, in one transaction. ``where``
    narrows the UPDATE (default: the job has not ended). True when the job was marked."""
    now = utcnow()
    values: dict[str, Any] = {"status": JobStatus.CANCELLED, "finished_at": now, "updated_at": now,
                              "cancel_requested": True, "message": _cut(message)}
    if result is not None:
        values["result"] = result
    with engine.begin() as conn:
        marked = conn.execute(update(Job).where(Job.id == job_id, *(where or [Job.status.in_(ACTIVE)]))
                              .values(**values)).rowcount == 1
        if marked:
            _cancel_descendants(conn, [job_id], now)
    return marked


def requeue_orphans(engine: Engine, live_workers: Collection[str], *,
                    among: Collection[str] | None = None) -> list[int]:
    """Running jobs whose worker is not in ``live_workers`` → queued; returns their ids.

    ``among`` restricts this to jobs whose worker is in it (the workers known to be lost),
    so that jobs running on another cluster that shares the database are left alone.
    A job with a cancel request is marked cancelled instead.
    """
    query = select(Job.id, Job.worker, Job.cancel_requested).where(Job.status == JobStatus.RUNNING)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    requeued = []
    for job_id, worker, cancel in rows:
        if worker in live_workers or (among is not None and worker not in among):
            continue
        held = [Job.status == JobStatus.RUNNING,
                Job.worker.is_(None) if worker is None else Job.worker == worker]
        if not cancel and _update(engine, job_id, [*held, Job.cancel_requested.is_(False)],
                                  status=JobStatus.QUEUED, worker=None,
                                  message=f"worker {worker} lost; waiting for a retry"[:MAX_MESSAGE_CHARS]):
            requeued.append(job_id)
        else:  # a cancel was requested (perhaps since the read): end it, do not retry it
            cancel_finished(engine, job_id, "cancelled (its worker died)",
                            where=[*held, Job.cancel_requested.is_(True)])
    return requeued
