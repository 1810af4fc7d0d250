"""One handler per job kind, and the registries the worker dispatches on.

A handler takes the :class:`~api.jobs.context.JobContext` of the job the worker claimed, runs
the packages, reports progress between its units (where a cancel stops it) and returns the job's
``result``. :data:`HANDLERS` maps every :class:`core.models.JobKind` to its handler;
:data:`DISCARDS` maps a kind to what a cancelled run of it removes besides the files it noted
(see :func:`api.jobs.worker.discard`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from api.jobs.context import POLL_S, JobContext, JobFailure, RetryableJobError, open_session
from api.jobs.params import (
    CaptureParams,
    DeblurParams,
    ExportParams,
    LightboxParams,
    PostprocessParams,
    ReprocessParams,
    validate_params,
)
from core.jobs import (
    FINISHED,
    JobCancelled,
    JobStateError,
    create_job,
    fail_job,
    request_cancel,
)
from core.models import Job, JobKind, JobStatus, utcnow


def discard_postprocess(ctx: JobContext, result: dict[str, Any] | None) -> list[str]:
    """Mark the scene's processing run that this cancel stopped interrupted (not failed)."""
    from core.models import ProcessingRun, RunStatus, Scene

    scene = ctx.job.params.get("scene")
    with open_session(ctx.engine) as session:
        runs = session.scalars(
            select(ProcessingRun).join(Scene, ProcessingRun.scene_id == Scene.id)
            .where(Scene.name == scene, ProcessingRun.status == RunStatus.FAILED,
                   ProcessingRun.error.like("%JobCancelled%"),
                   ProcessingRun.started_at >= ctx.job.started_at))
        for run in runs:
            run.status, run.error = RunStatus.INTERRUPTED, f"cancelled (job {ctx.job.id})"
        session.commit()
    return []


def discard_export(ctx: JobContext, result: dict[str, Any] | None) -> list[str]:
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


def _scene_units(engine: Engine, scene: str) -> int:
    """Units :func:`postprocess.pipeline.process_scene` reports for the scene (≥ 1)."""
    from sqlalchemy import func

    from core.models import Capture, CaptureKind, CaptureStatus, Scene

    with open_session(engine) as session:
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

    with open_session(ctx.engine) as session:
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


def run_postprocess(ctx: JobContext) -> dict[str, Any]:
    from core.models import RunStatus
    from postprocess.services import process

    p = PostprocessParams.model_validate(ctx.job.params)
    removed = _clean_scene_leftovers(ctx, p.scene) if ctx.job.attempts > 1 else []
    total = _scene_units(ctx.engine, p.scene)
    done = 0

    def on_unit(label: str) -> None:
        nonlocal done
        done += 1
        ctx.progress(min(done / total, 0.99), f"{p.scene}: {label} ({done}/{total})")

    outcome = process(ctx.engine, ctx.data_dir, p, on_unit=on_unit)
    if outcome.status == RunStatus.FAILED:
        scene_failures = [f for f in outcome.failures if f["unit"] == "scene"] or outcome.failures
        f = scene_failures[0]
        raise JobFailure(f"scene {p.scene!r}: {f['error']}: {f['message']}")
    return {"scene": p.scene, "run_id": outcome.run_id, "status": outcome.status.value,
            "removed_leftovers": removed, **outcome.to_json()}


def run_reprocess(ctx: JobContext) -> dict[str, Any]:
    from postprocess.pipeline import scene_names_to_process

    p = ReprocessParams.model_validate(ctx.job.params)
    scenes = list(dict.fromkeys(p.scenes or scene_names_to_process(ctx.engine)))
    if not scenes:
        raise JobFailure("no scene with pairs in the database: capture or import one first")
    with open_session(ctx.engine) as session:
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
        with open_session(ctx.engine) as session:
            for child_id in children:
                with contextlib.suppress(JobStateError):
                    request_cancel(session, child_id)
            session.commit()
        raise
    with open_session(ctx.engine) as session:
        rows = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(list(children))))}
    outcomes = [{"job_id": cid, "scene": scene, "status": rows[cid].status.value, "error": rows[cid].error}
                for cid, scene in children.items()]
    return {"children": outcomes, "counts": dict(Counter(o["status"] for o in outcomes))}


def _wait_children(ctx: JobContext, children: dict[int, str]) -> None:
    """Submit the queued children and poll their records until all have ended."""
    run_job = ctx.run_job
    if run_job is None:
        raise RuntimeError("a fan-out runs inside api.jobs.worker.run_job, which sets ctx.run_job")
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
            with open_session(ctx.engine) as session:
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


def run_export(ctx: JobContext) -> dict[str, Any]:
    """An export under the exports root, as ``reloblur export`` writes it (:func:`postprocess.services.export`)."""
    from postprocess.services import export

    p = ExportParams.model_validate(ctx.job.params)
    root = ctx.settings.resolved_exports_dir  # `out` is relative to the exports root, never the data dir
    count = 0

    def on_pair(label: str) -> None:
        nonlocal count
        count += 1
        ctx.progress(count / (count + 1), f"exported {label}")

    # a killed attempt may have left its staging folder (beside the destination)
    summary = export(ctx.engine, ctx.data_dir, p, root=root, confine=True, clear_staging=ctx.job.attempts > 1,
                     on_pair=on_pair)
    # reported relative, never absolute: to the data dir when the export lies in it (as every job's
    # paths, e.g. a deblur job's inputs), else to the exports root; `exports_path`: to the root
    in_root = summary.out.relative_to(Path(root).resolve()).as_posix()
    data = ctx.data_dir.resolve()
    shown = summary.out.relative_to(data).as_posix() if data in summary.out.parents else in_root
    return {"out": shown, "exports_path": in_root, "splits": summary.splits, "pairs": summary.pairs,
            "skipped": summary.skipped}


def run_deblur(ctx: JobContext) -> dict[str, Any]:
    import shutil

    from api.http.uploads import develop_dng, is_dng
    from core.filestore import write_png
    from core.models import Product
    from deblur.errors import ImageInputError
    from deblur.services import deblur

    p = DeblurParams.model_validate(ctx.job.params)
    checkpoint = ctx.data_dir / p.checkpoint if p.checkpoint else ctx.settings.checkpoint
    if checkpoint is None:
        raise JobFailure("checkpoint: none given and no default (RELOBLUR_CHECKPOINT) is set")
    inputs = [ctx.data_dir / i for i in p.inputs]
    if p.product_ids:
        with open_session(ctx.engine) as session:
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

    def before_image(index: int, total: int, src: Path, stem: Path) -> None:
        # a progress point (where a cancel stops the job) before each image
        ctx.progress(0.05 + 0.95 * index / total, f"deblurring {index + 1}/{total}: {src.name}")
        ctx.will_write_in(out / stem.parent)

    def after_image(row: dict[str, Any]) -> None:
        ctx.written.extend(Path(row[k]) for k in ("deblurred", "mask", "mask_bin") if row[k] is not None)

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
        request = p.model_copy(update={"inputs": [str(i) for i in inputs], "checkpoint": str(checkpoint),
                                       "out": str(out)})
        rows = deblur(request, root=ctx.data_dir, device=ctx.settings.device,
                      before_image=before_image, after_image=after_image)
    finally:
        shutil.rmtree(develop, ignore_errors=True)
    for r in rows:
        if Path(r["input"]) in originals:
            from postprocess.develop import PLAIN_ISP  # loaded by develop_dng already

            r["input"] = originals[Path(r["input"])]
            r["developed"] = f"dng: {PLAIN_ISP}"
    images = [{**r, **{k: ctx.rel(r[k]) for k in ("input", "deblurred", "mask", "mask_bin")}} for r in rows]
    return {"out": ctx.rel(out), "images": images}


def run_capture(ctx: JobContext) -> dict[str, Any]:
    """A scene session, as ``reloblur capture`` takes it (:func:`acquisition.services.capture_scene`)."""
    from acquisition.rig import load_rig
    from acquisition.services import capture_scene, plan_scene_capture

    p = CaptureParams.model_validate(ctx.job.params)
    cfg = load_rig(ctx.settings.rigs_dir, p.rig)
    # a retry continues what the killed attempt stored
    request = p.model_copy(update={"resume": p.resume or ctx.job.attempts > 1})
    plan = plan_scene_capture(cfg, request)  # PlanError names what is missing, before the rig opens
    total = p.pairs + 2
    stored = 0

    def on_stored(index: int, stage: Any) -> None:
        nonlocal stored
        stored += 1
        ctx.progress(stored / total, f"{p.scene}: trigger {index} ({stage.kind}) stored")

    plan, outcome = capture_scene(cfg, request, ctx.data_dir, ctx.engine, plan=plan, on_stored=on_stored)
    return {"scene": p.scene, "rig": p.rig, "run_id": outcome.run_id, "stored": outcome.stored,
            "already_present": outcome.already_present, "status": outcome.status.value,
            "plan": plan.as_dict()}


def run_lightbox(ctx: JobContext) -> dict[str, Any]:
    """One lightbox flat field per camera, as ``reloblur capture-lightbox`` takes it
    (:func:`acquisition.services.capture_lightbox`)."""
    from acquisition.rig import load_rig
    from acquisition.services import capture_lightbox

    p = LightboxParams.model_validate(ctx.job.params)
    cfg = load_rig(ctx.settings.rigs_dir, p.rig)
    ctx.progress(0.0, f"lightbox on {p.rig}: S {p.exposure_ms:.3f} ms, B {p.exposure_ms / p.nd:.3f} ms")
    plan, outcome = capture_lightbox(cfg, p, ctx.data_dir, ctx.engine)
    return {"rig": p.rig, "run_id": outcome.run_id, "stored": outcome.stored,
            "status": outcome.status.value,
            "exposure_s": {"S": plan.short_exposure_s, "B": plan.long_exposure_s}}


HANDLERS: dict[JobKind, Callable[[JobContext], dict[str, Any]]] = {
    JobKind.POSTPROCESS: run_postprocess,
    JobKind.REPROCESS: run_reprocess,
    JobKind.EXPORT: run_export,
    JobKind.DEBLUR: run_deblur,
    JobKind.CAPTURE: run_capture,
    JobKind.LIGHTBOX: run_lightbox,
}
"""The handler of each job kind: what :func:`api.jobs.worker.run_job` runs."""

DISCARDS: dict[JobKind, Callable[[JobContext, dict[str, Any] | None], list[str]]] = {
    JobKind.POSTPROCESS: discard_postprocess,
    JobKind.EXPORT: discard_export,
}
"""Per kind, what :func:`api.jobs.worker.discard` removes besides the files in ``ctx.written``."""
