"""Job execution on Dask distributed: an in-process LocalCluster, or a scheduler at an address.

:class:`JobRunner` connects to ``settings.dask_scheduler`` when it is set (a real cluster, no
code change) and otherwise starts a ``LocalCluster`` of ``settings.dask_workers`` processes.
Each job is one Dask task, :func:`run_job`, which receives everything it needs as arguments
(job id, database URL, data directory, a few settings): workers never read the parent's
environment. The job's record (:mod:`core.jobs`) is the source of truth; Dask only runs tasks.

Attempts and retries.
* :func:`run_job` first claims the job (one conditional UPDATE: exactly one task runs an
  attempt); a cancelled, finished or exhausted job is not run.
* A named error of the packages (a ``ValueError`` subclass such as ``PipelineError``,
  ``ExportError``, ``PlanError``; ``CaptureError`` incl. ``RigBusyError``; ``InferenceError``;
  ``DatasetError``) fails the job at once with its message: retrying cannot help.
* Any other exception (``OSError``, a bug in a dependency…) puts the job back to ``queued``
  while attempts remain and is re-raised as :class:`RetryableJobError`; the task was submitted
  with ``retries=max_attempts - 1``, so Dask runs it again and the next claim counts attempt 2.
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
(:func:`core.jobs.finish_job`). Either way :func:`run_job` removes what the run
made (:func:`_discard`: what is removed and what is kept, per kind) and only then records the job
``cancelled``. The watcher never resubmits a job with a cancel request.

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

import contextlib
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from api.jobparams import (
    CaptureParams,
    DeblurParams,
    ExportParams,
    LightboxParams,
    PostprocessParams,
    ReprocessParams,
    validate_params,
)
from core.db import make_engine
from core.jobs import (
    FINISHED,
    JobCancelled,
    JobNotFoundError,
    JobStateError,
    cancel_finished,
    claim,
    create_job,
    fail_job,
    finish_job,
    get_job,
    report_progress,
    request_cancel,
    requeue_orphans,
)
from core.models import Job, JobKind, JobStatus, utcnow
from core.settings import Settings, get_settings

POLL_S = 0.25
"""How often the runner's watcher and a fan-out parent look at the records (s)."""

DISPATCH_S = 0.05
"""With ``dispatch_queued``: how often the runner looks for queued jobs recorded elsewhere (s)."""

NAMED_ERRORS = frozenset({
    "acquisition.capture.CaptureError",
    "deblur.infer.InferenceError",
    "deblur.data.DatasetError",
})
"""Non-ValueError named errors (by qualified name, so that no heavy package is imported)."""

SETTINGS_PASSED = ("rigs_dir", "checkpoint", "device", "job_max_attempts", "exports_dir")
"""Settings a worker receives from the runner (besides the database URL and data directory)."""


class JobFailure(ValueError):
    """A job that cannot succeed as asked; the message says why (not retried)."""


class RetryableJobError(RuntimeError):
    """Raised by :func:`run_job` after a transient failure so that Dask retries the task."""


def is_named_error(exc: BaseException) -> bool:
    """True for a user-causable named error (not retried), False for a transient one."""
    if isinstance(exc, ValueError):
        return True
    return any(f"{c.__module__}.{c.__qualname__}" in NAMED_ERRORS for c in type(exc).__mro__)


# --------------------------------------------------------------------------- worker side

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


def _scheduler_workers(dask_scheduler: Any = None) -> list[str]:
    """Run on the scheduler: the addresses of its workers."""
    return list(dask_scheduler.workers)


def _live_workers() -> set[str] | None:
    """The scheduler's workers, seen from inside a worker; None outside Dask."""
    try:
        from distributed import get_client, get_worker

        get_worker()
        return set(get_client().run_on_scheduler(_scheduler_workers))
    except (ImportError, ValueError):
        return None


@dataclass
class JobContext:
    """What a handler gets: the job (as claimed), its database and settings."""

    job: Job
    engine: Engine
    settings: Settings
    database_url: str
    overrides: dict[str, Any]
    written: list[Path] = field(default_factory=list)
    """Files this run wrote: removed if it is cancelled (:func:`_discard`)."""
    made_dirs: list[Path] = field(default_factory=list)
    """Folders this run created (outermost first): removed, when left empty, if it is cancelled."""

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def will_write_in(self, folder: Path) -> None:
        """Note the folders up to ``folder`` that do not exist yet; call before writing there."""
        missing = []
        for d in (folder, *folder.parents):
            if d.exists():
                break
            missing.append(d)
        self.made_dirs += [d for d in reversed(missing) if d not in self.made_dirs]

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress; raises JobCancelled when a cancel was requested."""
        report_progress(self.engine, self.job.id, fraction, message)

    def rel(self, path: Path | str | None) -> str | None:
        """``path`` relative to the data directory when it lies inside it."""
        if path is None:
            return None
        path = Path(path)
        try:
            return path.resolve().relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(path)


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
        with _session(engine) as session:
            current = get_job(session, job_id)
        if current.status == JobStatus.RUNNING and current.worker != worker:
            live = _live_workers()
            if live is not None:
                job = claim(engine, job_id, worker, live_workers=live)
        if job is None:
            return {"job_id": job_id, "status": current.status.value, "ran": False}
    ctx = JobContext(job, engine, settings, database_url, overrides)
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
        if is_named_error(exc):
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


def _discard_postprocess(ctx: JobContext, result: dict[str, Any] | None) -> list[str]:
    """Mark the scene's processing run that this cancel stopped interrupted (not failed)."""
    from core.models import ProcessingRun, RunStatus, Scene

    scene = ctx.job.params.get("scene")
    with _session(ctx.engine) as session:
        runs = session.scalars(
            select(ProcessingRun).join(Scene, ProcessingRun.scene_id == Scene.id)
            .where(Scene.name == scene, ProcessingRun.status == RunStatus.FAILED,
                   ProcessingRun.error.like("%JobCancelled%"),
                   ProcessingRun.started_at >= ctx.job.started_at))
        for run in runs:
            run.status, run.error = RunStatus.INTERRUPTED, f"cancelled (job {ctx.job.id})"
        session.commit()
    return []


def _discard_export(ctx: JobContext, result: dict[str, Any] | None) -> list[str]:
    """After the last pair: remove the finished export folder (found from the result)."""
    import shutil

    if not result:
        return []
    folders = []
    root = getattr(ctx.settings, "resolved_exports_dir", None)
    if root is not None and result.get("exports_path"):
        folders.append(Path(root) / result["exports_path"])
    if result.get("out"):
        folders.append(ctx.data_dir / result["out"])
    for folder in folders:
        if (folder / "export.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            return [ctx.rel(folder) or str(folder)]
    return []


def _session(engine: Engine):
    from core.db import session_factory

    return session_factory(engine)()


# --------------------------------------------------------------------------- handlers


def _pipeline_params(params: dict[str, Any] | None):
    from postprocess.params import PipelineParams

    return PipelineParams.model_validate(params) if params else None


def _scene_units(engine: Engine, scene: str) -> int:
    """Units :func:`postprocess.pipeline.process_scene` reports for the scene (≥ 1)."""
    from sqlalchemy import func

    from core.models import Capture, CaptureKind, CaptureStatus, Scene

    with _session(engine) as session:
        pairs = session.scalar(
            select(func.count(Capture.id)).join(Scene)
            .where(Scene.name == scene, Capture.kind == CaptureKind.PAIR,
                   Capture.status == CaptureStatus.COMPLETE)) or 0
    return 2 + 2 * pairs  # scene stage, whiteboard, each pair, each mask


def _clean_scene_leftovers(ctx: JobContext, scene: str) -> list[str]:
    """After a killed attempt: remove the scene's temporary and unrecorded product files and
    mark its dangling processing runs interrupted, unless another job processes the scene."""
    from core.filestore import is_temp_name
    from core.models import ProcessingRun, Product, RunStatus, Scene

    with _session(ctx.engine) as session:
        others = session.scalars(select(Job).where(
            Job.kind == JobKind.POSTPROCESS, Job.status == JobStatus.RUNNING, Job.id != ctx.job.id)).all()
        if any(o.params.get("scene") == scene for o in others):
            return []
        row = session.scalar(select(Scene).where(Scene.name == scene))
        if row is None:
            return []
        folder = f"processed/{scene}/"
        recorded = set(session.scalars(select(Product.path).where(Product.path.like(folder + "%"))))
        for run in session.scalars(select(ProcessingRun).where(
                ProcessingRun.scene_id == row.id, ProcessingRun.status == RunStatus.RUNNING)):
            run.status = RunStatus.INTERRUPTED
            run.error = "the job's worker ended without recording an outcome (killed or crashed)"
            run.finished_at = utcnow()
        session.commit()
    removed = []
    root = ctx.data_dir / folder
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(ctx.data_dir).as_posix()
            if path.is_file() and (is_temp_name(path.name) or rel not in recorded):
                path.unlink(missing_ok=True)
                removed.append(rel)
    return removed


def _postprocess(ctx: JobContext) -> dict[str, Any]:
    from core.models import RunStatus
    from postprocess.pipeline import process_scene

    p = PostprocessParams.model_validate(ctx.job.params)
    removed = _clean_scene_leftovers(ctx, p.scene) if ctx.job.attempts > 1 else []
    total = _scene_units(ctx.engine, p.scene)
    done = 0

    def on_unit(label: str) -> None:
        nonlocal done
        done += 1
        ctx.progress(min(done / total, 0.99), f"{p.scene}: {label} ({done}/{total})")

    outcome = process_scene(ctx.engine, ctx.data_dir, p.scene, _pipeline_params(p.params), on_unit=on_unit)
    if outcome.status == RunStatus.FAILED:
        scene_failures = [f for f in outcome.failures if f["unit"] == "scene"] or outcome.failures
        f = scene_failures[0]
        raise JobFailure(f"scene {p.scene!r}: {f['error']}: {f['message']}")
    return {"scene": p.scene, "run_id": outcome.run_id, "status": outcome.status.value,
            "removed_leftovers": removed, **outcome.to_json()}


def _reprocess(ctx: JobContext) -> dict[str, Any]:
    from postprocess.pipeline import scene_names_to_process

    p = ReprocessParams.model_validate(ctx.job.params)
    scenes = list(dict.fromkeys(p.scenes or scene_names_to_process(ctx.engine)))
    if not scenes:
        raise JobFailure("no scene with pairs in the database: capture or import one first")
    with _session(ctx.engine) as session:
        existing: dict[str, int] = {}
        for child in session.scalars(select(Job).where(Job.parent_id == ctx.job.id).order_by(Job.id)):
            existing.setdefault(child.params.get("scene"), child.id)
        for scene in scenes:
            if scene not in existing:
                kind, child = validate_params(JobKind.POSTPROCESS, {"scene": scene, "params": p.params},
                                              ctx.settings)
                existing[scene] = create_job(session, kind, child.model_dump(mode="json"),
                                             created_by=ctx.job.created_by, parent_id=ctx.job.id,
                                             max_attempts=ctx.job.max_attempts).id
        session.commit()
    children = {existing[s]: s for s in scenes}
    try:
        ctx.progress(0.0, f"{len(children)} scene job(s): {', '.join(str(c) for c in children)}")
        _wait_children(ctx, children)
    except JobCancelled:
        with _session(ctx.engine) as session:
            for child_id in children:
                with contextlib.suppress(JobStateError):
                    request_cancel(session, child_id)
            session.commit()
        raise
    with _session(ctx.engine) as session:
        rows = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(list(children))))}
    outcomes = [{"job_id": cid, "scene": scene, "status": rows[cid].status.value, "error": rows[cid].error}
                for cid, scene in children.items()]
    return {"children": outcomes, "counts": dict(Counter(o["status"] for o in outcomes))}


def _wait_children(ctx: JobContext, children: dict[int, str]) -> None:
    """Submit the queued children and poll their records until all have ended."""
    submit: Callable[[int], Any]
    futures: dict[int, Any] = {}
    submits: Counter = Counter()
    try:
        from distributed import get_worker, worker_client

        get_worker()
        client_cm = worker_client()
    except (ImportError, ValueError):
        client_cm = None
    args = (ctx.database_url, str(ctx.data_dir), ctx.overrides)
    with client_cm if client_cm is not None else contextlib.nullcontext() as client:
        if client is not None:
            def submit(child_id: int) -> Any:
                return client.submit(run_job, child_id, *args, key=f"job-{child_id}-{uuid.uuid4().hex[:8]}",
                                     pure=False, retries=max(0, ctx.job.max_attempts - 1))
        else:  # outside Dask (a direct call): run the children here, one after another
            def submit(child_id: int) -> Any:
                with contextlib.suppress(RetryableJobError):
                    run_job(child_id, *args)
        while True:
            with _session(ctx.engine) as session:
                rows = session.execute(select(Job.id, Job.status, Job.max_attempts)
                                       .where(Job.id.in_(list(children)))).all()
            ended = 0
            for child_id, status, max_attempts in rows:
                if status in FINISHED:
                    ended += 1
                    continue
                future = futures.get(child_id)
                if status == JobStatus.QUEUED and (future is None or future.done()):
                    if submits[child_id] > max_attempts:
                        fail_job(ctx.engine, child_id, "could not be run: its tasks kept ending "
                                 "without running it", retryable=False)
                        continue
                    submits[child_id] += 1
                    futures[child_id] = submit(child_id)
            ctx.progress(ended / len(children) * 0.99, f"{ended}/{len(children)} scene job(s) ended")
            if ended == len(children):
                return
            time.sleep(POLL_S)


def _export(ctx: JobContext) -> dict[str, Any]:
    import shutil

    from postprocess.export import STAGING_MARK, check_export_destination, export_dataset

    p = ExportParams.model_validate(ctx.job.params)
    root = ctx.settings.resolved_exports_dir  # `out` is relative to the exports root, never the data dir
    out = root / p.out
    # the destination rules (symlinks resolved; under the exports root) before anything is touched
    dest = check_export_destination(out, ctx.data_dir, root, overwrite=p.overwrite, confine=True)
    if ctx.job.attempts > 1:  # a killed attempt may have left its staging folder (same folder as dest)
        for stale in dest.parent.glob(f".{dest.name}{STAGING_MARK}*"):
            shutil.rmtree(stale, ignore_errors=True)
    count = 0

    def on_pair(label: str) -> None:
        nonlocal count
        count += 1
        ctx.progress(count / (count + 1), f"exported {label}")

    summary = export_dataset(ctx.engine, ctx.data_dir, out, p.test_scenes, p.scenes,
                             overwrite=p.overwrite, on_pair=on_pair, root=root, confine=True)
    # reported relative, never absolute: to the data dir when the export lies in it (as every job's
    # paths, e.g. a deblur job's inputs), else to the exports root; `exports_path`: to the root
    in_root = summary.out.relative_to(root.resolve()).as_posix()
    data = ctx.data_dir.resolve()
    shown = summary.out.relative_to(data).as_posix() if data in summary.out.parents else in_root
    return {"out": shown, "exports_path": in_root, "splits": summary.splits, "pairs": summary.pairs,
            "skipped": summary.skipped}


def _deblur(ctx: JobContext) -> dict[str, Any]:
    import shutil

    from api.uploads import develop_dng, is_dng
    from core.filestore import write_png
    from core.models import Product
    from deblur.infer import ImageInputError, _expand_inputs, deblur_paths

    p = DeblurParams.model_validate(ctx.job.params)
    checkpoint = ctx.data_dir / p.checkpoint if p.checkpoint else ctx.settings.checkpoint
    if checkpoint is None:
        raise JobFailure("checkpoint: none given and no default (RELOBLUR_CHECKPOINT) is set")
    inputs = [ctx.data_dir / i for i in p.inputs]
    if p.product_ids:
        with _session(ctx.engine) as session:
            found = dict(session.execute(select(Product.id, Product.path)
                                         .where(Product.id.in_(p.product_ids))).all())
        missing = [i for i in p.product_ids if i not in found]
        if missing:
            raise JobFailure(f"product_ids: no product with id {', '.join(map(str, missing))}")
        inputs += [ctx.data_dir / found[i] for i in p.product_ids]
    out = ctx.data_dir / (p.out or f"deblur/job-{ctx.job.id}")
    ctx.progress(0.05, f"deblurring {len(inputs)} input(s) into {ctx.rel(out)}")
    ctx.will_write_in(out)
    # The model reads PNG/TIFF: a DNG is developed first (the preview's plain ISP) into a
    # temporary 16-bit PNG inside the output folder, removed afterwards.
    develop = out / f".develop-job-{ctx.job.id}"
    originals: dict[Path, Path] = {}
    rows: list[dict[str, Any]] = []
    try:
        for i, src in enumerate(inputs):
            if src.is_file() and is_dng(src):
                ctx.progress(0.05, f"developing {src.name}")
                developed = develop / f"{src.stem}.png"
                try:
                    write_png(developed, develop_dng(src), bits=16)
                except ValueError as exc:
                    raise ImageInputError(f"{src}: {exc}") from None
                originals[developed] = src
                inputs[i] = developed
        # One image at a time, with a progress point (where a cancel stops the job) before each.
        images = _expand_inputs(inputs)
        for n, (src, stem) in enumerate(images):
            ctx.progress(0.05 + 0.95 * n / len(images), f"deblurring {n + 1}/{len(images)}: {src.name}")
            ctx.will_write_in(out / stem.parent)
            [row] = deblur_paths(src, checkpoint, out / stem.parent, ctx.settings.device, p.dtype, p.tile,
                                 progress=False)
            ctx.written += [Path(row[k]) for k in ("deblurred", "mask", "mask_bin") if row[k] is not None]
            rows.append(row)
    finally:
        shutil.rmtree(develop, ignore_errors=True)
    for r in rows:
        if Path(r["input"]) in originals:
            r["input"] = originals[Path(r["input"])]
            r["developed"] = "dng: plain ISP (AsShotNeutral white balance, ColorMatrix1, Menon demosaic)"
    images = [{**r, **{k: ctx.rel(r[k]) for k in ("input", "deblurred", "mask", "mask_bin")}} for r in rows]
    return {"out": ctx.rel(out), "images": images}


def _capture(ctx: JobContext) -> dict[str, Any]:
    from acquisition.backends import motion_hint
    from acquisition.capture import SceneCapture
    from acquisition.rig import build_rig, load_rig
    from acquisition.rig_plan import plan_for_rig

    p = CaptureParams.model_validate(ctx.job.params)
    cfg = load_rig(ctx.settings.rigs_dir, p.rig)
    if motion_hint(cfg) is None:
        raise JobFailure(f"rig {p.rig!r} has no simulated scene to take the object distance and speed "
                         "from: capture on a real rig with `reloblur capture --distance --speed`")
    plan = plan_for_rig(cfg, sharp_blur_px=p.sharp_blur or 6.0)
    total = p.pairs + 2
    resume = p.resume or ctx.job.attempts > 1  # a retry continues what the killed attempt stored
    stored = 0

    def on_stored(index: int, stage: Any) -> None:
        nonlocal stored
        stored += 1
        ctx.progress(stored / total, f"{p.scene}: trigger {index} ({stage.kind}) stored")

    with build_rig(cfg) as rig:
        outcome = SceneCapture(rig, plan, ctx.data_dir, ctx.engine).capture_scene(
            p.scene, p.pairs, resume=resume, on_stored=on_stored)
    return {"scene": p.scene, "rig": p.rig, "run_id": outcome.run_id, "stored": outcome.stored,
            "already_present": outcome.already_present, "status": outcome.status.value,
            "plan": plan.as_dict()}


def _lightbox(ctx: JobContext) -> dict[str, Any]:
    """One lightbox flat field per camera, as ``reloblur capture-lightbox`` takes it."""
    from acquisition.capture import SceneCapture
    from acquisition.planner import lightbox_plan
    from acquisition.rig import build_rig, load_rig

    p = LightboxParams.model_validate(ctx.job.params)
    cfg = load_rig(ctx.settings.rigs_dir, p.rig)
    plan = lightbox_plan(p.exposure_ms * 1e-3, p.nd)
    t_short, t_long = plan.short_exposure_s, plan.long_exposure_s
    ctx.progress(0.0, f"lightbox on {p.rig}: S {t_short * 1e3:.3f} ms, B {t_long * 1e3:.3f} ms")
    with build_rig(cfg) as rig:
        outcome = SceneCapture(rig, plan, ctx.data_dir, ctx.engine).capture_lightbox()
    return {"rig": p.rig, "run_id": outcome.run_id, "stored": outcome.stored,
            "status": outcome.status.value, "exposure_s": {"S": t_short, "B": t_long}}


HANDLERS: dict[JobKind, Callable[[JobContext], dict[str, Any]]] = {
    JobKind.POSTPROCESS: _postprocess,
    JobKind.REPROCESS: _reprocess,
    JobKind.EXPORT: _export,
    JobKind.DEBLUR: _deblur,
    JobKind.CAPTURE: _capture,
    JobKind.LIGHTBOX: _lightbox,
}

DISCARDS: dict[JobKind, Callable[[JobContext, dict[str, Any] | None], list[str]]] = {
    JobKind.POSTPROCESS: _discard_postprocess,
    JobKind.EXPORT: _discard_export,
}
"""Per kind, what :func:`_discard` removes besides the files in ``ctx.written``."""


# --------------------------------------------------------------------------- the runner


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
        with _session(self.engine) as session:
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
        return set(self.client.run_on_scheduler(_scheduler_workers))

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, job_id: int) -> None:
        """Run the job on the cluster (non-blocking); a job with a task in flight is left alone."""
        if self.client is None:
            raise RuntimeError("the job runner is not started: call start() first")
        with self._lock:
            future = self._futures.get(job_id)
            if future is not None and not future.done():
                return
            with _session(self.engine) as session:
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
        with _session(self.engine) as session:
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
            with _session(self.engine) as session:
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
        with _session(self.engine) as session:
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
        with _session(self.engine) as session:
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
