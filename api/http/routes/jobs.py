"""Jobs: list, status and progress, cancel; submit post-processing, reprocessing, export, deblur.

A submission records the job and hands it to the server's runner, then answers ``202`` with a
``Location`` header and the job's URL. Without a runner (``create_app(start_runner=False)``)
the job stays ``queued`` until a runner elsewhere takes it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
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
from core.models import JobKind, JobStatus

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
