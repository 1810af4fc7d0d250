"""``reloblur demo``, what ``make demo`` runs: the main job, end to end through the lab service.

The service is started as ``reloblur serve`` starts it (the configured database, SQLite by
default; the simulated rig; jobs on an in-process Dask LocalCluster), on a free loopback port in
this process, and everything goes through its REST API as an operator's client would:

1. an operator token is created in the database (as ``reloblur token create`` does);
2. ``GET /rigs`` and ``POST /plans/preview``: the rig and its Eq. 2 exposures;
3. ``POST /captures/lightbox`` (only when the rig has no lightbox frame yet), then
   ``POST /captures``: a scene session (whiteboard, reference, pairs) on the simulated rig, with
   ``resume`` so that a second demo continues instead of failing;
4. ``POST /jobs/postprocess``: calibration, colour, β, ISP, flow + CMTF alignment, LBFMG masks;
5. ``POST /jobs/export``: the ReLoBlur layout, the captured scene as the test split;
6. ``POST /jobs/deblur``: LBAG on the exported blurred images with the given checkpoint;
7. the paper's metrics of the deblurred images (and of the blurred input, the floor) against
   the sharp images, weighted by the ground-truth masks the pipeline made; a before/after PNG.

Each job is followed to its end with its progress shown; a failed job stops the demo with the
job's error.

The command is :func:`demo`, its driver :func:`run_demo`; OpenCV, httpx and the app are imported
when the demo runs, not when the CLI starts.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from api.cli.common import fail

if TYPE_CHECKING:
    import httpx

    from core.settings import Settings

app = typer.Typer()

@app.command("demo")
def demo(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="LBAG checkpoint to deblur with."),
    rig: str = typer.Option("twin", "--rig", help="Rig name (a YAML in RELOBLUR_RIGS_DIR)."),
    scene: str = typer.Option("demo-street", "--scene", help="Scene to capture and process."),
    pairs: int = typer.Option(5, "--pairs", min=1, max=200, help="Blurred/sharp pairs."),
) -> None:
    """Start the service (SQLite, simulated rig, local Dask) and drive a capture, its
    post-processing, export and LBAG deblurring through the REST API; print the metrics."""
    from api.http.server import ServeError
    from core.settings import get_settings

    if not checkpoint.is_file():
        raise fail(f"no checkpoint file {checkpoint}: give an LBAG checkpoint, e.g. the shipped "
                   "deblur/weights/lbag_twin_cpu.pt, or train one (`make demo TRAIN=1`)")
    try:
        run_demo(get_settings(), checkpoint, rig=rig, scene=scene, pairs=pairs, echo=typer.echo)
    except (DemoError, ServeError) as exc:
        raise fail(str(exc), code=1) from None


JOB_POLL_S = 0.25


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the step and the server's answer."""


def _check(response: httpx.Response, step: str) -> dict[str, Any] | list[Any]:
    if response.status_code >= 400:
        raise DemoError(f"{step}: HTTP {response.status_code}: {response.text}")
    return response.json()


def follow_job(http: httpx.Client, accepted: httpx.Response, step: str, echo) -> dict[str, Any]:
    """Poll the job that ``accepted`` (a 202) points to until it ends; DemoError unless it
    succeeded. Progress changes are echoed."""
    _check(accepted, step)
    url = accepted.headers["Location"]
    last = None
    while True:
        job = _check(http.get(url), step)
        shown = (round(job["progress"] * 100), job["message"])
        if shown != last:
            echo(f"  [{step}] job {job['id']} {job['status']} {shown[0]:3d}% {job['message'] or ''}")
            last = shown
        if job["status"] == "succeeded":
            return job
        if job["status"] in ("failed", "cancelled"):
            raise DemoError(f"{step}: job {job['id']} {job['status']}: {job['error']}")
        time.sleep(JOB_POLL_S)


def before_after(blurred: Path, deblurred: Path, sharp: Path, mask: Path, out: Path) -> Path:
    """A PNG: blurred | deblurred | sharp on top, the ground-truth mask below the blurred one."""
    import cv2
    import numpy as np

    from core.filestore import write_png

    b, d, s = (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in (blurred, deblurred, sharp))
    m = cv2.cvtColor(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR)
    top = np.concatenate([b, d, s], axis=1)
    bottom = np.concatenate([m, np.zeros_like(d), np.zeros_like(s)], axis=1)
    for x, label in zip((0, b.shape[1], 2 * b.shape[1]), ("blurred", "LBAG", "sharp"), strict=True):
        cv2.putText(top, label, (x + 10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 255), 2)
    cv2.putText(bottom, "true mask", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 255), 2)
    write_png(out, cv2.cvtColor(np.concatenate([top, bottom], axis=0), cv2.COLOR_BGR2RGB))  # atomic
    return out


def run_demo(settings: Settings, checkpoint: Path, *, rig: str = "twin", scene: str = "demo-street",
             pairs: int = 5, sharp_blur_px: float = 2.5, lightbox_exposure_ms: float = 1.8,
             lightbox_nd: float = 0.125, echo=print) -> dict[str, Any]:
    """Run the main job through the API (module docstring). ``checkpoint``: an LBAG checkpoint
    (copied into ``<data_dir>/checkpoints/`` so that the service may read it). The defaults of
    ``sharp_blur_px`` (blur tolerated in S, which sets the exposures by Eq. 2) and the lightbox
    exposure keep the simulated rig's whiteboard and lightbox below clipping. Returns the
    metrics table rows and the output paths."""
    import httpx

    from api.http.app import create_app
    from api.http.auth import create_token
    from api.http.server import ServerThread
    from core import layouts, migrate
    from core.db import make_engine, session_factory
    from deblur.data import read_image, read_mask, to_float01
    from deblur.metrics import METRIC_KEYS, average_metrics, evaluate_pair, format_table

    data_dir = Path(settings.data_dir)
    url = settings.resolved_database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        _, secret = create_token(session, "make demo", "operator")
        session.commit()
    engine.dispose()
    ckpt_rel = Path("checkpoints") / "demo" / Path(checkpoint).name
    (data_dir / ckpt_rel).parent.mkdir(parents=True, exist_ok=True)
    if Path(checkpoint).resolve() != (data_dir / ckpt_rel).resolve():
        shutil.copyfile(checkpoint, data_dir / ckpt_rel)

    # the export's `out` is relative to the exports root; the deblur job reads it through the data dir
    export_out, deblur_rel = "demo", "demo/deblurred"
    export_dir = Path(settings.resolved_exports_dir) / export_out
    try:
        export_rel = export_dir.resolve().relative_to(data_dir.resolve()).as_posix()
    except ValueError:
        raise DemoError("the demo's deblur step reads its export through the data directory: leave "
                        "RELOBLUR_EXPORTS_DIR unset, or point it inside the data directory") from None
    echo("starting the lab service (SQLite unless RELOBLUR_DATABASE_URL, Dask LocalCluster)...")
    with ServerThread(create_app(settings)) as base:
        http = httpx.Client(base_url=f"{base}/api/v1", timeout=120,
                            headers={"Authorization": f"Bearer {secret}"})
        health = _check(http.get("/health"), "health")
        echo(f"service up at {base}/api/v1 (docs: {base}/api/v1/docs); database {health['database']}")
        rig_info = _check(http.get(f"/rigs/{rig}"), "rig")
        echo(f"rig {rig!r}: {rig_info.get('description') or ''} busy={rig_info.get('busy')}")
        plan = _check(http.post("/plans/preview", json={"rig": rig, "sharp_blur_px": sharp_blur_px}), "plan")
        echo(f"exposure plan (Eq. 2): S {plan['short_exposure_s'] * 1e3:.3f} ms, B "
             f"{plan['long_exposure_s'] * 1e3:.3f} ms behind ND {plan['nd_transmittance']:g}; "
             f"expected blur S {plan['blur_s_px']:.1f} px, B {plan['blur_b_px']:.1f} px")
        lightboxes = _check(http.get("/captures", params={"kind": "lightbox"}), "captures")
        if not lightboxes:
            follow_job(http, http.post("/captures/lightbox",
                                       json={"rig": rig, "exposure_ms": lightbox_exposure_ms,
                                             "nd": lightbox_nd}),
                       "lightbox", echo)
        follow_job(http, http.post("/captures", json={"rig": rig, "scene": scene, "pairs": pairs,
                                                       "sharp_blur": sharp_blur_px,
                                                       "resume": True}),
                   "capture", echo)
        follow_job(http, http.post("/jobs/postprocess", json={"scene": scene}), "postprocess", echo)
        follow_job(http, http.post("/jobs/export", json={"out": export_out, "test_scenes": [scene],
                                                          "scenes": [scene], "overwrite": True}),
                   "export", echo)
        shutil.rmtree(data_dir / deblur_rel, ignore_errors=True)
        follow_job(http, http.post("/jobs/deblur", json={
            "inputs": [f"{export_rel}/dataset/test"], "checkpoint": ckpt_rel.as_posix(),
            "out": deblur_rel}), "deblur", echo)
        http.close()

    test_dir = export_dir / layouts.DATASET_DIR / "test"
    mask_dir = export_dir / layouts.MASKS_DIR / "test"
    rows, floor = [], []
    first = None
    for scene, seq, idx, blur in layouts.blurred_images(export_dir, "test"):
        sharp = layouts.sharp_path(export_dir, "test", scene, seq, idx)
        mask = layouts.mask_path(export_dir, "test", scene, seq, idx)
        out = next((data_dir / deblur_rel).rglob(blur.stem + "_deblurred.png"), None)
        if out is None:
            raise DemoError(f"the deblur job wrote no output for {blur}")
        gt, m = to_float01(read_image(sharp)), read_mask(mask)
        name = layouts.sample_id(scene, seq, idx)
        rows.append({"name": name, **evaluate_pair(to_float01(read_image(out)), gt, m)})
        floor.append({"name": name, **evaluate_pair(to_float01(read_image(blur)), gt, m)})
        first = first or (blur, out, sharp, mask)
    if not rows:
        raise DemoError(f"the export holds no test pair under {test_dir}")
    table = [{"name": "blurred input (mean)", **average_metrics(floor)}, *rows,
             {"name": "LBAG (mean)", **average_metrics(rows)}]
    echo("")
    echo(format_table(table, ["name", *METRIC_KEYS]))
    montage = before_after(*first, data_dir / "demo" / "before_after.png")
    echo("")
    echo(f"before (blurred) and sharp: {test_dir}")
    echo(f"after (deblurred, and LBAG's predicted masks): {data_dir / deblur_rel}")
    echo(f"ground-truth blur masks: {mask_dir}")
    echo(f"before/after picture: {montage}")
    return {"table": table, "montage": montage, "export": export_dir,
            "deblurred": data_dir / deblur_rel}
