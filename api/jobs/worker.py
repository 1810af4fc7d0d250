"""The worker side of a job: the Dask task :func:`run_job` claims the job, runs its kind's
handler (:data:`api.jobs.handlers.HANDLERS`) and records how it ended.

An error the caller caused (:func:`core.errors.is_user_error`: a :class:`core.errors.UserError`
or a ``ValueError``) fails the job at once with its message; any other exception puts it back to
``queued`` while attempts remain and is re-raised as
:class:`~api.jobs.context.RetryableJobError` so that Dask retries the task. A cancelled run is
cleaned up by :func:`_discard` before the job is recorded ``cancelled``. (Attempts, retries and
cancels in full: :mod:`api.jobs.runner`.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from api.jobs.context import JobContext, RetryableJobError, open_session
from api.jobs.handlers import DISCARDS, HANDLERS
from core.db import make_engine
from core.errors import is_user_error
from core.jobs import (
    JobCancelled,
    cancel_finished,
    claim,
    fail_job,
    finish_job,
    get_job,
)
from core.models import JobStatus
from core.settings import Settings

_worker_engines: dict[str, Engine] = {}


def _engine(url: str) -> Engine:
    """One engine per database URL and process."""
    if url not in _worker_engines:
        _worker_engines[url] = make_engine(url)
    return _worker_engines[url]


def _worker_name() -> str:
    """The Dask worker's address, or ``local-<pid>`` outside a worker."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local-{os.getpid()}"


def scheduler_workers(dask_scheduler: Any = None) -> list[str]:
    """Run on the scheduler: the addresses of its workers."""
    return list(dask_scheduler.workers)


def _live_workers() -> set[str] | None:
    """The scheduler's workers, seen from inside a worker; None outside Dask."""
    try:
        from distributed import get_client, get_worker

        get_worker()
        return set(get_client().run_on_scheduler(scheduler_workers))
    except (ImportError, ValueError):
        return None


def run_job(job_id: int, database_url: str, data_dir: str,
            settings_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Dask task: claim the job, run its kind's handler, record how it ended.

    Returns ``{"job_id", "status", "ran"}``. Raises RetryableJobError after a transient failure
    that left the job queued (Dask then retries the task).
    """
    overrides = dict(settings_overrides or {})
    settings = Settings(data_dir=Path(data_dir), database_url=database_url, **overrides)
    engine = _engine(database_url)
    worker = _worker_name()
    job = claim(engine, job_id, worker)
    if job is None:
        with open_session(engine) as session:
            current = get_job(session, job_id)
        if current.status == JobStatus.RUNNING and current.worker != worker:
            live = _live_workers()
            if live is not None:
                job = claim(engine, job_id, worker, live_workers=live)
        if job is None:
            return {"job_id": job_id, "status": current.status.value, "ran": False}
    ctx = JobContext(job, engine, settings, database_url, overrides, run_job=run_job)
    result = None
    try:
        ctx.progress(0.0, f"attempt {job.attempts} of {job.max_attempts} on {worker}")
        result = HANDLERS[job.kind](ctx)
        finish_job(engine, job_id, result)  # JobCancelled: a cancel came after the last progress point
    except JobCancelled:
        removed = _discard(ctx, result)
        note = f"; removed {len(removed)} file(s) it had written" if removed else ""
        when = "its last step" if result is not None else "a progress point"
        cancel_finished(engine, job_id, f"cancelled after {when}{note}", result={"removed": removed})
        return {"job_id": job_id, "status": JobStatus.CANCELLED.value, "ran": True}
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if is_user_error(exc):
            status = fail_job(engine, job_id, error, retryable=False)
        else:
            status = fail_job(engine, job_id, error, retryable=True)
            if status == JobStatus.QUEUED:
                raise RetryableJobError(f"job {job_id}: {error}") from exc
        return {"job_id": job_id, "status": status.value, "ran": True}
    return {"job_id": job_id, "status": JobStatus.SUCCEEDED.value, "ran": True}


def _discard(ctx: JobContext, result: dict[str, Any] | None) -> list[str]:
    """Remove what a cancelled run made; the removed paths (relative to the data directory).

    ``result`` is the handler's when the cancel came after its last progress point, else None.
    Per kind:

    * deblur: every file the run wrote (``ctx.written``: each image's deblurred PNG and masks)
      and the folders it created, the default ``deblur/job-<id>`` included; files it did not
      write in a given ``out`` folder are kept. DNGs developed for it are always removed.
    * postprocess (and a reprocess's children): nothing is removed. The cancel lands between
      units, each of which is complete when recorded (files written atomically, the product
      rows committed after the files; a unit that fails or is interrupted removes its own files),
      and products are content-addressed by their parameters hash and shared by every job with
      the same inputs and parameters, which never compute twice: a later run reuses them. The
      scene's processing run is recorded ``interrupted`` ("cancelled (job N)").
    * reprocess: its unfinished children are cancelled (with the request, and by the handler).
    * export: cancelled mid-run, nothing is left (the export is built in a staging folder that
      ``export_dataset`` removes); cancelled after the last pair, the finished export folder (it
      holds ``export.json``) is removed.
    * capture and lightbox: nothing is removed. Their frames are measurements, each stored
      atomically with its row, which the capture run records; a cancelled scene session is
      continued with ``resume``.
    """
    removed: list[str] = []
    extra = DISCARDS.get(ctx.job.kind)
    if extra is not None:
        with contextlib.suppress(Exception):  # best effort: the job is cancelled regardless
            removed += extra(ctx, result)
    for path in reversed(dict.fromkeys(ctx.written)):
        try:
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(ctx.rel(path) or str(path))
        except OSError:
            pass
    for folder in reversed(ctx.made_dirs):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
    return removed

