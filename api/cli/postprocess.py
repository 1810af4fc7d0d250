"""``reloblur calibrate | process | export | verify-pipeline``: the post-processing commands."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from api.cli.common import engine_at_head, fail, request_from_options

app = typer.Typer()

PARAMS_OPTION = typer.Option(
    None, "--params", help="Pipeline parameters (YAML, see configs/pipeline.yaml); default: the built-in ones."
)


def _params(path: Path | None):
    from postprocess.params import PipelineParamsError, load_params

    try:
        return load_params(path)
    except PipelineParamsError as exc:
        raise fail(str(exc)) from None


@app.command()
def calibrate(
    rig: str = typer.Option(..., "--rig", help="Rig name (as stored in the database)."),
    params: Path | None = PARAMS_OPTION,
) -> None:
    """Fit each camera's colour calibration (Eq. 3–5) on the rig's newest lightbox frames."""
    from sqlalchemy import select

    from core.db import session_factory
    from core.models import RigRecord
    from core.settings import get_settings
    from postprocess.calibration import CalibrationError
    from postprocess.pipeline import UNIT_ERRORS, ScenePipeline

    engine = engine_at_head()
    pipeline = ScenePipeline(engine, get_settings().data_dir, _params(params))
    with session_factory(engine)() as session:
        row = session.scalar(select(RigRecord).where(RigRecord.name == rig))
        if row is None:
            raise fail(f"no rig named {rig!r} in the database")
        cameras = sorted(row.cameras, key=lambda c: c.role.value)
        session.expunge_all()
    for camera in cameras:
        try:
            calibration, made = pipeline.calibration_for(camera)
        except (CalibrationError, *UNIT_ERRORS) as exc:
            raise fail(f"camera {camera.role.value}: {exc}") from None
        rms = ", ".join(f"{v:.2e}" for v in calibration.residual_rms)
        typer.echo(f"camera {camera.role.value} ({camera.serial}): calibration {calibration.calibration_id[:12]} "
                   f"{'fitted' if made else 'already fitted'}; residual RMS (R, G, B) {rms}")


@app.command()
def process(
    scene: list[str] = typer.Option(None, "--scene", help="Scene to process (repeatable)."),
    all_scenes: bool = typer.Option(False, "--all", help="Every scene that has pairs."),
    params: Path | None = PARAMS_OPTION,
) -> None:
    """Run the post-processing pipeline on scenes; products already made are reused."""
    from sqlalchemy import func, select

    from core.db import session_factory
    from core.models import Capture, CaptureKind, Scene
    from core.settings import get_settings
    from postprocess.pipeline import SceneNotFoundError, scene_names_to_process
    from postprocess.requests import ProcessRequest
    from postprocess.services import process as run_process

    if bool(scene) == all_scenes:
        raise fail("give --scene NAME (one or more) or --all")
    engine = engine_at_head()
    names = scene_names_to_process(engine) if all_scenes else list(scene)
    if not names:
        raise fail("no scene with pairs in the database: capture or import one first")
    with session_factory(engine)() as session:
        counts = dict(session.execute(
            select(Scene.name, func.count(Capture.id)).join(Capture)
            .where(Capture.kind.in_([CaptureKind.PAIR, CaptureKind.WHITEBOARD])).group_by(Scene.name)).all())
    total = sum(counts.get(n, 0) * 2 + 1 for n in names)  # scene stage, pairs (+ whiteboard), masks
    checked = _params(params).model_dump(mode="json") if params is not None else None
    requests = [request_from_options(ProcessRequest, scene=name, params=checked) for name in names]
    data_dir = get_settings().data_dir
    failed = 0
    with tqdm(total=total, desc="process", unit="unit", disable=None) as bar:
        for request in requests:
            bar.set_postfix_str(request.scene)
            try:
                outcome = run_process(engine, data_dir, request, on_unit=lambda _: bar.update())
            except SceneNotFoundError as exc:
                raise fail(str(exc)) from None
            made = ", ".join(f"{k} {v}" for k, v in sorted(outcome.made.items())) or "nothing"
            reused = ", ".join(f"{k} {v}" for k, v in sorted(outcome.reused.items())) or "nothing"
            tqdm.write(f"{request.scene}: {outcome.status.value} (run {outcome.run_id}); made {made}; reused {reused}")
            for f in outcome.failures:
                failed += 1
                tqdm.write(f"  {f['unit']}: {f['error']}: {f['message']}")
    if failed:
        raise fail(f"{failed} unit(s) failed; the others were processed (see above)", code=1)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="Output folder (ReLoBlur layout): a new (or empty) folder, or a "
                             "previous export with --overwrite; never the data directory, one of its parents, or "
                             "inside it outside the exports root (RELOBLUR_EXPORTS_DIR, default <data_dir>/exports)."),
    test_scenes: str = typer.Option(..., "--test-scenes", help="Comma-separated scenes for the test split."),
    scenes: str | None = typer.Option(None, "--scenes", help="Comma-separated scenes to export (default: all processed)."),
    params: Path | None = PARAMS_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous export (recognised by its "
                                   "export.json); any other non-empty folder is refused."),
    link: bool = typer.Option(False, "--link", help="Hard-link the product files instead of copying them."),
) -> None:
    """Export processed scenes as dataset/{train,test}/<scene>/00/<idx>_{blur,sharp}.png + masks."""
    from core.settings import get_settings
    from postprocess.export import ExportError, check_export_destination
    from postprocess.requests import ExportRequest
    from postprocess.services import export as run_export

    settings = get_settings()
    try:  # the destination rules first: a refused --out touches nothing, not even the database
        check_export_destination(out, settings.data_dir, settings.resolved_exports_dir, overwrite=overwrite)
    except ExportError as exc:
        raise fail(f"--out: {exc}") from None
    request = request_from_options(ExportRequest, out=str(out), test_scenes=[s.strip() for s in test_scenes.split(",") if s.strip()],
                       scenes=[s.strip() for s in scenes.split(",") if s.strip()] if scenes else None,
                       overwrite=overwrite, link=link,
                       params=_params(params).model_dump(mode="json") if params is not None else None)
    engine = engine_at_head()
    with tqdm(desc="export", unit="pair", disable=None) as bar:
        try:
            summary = run_export(engine, settings.data_dir, request, root=settings.resolved_exports_dir,
                                 on_pair=lambda _: bar.update())
        except ExportError as exc:
            raise fail(str(exc)) from None
    for split in ("train", "test"):
        names = summary.splits[split]
        typer.echo(f"{split}: {len(names)} scene(s), {sum(summary.pairs[n] for n in names)} pair(s): "
                   f"{', '.join(names) or '-'}")
    for name, skipped in summary.skipped.items():
        if skipped:
            typer.echo(f"  {name}: left out {', '.join(skipped)}")
    typer.echo(f"written to {summary.out}")


@app.command("verify-pipeline")
def verify_pipeline_command(
    preset: str = typer.Option("car", "--preset", help="Twin scene preset (car, pedestrian, ball)."),
    width: int = typer.Option(640, "--width", help="Sensor width (px, even); same field of view."),
    height: int = typer.Option(428, "--height", help="Sensor height (px, even)."),
    pairs: int = typer.Option(4, "--pairs", min=1, max=100, help="Blurred/sharp pairs."),
    seed: int = typer.Option(0, "--seed", help="Simulation seed."),
    noise_free: bool = typer.Option(False, "--noise-free", help="No sensor noise (alignment PSNR target 40 dB)."),
    params: Path | None = PARAMS_OPTION,
    workdir: Path | None = typer.Option(None, "--workdir", help="Keep the scene, database and products here."),
) -> None:
    """Run a twin scene through simulate → import → process; print each stage's error vs the truth."""
    from hardware_sim.spec import SceneSpecError
    from postprocess.verify import verify_pipeline

    with tqdm(total=4, desc="verify-pipeline", unit="step", disable=None) as bar:
        try:
            report = verify_pipeline(preset, width, height, pairs, seed, noise_free, _params(params), workdir,
                                     on_step=lambda label: (bar.set_postfix_str(label), bar.update()))
        except SceneSpecError as exc:
            raise fail(str(exc)) from None
    typer.echo(report.table())
    if not report.passed:
        raise fail("at least one stage missed its target", code=1)
    typer.echo("every stage within its target")
