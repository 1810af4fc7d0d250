"""``reloblur rig check | plan | capture | capture-lightbox``: the lab operator's commands."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from acquisition.planner import (
    ExposurePlan,
    PlanError,
)
from acquisition.rig_plan import plan_for_rig
from api.cli.common import engine_at_head, fail, request_from_options

app = typer.Typer()

rig_app = typer.Typer(help="The capture rig: identify instruments and cameras.", no_args_is_help=True)
app.add_typer(rig_app, name="rig")

RIG_OPTION = typer.Option(..., "--rig", help="Rig file (YAML), e.g. configs/rigs/twin.yaml, or a rig name in RELOBLUR_RIGS_DIR (twin).")
SHARP_TIMING_HELP = (
    "When camera S's exposure starts: centre (of camera B's: S triggered (tL − tS)/2 after B) or start "
    "(together with B's, as in the published ReLoBlur set). Default: the rig's sharp_timing, else centre."
)



def _print_plan(plan: ExposurePlan) -> None:
    typer.echo(f"  image distance l'   {plan.image_distance_m * 1e3:.3f} mm ({plan.pixels_per_metre:.1f} px/m on the object plane)")
    typer.echo(f"  camera S (sharp)    tS = {plan.short_exposure_s * 1e3:.6f} ms, blur {plan.blur_s_px:.2f} px")
    typer.echo(f"  camera B (blurred)  tL = {plan.long_exposure_s * 1e3:.6f} ms behind ND τ = {plan.nd_transmittance:g}, "
               f"blur {plan.blur_b_px:.2f} px")
    typer.echo(f"  pulse widths        A→B {plan.pulse_width_b_s:.11f} s, B→S {plan.pulse_width_s_s:.11f} s")
    where = "S's exposure at the centre of B's" if plan.sharp_timing == "centre" else "both exposures start together"
    typer.echo(f"  sharp timing        {plan.sharp_timing}: S triggered {plan.sharp_delay_s * 1e3:.6f} ms after B "
               f"(channel B delay {plan.sharp_delay_s:.11f} s beyond channel A): {where}")
    typer.echo("  ND options:")
    for o in plan.options:
        mark = "*" if o.transmittance == plan.nd_transmittance else " "
        typer.echo(f"   {mark} τ={o.transmittance:<8g} tL={o.long_exposure_s * 1e3:10.4f} ms  blur {o.blur_b_px:7.2f} px  "
                   f"{o.problem or 'ok'}")


def _plan_from_options(rig_cfg, distance, speed, focal_length, image_distance, pixel_pitch, sharp_blur, nd,
                       blur_min, blur_max, target_blur, sharp_timing=None) -> ExposurePlan:
    return plan_for_rig(
        rig_cfg, distance_m=distance, speed_mps=speed, pixel_pitch_um=pixel_pitch, focal_length_mm=focal_length,
        image_distance_mm=image_distance, nd_filters=tuple(float(t) for t in nd.split(",")) if nd else None,
        sharp_blur_px=sharp_blur, blur_range_px=(blur_min, blur_max), target_blur_px=target_blur,
        sharp_timing=sharp_timing, names=_CLI_NAMES,
    )


#: How the plan's parameters are spelt on this command line (for the errors that name them).
_CLI_NAMES = {"distance_m": "--distance", "speed_mps": "--speed", "pixel_pitch_um": "--pixel-pitch",
              "focal_length_mm": "--focal-length", "image_distance_mm": "--image-distance",
              "sharp_timing": "--sharp-timing", "rig": "--rig", "target_blur_px": "--target-blur"}


def _load_rig(path: Path | None):
    """``--rig``: a rig file, or a rig's name in ``RELOBLUR_RIGS_DIR`` (the identity the API and
    the jobs use: ``<rigs_dir>/<name>.yaml`` describing rig ``name``)."""
    from acquisition.rig import RigConfigError, load_rig, load_rig_config
    from core.settings import get_settings

    if path is None:
        return None
    try:
        if path.is_file() or path.suffix or len(path.parts) > 1:
            return load_rig_config(path)
        return load_rig(get_settings().rigs_dir, str(path))
    except RigConfigError as exc:
        raise fail(str(exc)) from None


@app.command()
def plan(
    distance: float | None = typer.Option(None, "--distance", help="Object distance d (m)."),
    speed: float | None = typer.Option(None, "--speed", help="Object speed v (m/s)."),
    focal_length: float | None = typer.Option(None, "--focal-length", help="Focal length f (mm)."),
    image_distance: float | None = typer.Option(None, "--image-distance", help="Image distance l' (mm), instead of f."),
    pixel_pitch: float | None = typer.Option(None, "--pixel-pitch", help="Pixel pitch c (µm)."),
    sharp_blur: float = typer.Option(6.0, "--sharp-blur", help="Blur tolerated in the sharp image (px)."),
    nd: str | None = typer.Option(None, "--nd", help="ND transmittances, comma-separated."),
    blur_min: float = typer.Option(15.0, "--blur-min", help="Smallest acceptable blur in B (px)."),
    blur_max: float = typer.Option(70.0, "--blur-max", help="Largest acceptable blur in B (px)."),
    target_blur: float | None = typer.Option(None, "--target-blur", help="Preferred blur in B (px)."),
    rig: Path | None = typer.Option(None, "--rig", help="Take optics, ND filters and the sharp timing from a rig (file or name in RELOBLUR_RIGS_DIR)."),
    sharp_timing: str | None = typer.Option(None, "--sharp-timing", help=SHARP_TIMING_HELP),
) -> None:
    """Print the exposure plan of Eq. 2: tS, the ND filter, tL, the blur in B, the pulse widths and
    camera S's trigger delay."""
    try:
        result = _plan_from_options(_load_rig(rig), distance, speed, focal_length, image_distance, pixel_pitch,
                                    sharp_blur, nd, blur_min, blur_max, target_blur, sharp_timing)
    except PlanError as exc:
        raise fail(str(exc)) from None
    typer.echo("exposure plan")
    _print_plan(result)


def _open_rig(rig_path: Path):
    from acquisition.cameras import CameraError
    from acquisition.rig import build_rig
    from acquisition.synchronizer import SynchronizerError

    cfg = _load_rig(rig_path)
    try:
        return build_rig(cfg)
    except (SynchronizerError, CameraError) as exc:
        raise fail(f"rig {cfg.name!r}: {exc}") from None


@rig_app.command("check")
def rig_check(rig: Path = RIG_OPTION) -> None:
    """Identify the pulse generator, open both cameras, list their features and what cannot be set."""
    from acquisition.cameras import CameraError
    from acquisition.capture import camera_settings

    with _open_rig(rig) as r:
        ident = r.synchronizer.identify()
        typer.echo(f"rig {r.name!r}")
        typer.echo(f"  synchronizer  {ident.make} {ident.model}, serial {ident.serial}, firmware {ident.firmware}")
        for role, camera in r.cameras.items():
            typer.echo(f"  camera {role}      {camera.vendor} {camera.model}, serial {camera.serial}")
            for name, value in sorted(camera.features().items()):
                typer.echo(f"      {name:<22} {value}")
            for name, value in camera_settings(1e-3, r.config.optics).items():
                try:  # one at a time, so that every refusal is listed
                    why = camera.configure({name: value}).not_applied.get(name)
                except CameraError as exc:
                    why = str(exc)
                if why:
                    typer.echo(f"      cannot set {name:<15} {why}")



@app.command()
def capture(
    rig: Path = RIG_OPTION,
    scene: str = typer.Option(..., "--scene", help="Scene name (letters, digits, _ . -)."),
    pairs: int = typer.Option(..., "--pairs", min=1, max=100000, help="Blurred/sharp pairs to capture."),
    resume: bool = typer.Option(False, "--resume", help="Continue a scene from its first missing trigger."),
    distance: float | None = typer.Option(None, "--distance", help="Object distance d (m)."),
    speed: float | None = typer.Option(None, "--speed", help="Object speed v (m/s)."),
    sharp_blur: float = typer.Option(6.0, "--sharp-blur", help="Blur tolerated in the sharp image (px)."),
    target_blur: float | None = typer.Option(None, "--target-blur", help="Preferred blur in B (px)."),
    sharp_timing: str | None = typer.Option(None, "--sharp-timing", help=SHARP_TIMING_HELP),
) -> None:
    """Capture a scene session: whiteboard, reference, then N blurred/sharp pairs (one trigger each)."""
    from acquisition.cameras import CameraError
    from acquisition.capture import CaptureError
    from acquisition.requests import SceneCaptureRequest
    from acquisition.services import capture_scene, plan_scene_capture
    from acquisition.synchronizer import SynchronizerError
    from core.settings import get_settings

    rig_cfg = _load_rig(rig)
    request = request_from_options(SceneCaptureRequest, _CLI_NAMES, scene=scene, pairs=pairs, resume=resume, sharp_blur=sharp_blur,
                       distance_m=distance, speed_mps=speed, target_blur_px=target_blur, sharp_timing=sharp_timing)
    try:
        exposure_plan = plan_scene_capture(rig_cfg, request, names=_CLI_NAMES)
    except PlanError as exc:
        raise fail(str(exc)) from None
    engine = engine_at_head()
    with tqdm(total=pairs + 2, desc=f"capture {scene}", unit="trigger", disable=None) as bar:
        try:
            _, outcome = capture_scene(rig_cfg, request, get_settings().data_dir, engine, plan=exposure_plan,
                                       on_stored=lambda i, s: bar.update())
        except (SynchronizerError, CameraError) as exc:
            raise fail(f"rig {rig_cfg.name!r}: {exc}") from None
        except CaptureError as exc:
            raise fail(f"{exc}. Complete pairs were kept; continue with --resume.") from None
        except KeyboardInterrupt:
            raise fail("interrupted; complete pairs were kept; continue with --resume") from None
        bar.update(len(outcome.already_present))
    typer.echo(f"scene {scene!r}: stored triggers {outcome.stored or 'none'}; already present "
               f"{outcome.already_present or 'none'} (run {outcome.run_id}, {outcome.status})")


@app.command("capture-lightbox")
def capture_lightbox(
    rig: Path = RIG_OPTION,
    exposure_ms: float = typer.Option(10.0, "--exposure-ms", help="Camera S's exposure (ms)."),
    nd: float = typer.Option(1.0, "--nd", help="ND filter on camera B (B exposes exposure/τ)."),
) -> None:
    """Capture one lightbox flat field per camera (colour calibration)."""
    from acquisition import services
    from acquisition.cameras import CameraError
    from acquisition.capture import CaptureError
    from acquisition.requests import LightboxRequest
    from acquisition.synchronizer import SynchronizerError
    from core.settings import get_settings

    rig_cfg = _load_rig(rig)
    request = request_from_options(LightboxRequest, _CLI_NAMES, exposure_ms=exposure_ms, nd=nd)
    engine = engine_at_head()
    try:
        _, outcome = services.capture_lightbox(rig_cfg, request, get_settings().data_dir, engine)
    except (SynchronizerError, CameraError) as exc:
        raise fail(f"rig {rig_cfg.name!r}: {exc}") from None
    except (CaptureError, PlanError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"lightbox capture stored as trigger {outcome.stored[0]} (run {outcome.run_id})")
