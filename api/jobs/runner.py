"""Job execution on Dask distributed: an in-process LocalCluster, or a scheduler at an address.

:class:`JobRunner` connects to ``settings.dask_scheduler`` when it is set (a real cluster, no
code change) and otherwise starts a ``LocalCluster`` of ``settings.dask_workers`` processes.
Each job is one Dask task, :func:`api.jobs.worker.run_job`, which receives everything it needs
as arguments (job id, database URL, data directory, a few settings): workers never read the
parent's environment. The job's record (:mod:`core.jobs`) is the source of truth; Dask only runs
tasks.

Attempts and retries.
* :func:`~api.jobs.worker.run_job` first claims the job (one conditional UPDATE: exactly one
  task runs an attempt); a cancelled, finished or exhausted job is not run.
* An error the caller caused (:func:`core.errors.is_user_error`: a :class:`core.errors.UserError`
  such as ``CaptureError`` incl. ``RigBusyError``, ``InferenceError``, ``DatasetError``, or a
  ``ValueError`` such as ``PipelineError``, ``ExportError``, ``PlanError``) fails the job at once
  with its message: retrying cannot help.
* Any other exception (``OSError``, a bug in a dependency…) puts the job back to ``queued``
  while attempts remain and is re-raised as :class:`~api.jobs.context.RetryableJobError`; the
  task was submitted with ``retries=max_attempts - 1``, so Dask runs it again and the next claim
  counts attempt 2.
* A worker killed mid-job: Dask reschedules the task on a live worker; its claim finds the
  job still ``running`` on a worker the scheduler no longer knows and takes it over
  (compare-and-set). The runner also watches the scheduler's workers and requeues the jobs of
  lost ones (:func:`core.jobs.requeue_orphans`), and resubmits a job whose task ended while
  the job is still queued or running (e.g. ``KilledWorker`` after repeated deaths).
* No partial products: the pipeline writes files atomically and commits rows after the files;
  a retried postprocess job first removes what a killed attempt can leave in the scene's
  ``processed/`` folder (temporary files, files without a product row; only when no other job
  is processing that scene) and marks its dangling ``processing_runs`` row interrupted, then
  runs the scene again, which reuses every product already recorded and makes only the
  missing ones. A retried capture job resumes the scene (the protocol's own reconciliation).

Cancels (:meth:`JobRunner.cancel`, the API's one path; :func:`core.jobs.request_cancel` without
a runner). A queued job is cancelled in its record and its Dask task cancelled; a task that
starts anyway finds it cancelled and runs nothing. A running job gets ``cancel_requested``: its
handler stops at its next progress point (the handlers report progress between their units: the
deblur job before each image, postprocess after each unit, export after each pair, capture after
each trigger, a fan-out parent every ``POLL_S``; a lightbox has none inside its one exposure),
and a cancel that arrives after the last one keeps the job from succeeding
(:func:`core.jobs.finish_job`). Either way :func:`~api.jobs.worker.run_job` removes what the
run made (:func:`~api.jobs.worker._discard`: what is removed and what is kept, per kind) and
only then records the job ``cancelled``. The watcher never resubmits a job with a cancel request.

Fan-out (``reprocess``). The parent task creates one ``postprocess`` child job per scene
(``parent_id`` set; children that exist from an earlier attempt are reused, never duplicated),
then, seceded from its worker's thread pool (``distributed.worker_client``), submits the
queued children and polls their records until every child has ended, reporting progress. The
records, not the futures, decide: if the parent's worker dies, the retried parent finds its
children, resubmits only those still queued, and waits for the running ones (a running child
whose worker died is requeued by the runner's watcher or taken over by its own rescheduled
task). A cancelled parent cancels its unfinished children. The parent succeeds when every
child has ended; ``result["children"]`` lists each child's id, scene, status and error.

One runner per database: at start a runner requeues every job marked running on a worker its
cluster does not have, so two runners on two clusters must not share a database.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.jobs.context import POLL_S, open_session
from api.jobs.worker import run_job, scheduler_workers
from core.db import make_engine
from core.jobs import (
    FINISHED,
    JobNotFoundError,
    cancel_finished,
    fail_job,
    get_job,
    request_cancel,
    requeue_orphans,
)
from core.models import Job, JobStatus
from core.settings import Settings, get_settings

DISPATCH_S = 0.05
"""With ``dispatch_queued``: how often the runner looks for queued jobs recorded elsewhere (s)."""

SETTINGS_PASSED = ("rigs_dir", "checkpoint", "device", "job_max_attempts", "exports_dir")
"""Settings a worker receives from the runner (besides the database URL and data directory)."""


class JobRunner:
    """Submits job records to Dask and keeps them consistent with what the cluster does.

    settings: default ``get_settings()``; n_workers: LocalCluster worker count (default
    ``settings.dask_workers``); processes: LocalCluster workers as processes (True) or threads;
    dispatch_queued: also take, every ``DISPATCH_S``, the queued top-level jobs that other
    processes recorded (the HTTP workers of ``reloblur serve --workers N``); fan-out children
    stay their parent's to submit.
    """

    def __init__(self, settings: Settings | None = None, *, n_workers: int | None = None,
                 processes: bool = True, dispatch_queued: bool = False) -> None:
        self.settings = settings or get_settings()
        self.n_workers = n_workers or self.settings.dask_workers
        self.processes = processes
        self.dispatch_queued = dispatch_queued
        self.database_url = self.settings.resolved_database_url
        self.data_dir = self.settings.data_dir.resolve()
        self.overrides = {k: (str(Path(v).resolve()) if isinstance(v, Path) else v)
                          for k, v in self.settings.model_dump(include=set(SETTINGS_PASSED)).items()}
        self.engine = make_engine(self.database_url)
        self.client: Any = None
        self.cluster: Any = None
        self._futures: dict[int, Any] = {}
        self._submits: Counter = Counter()
        self._lock = threading.RLock()
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._seen_workers: set[str] = set()
        self._lost_workers: set[str] = set()

    # ---- life cycle ----------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True between start() and close()."""
        return self.client is not None and self._monitor is not None and self._monitor.is_alive()

    def start(self) -> JobRunner:
        """Connect to the scheduler (or start the LocalCluster), requeue orphans, resubmit the
        queued jobs."""
        from distributed import Client, LocalCluster

        if self.client is not None:
            return self
        if self.settings.dask_scheduler:
            self.client = Client(self.settings.dask_scheduler)
        else:
            self.cluster = LocalCluster(n_workers=self.n_workers,
                                        threads_per_worker=self.settings.dask_threads_per_worker,
                                        processes=self.processes, dashboard_address=None)
            self.client = Client(self.cluster)
        live = self.live_workers()
        self._seen_workers = set(live)
        requeue_orphans(self.engine, live)
        self._stop.clear()
        self._monitor = threading.Thread(target=self._watch, name="jobrunner-watch", daemon=True)
        self._monitor.start()
        with open_session(self.engine) as session:
            queued = session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED).order_by(Job.id)).all()
        for job_id in queued:
            self.submit(job_id)
        return self

    def close(self) -> None:
        """Stop watching and disconnect (the LocalCluster, if started here, is shut down)."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=10)
        self._monitor = None
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
        self._futures.clear()
        self.engine.dispose()

    def __enter__(self) -> JobRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def live_workers(self) -> set[str]:
        """Addresses of the scheduler's workers now."""
        return set(self.client.run_on_scheduler(scheduler_workers))

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, job_id: int) -> None:
        """Run the job on the cluster (non-blocking); a job with a task in flight is left alone."""
        if self.client is None:
            raise RuntimeError("the job runner is not started: call start() first")
        with self._lock:
            future = self._futures.get(job_id)
            if future is not None and not future.done():
                return
            with open_session(self.engine) as session:
                job = get_job(session, job_id)
            if job.status in FINISHED:
                return
            self._submits[job_id] += 1
            future = self.client.submit(
                run_job, job_id, self.database_url, str(self.data_dir), self.overrides,
                key=f"job-{job_id}-{uuid.uuid4().hex[:8]}", pure=False,
                retries=max(0, job.max_attempts - 1))
            self._futures[job_id] = future
        future.add_done_callback(lambda f, j=job_id: self._events.put((j, f)))

    def cancel(self, job_id: int) -> Job:
        """Cancel, once (the API's one path; see :func:`core.jobs.request_cancel`): a queued job
        at once, and its Dask task is cancelled; a running one stops at its next progress point
        and never succeeds. Returns the job as it now is (cancelled, or running with
        ``cancel_requested``). JobStateError for a job that had already ended, JobNotFoundError
        for an unknown one."""
        with open_session(self.engine) as session:
            job = request_cancel(session, job_id)
            session.commit()
        if job.status == JobStatus.CANCELLED:
            with self._lock:
                future = self._futures.get(job_id)
            if future is not None and not future.done():
                future.cancel()
        return job

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until the job has ended (by its record); TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with open_session(self.engine) as session:
                job = get_job(session, job_id)
            if job.status in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status.value} after {timeout} s "
                                   f"(progress {job.progress:.0%}: {job.message})")
            time.sleep(0.05)

    # ---- the watcher ------------------------------------------------------------------------
    def _watch(self) -> None:
        """Requeue the jobs of lost workers; resubmit jobs whose task ended without ending them."""
        last_check = last_dispatch = 0.0
        wait_s = DISPATCH_S if self.dispatch_queued else POLL_S
        while not self._stop.is_set():
            try:
                job_id, future = self._events.get(timeout=wait_s)
            except queue.Empty:
                job_id = future = None
            try:
                if future is not None:
                    self._task_ended(job_id, future)
                if self.dispatch_queued and time.monotonic() - last_dispatch >= DISPATCH_S:
                    last_dispatch = time.monotonic()
                    self._dispatch_queued()
                if time.monotonic() - last_check >= POLL_S:
                    last_check = time.monotonic()
                    self._check_workers()
            except Exception:  # noqa: BLE001 - the watcher must outlive a failed look
                if self._stop.is_set():
                    return

    def _dispatch_queued(self) -> None:
        """Submit the queued top-level jobs that have no task of this runner in flight."""
        with open_session(self.engine) as session:
            queued = session.scalars(
                select(Job.id)
                .where(Job.status == JobStatus.QUEUED, Job.parent_id.is_(None))
                .order_by(Job.id)
            ).all()
        for job_id in queued:
            self.submit(job_id)

    def _check_workers(self) -> None:
        live = self.live_workers()
        lost = (self._seen_workers - live) - self._lost_workers
        self._seen_workers |= live
        if lost:
            self._lost_workers |= lost
            requeue_orphans(self.engine, live, among=self._lost_workers)

    def _task_ended(self, job_id: int, future: Any) -> None:
        if self._futures.get(job_id) is not future or future.status == "cancelled":
            return
        with open_session(self.engine) as session:
            try:
                job = get_job(session, job_id)
            except JobNotFoundError:
                return
        if job.status in FINISHED:
            return
        if job.cancel_requested:  # never resubmitted; ended here when no task can stop it
            if job.status == JobStatus.QUEUED or future.status == "error":
                cancel_finished(self.engine, job_id, "cancelled (its task ended without stopping it)")
            return
        if job.status == JobStatus.RUNNING:
            if future.status != "error":
                return  # another task holds the job
            error = f"its task ended with {type(future.exception()).__name__}: {future.exception()}"
            if fail_job(self.engine, job_id, error, retryable=True) != JobStatus.QUEUED:
                return
        if self._submits[job_id] > job.max_attempts + 1:
            fail_job(self.engine, job_id, "could not be run: its tasks kept ending without running it",
                     retryable=False)
            return
        self.submit(job_id)
