"""Jobs: list, status and progress, cancel; submit post-processing, reprocessing, export, deblur.

A submission records the job and hands it to the server's runner, then answers ``202`` with a
``Location`` header and the job's URL. Without a runner (``create_app(start_runner=False)``)
the job stays ``queued`` until a runner elsewhere takes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.http.deps import (
    DbDep,
    IdPath,
    IdQuery,
    Limit,
    Offset,
    OperatorToken,
    RunnerDep,
    SessionDep,
    ViewerToken,
)
from api.http.schemas import ErrorOut, JobAccepted, JobOut
from api.http.submit import ACCEPTED, SubmitDep
from api.jobs.params import (
    DeblurParams,
    ExportParams,
    PostprocessParams,
    ReprocessParams,
)
from core import jobs
from core.models import Job, JobKind, JobStatus

router = APIRouter(tags=["jobs"])


@router.get("/jobs", response_model=list[JobOut], summary="List jobs, newest first")
async def list_jobs(
    request: Request,
    db: DbDep,
    _: ViewerToken,
    status: JobStatus | None = None,
    kind: JobKind | None = None,
    parent_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[JobOut]:
    return await db.read(request, _list_jobs, status, kind, parent_id, limit, offset)


def _list_jobs(session: Session, status: JobStatus | None, kind: JobKind | None,
               parent_id: int | None, limit: int, offset: int) -> list[JobOut]:
    rows = jobs.list_jobs(
        session, status=status, kind=kind, parent_id=parent_id, limit=limit, offset=offset
    )
    return [JobOut.model_validate(j) for j in rows]


@router.get("/jobs/{job_id:int}", response_model=JobOut, summary="A job's status, progress and result")
async def get_job(job_id: IdPath, request: Request, db: DbDep, _: ViewerToken) -> JobOut:
    return await db.read(request, _get_job, job_id)


def _get_job(session: Session, job_id: int) -> JobOut:
    return JobOut.model_validate(jobs.get_job(session, job_id))


EVENT_POLL_S = 0.05
"""How often the event stream checks the database's change version (s); it queries only when
the version moved (at most every ``EVENT_QUERY_S`` without a change watch)."""
EVENT_QUERY_S = 0.25
HEARTBEAT_S = 15.0
"""A stream ends after this long (s); the browser's EventSource reconnects with Last-Event-ID."""
EVENT_BATCH = 200


def _event_id(moment: datetime) -> str:
    return str(int(moment.astimezone(UTC).timestamp() * 1_000_000))


def _parse_since(last_event_id: str | None, since: str | None) -> datetime | None:
    raw = last_event_id or since
    if not raw:
        return None
    try:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw) / 1_000_000, UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise HTTPException(422, f"since / Last-Event-ID must be an event id or an ISO time, got {raw[:40]!r}") from None


def _changed_jobs(session: Session, after: datetime, inclusive: bool) -> list[JobOut]:
    cond = Job.updated_at >= after if inclusive else Job.updated_at > after
    rows = session.scalars(select(Job).where(cond).order_by(Job.updated_at, Job.id).limit(EVENT_BATCH))
    return [JobOut.model_validate(j) for j in rows]


@router.get(
    "/jobs/events",
    summary="Job changes as server-sent events (text/event-stream)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "One `job` event per change."}},
)
async def job_events(
    request: Request,
    db: DbDep,
    _: ViewerToken,
    since: str | None = Query(None, max_length=40, description="Send the jobs changed at or after this "
                              "moment first (an event id or an ISO time); default: only new changes."),
    last_event_id: str | None = Header(None, max_length=40),
) -> StreamingResponse:
    """A ``job`` event (``data``: the job as ``GET /jobs/{id}`` gives it; ``id``: its
    ``updated_at`` in µs since the epoch) each time a job changes. A browser's ``EventSource``
    that lost the connection reconnects with ``Last-Event-ID`` and gets every change made
    meanwhile, in order. A comment line every 15 s keeps idle connections open; a stream ends
    after the settings' ``event_stream_max_s`` (default 10 min; the browser reconnects and
    resumes)."""
    start = _parse_since(last_event_id, since)
    cache = db.cache

    async def stream() -> AsyncIterator[bytes]:
        after, inclusive = (start, True) if start is not None else (datetime.now(UTC), False)
        seen_version, queried, beat = None, 0.0, time.monotonic()
        ends = beat + request.app.state.settings.event_stream_max_s
        yield b"retry: 1000\n\n"
        while not await request.is_disconnected() and time.monotonic() < ends:
            now = time.monotonic()
            version = cache.version() if cache is not None else None
            due = version is None or version != seen_version or now - queried > HEARTBEAT_S
            if due and (version is not None or now - queried >= EVENT_QUERY_S):
                seen_version, queried = version, now
                changed = await db.run(_changed_jobs, after, inclusive)
                for job in changed:
                    yield (f"id: {_event_id(job.updated_at)}\nevent: job\n"
                           f"data: {job.model_dump_json()}\n\n").encode()
                if changed:
                    after, inclusive = changed[-1].updated_at, False
                    if len(changed) == EVENT_BATCH:
                        continue
            if now - beat > HEARTBEAT_S:
                beat = now
                yield b": keep-alive\n\n"
            await asyncio.sleep(EVENT_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post(
    "/jobs/{job_id:int}/cancel",
    response_model=JobOut,
    summary="Ask a job to stop (409 when it has already finished)",
    responses={409: {"model": ErrorOut}},
)
def cancel_job(job_id: IdPath, session: SessionDep, runner: RunnerDep, _: OperatorToken) -> JobOut:
    """One cancel, done once: the runner's (which also cancels a queued job's Dask task), or,
    without a runner, the record's. 200 with the job as it now is: ``cancelled`` (it was
    queued) or ``running`` with ``cancel_requested`` (it stops at its next progress point and
    never succeeds); 409 only for a job that had already ended."""
    if runner is not None:
        job = runner.cancel(job_id)
    else:
        job = jobs.request_cancel(session, job_id)
        session.commit()
    return JobOut.model_validate(job)


@router.post("/jobs/postprocess", summary="Process one scene", **ACCEPTED)
def submit_postprocess(body: PostprocessParams, submit: SubmitDep) -> JobAccepted:
    return submit(JobKind.POSTPROCESS, body)


@router.post(
    "/jobs/reprocess", summary="Reprocess every scene (or some) with new parameters", **ACCEPTED
)
def submit_reprocess(body: ReprocessParams, submit: SubmitDep) -> JobAccepted:
    return submit(JobKind.REPROCESS, body)


@router.post("/jobs/export", summary="Export processed scenes in the ReLoBlur layout", **ACCEPTED)
def submit_export(body: ExportParams, submit: SubmitDep) -> JobAccepted:
    return submit(JobKind.EXPORT, body)


@router.post(
    "/jobs/deblur",
    summary="Deblur images in the data store or products by id (upload: POST /deblur/uploads)",
    **ACCEPTED,
)
def submit_deblur(body: DeblurParams, submit: SubmitDep) -> JobAccepted:
    return submit(JobKind.DEBLUR, body)
