"""Submitting a job from a route: :class:`Submitter` (validate, record, hand to the runner,
answer 202 with ``Location``), its dependency ``SubmitDep`` and the routes' ``ACCEPTED``
decorator arguments. Shared by the jobs, captures and deblur routes."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.http.deps import OperatorToken, RunnerDep, SessionDep
from api.http.schemas import ErrorOut, JobAccepted
from api.jobs.params import validate_params
from core import jobs
from core.models import ApiToken, JobKind

log = logging.getLogger(__name__)

ACCEPTED = {
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": JobAccepted,
    "responses": {422: {"model": ErrorOut, "description": "Parameters the job cannot run with."}},
}


class Submitter:
    """What a submission route needs to record a job and answer 202: the request (the app's
    settings and runner), the response (its ``Location``), a session and the caller's token."""

    def __init__(self, request: Request, response: Response, session: Session, runner: Any,
                 token: ApiToken) -> None:
        self.request, self.response, self.session = request, response, session
        self.runner, self.token = runner, token

    def __call__(self, kind: JobKind, params: dict[str, Any] | BaseModel,
                 upload: str | None = None) -> JobAccepted:
        """Validate ``params`` with the app's settings, record the job, hand it to the runner,
        fill ``Location``; the answer of every submission (422 naming the field for bad
        params)."""
        if isinstance(params, BaseModel):
            params = params.model_dump(mode="json")
        request, response, session = self.request, self.response, self.session
        runner, token = self.runner, self.token
        settings = request.app.state.settings
        kind, model = validate_params(kind, params, settings)
        job = jobs.create_job(
            session,
            kind,
            model.model_dump(mode="json"),
            created_by=token.id,
            max_attempts=settings.job_max_attempts,
        )
        session.commit()
        if runner is not None:
            try:
                runner.submit(job.id)
            except Exception:  # the job is recorded; a runner restart picks it up
                log.exception("job %s recorded but not handed to the runner", job.id)
        url = str(request.url_for("get_job", job_id=job.id))
        response.headers["Location"] = url
        return JobAccepted(id=job.id, kind=job.kind, status=job.status, url=url, upload=upload)


async def get_submitter(request: Request, response: Response, session: SessionDep, runner: RunnerDep,
                        token: OperatorToken) -> Submitter:
    """A :class:`Submitter` for an operator's request (401/403 otherwise)."""
    return Submitter(request, response, session, runner, token)


SubmitDep = Annotated[Submitter, Depends(get_submitter)]
