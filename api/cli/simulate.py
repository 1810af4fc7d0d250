"""``reloblur simulate``: write one simulated scene session (DNG frames + ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from api.cli.common import fail
from hardware_sim.scene_writer import OutputExistsError, simulate_scene
from hardware_sim.spec import (
    SceneSpecError,
    load_preset,
    load_scene_file,
    preset_names,
    with_sensor_size,
    with_sharp_timing,
)

app = typer.Typer()


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", help="Output folder (must not exist unless --overwrite)."),
    preset: str | None = typer.Option(None, "--preset", help="A bundled scene: " + ", ".join(preset_names())),
    scene: Path | None = typer.Option(None, "--scene", help="A scene spec YAML file instead of a preset."),
    pairs: int = typer.Option(3, "--pairs", min=1, max=10000, help="Blurred/sharp pairs to capture."),
    width: int | None = typer.Option(None, "--width", help="Sensor width (px, even); same field of view."),
    height: int | None = typer.Option(None, "--height", help="Sensor height (px, even); same field of view."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives identical bytes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    sharp_timing: str | None = typer.Option(
        None, "--sharp-timing", help="When camera S's exposure starts: centre (of B's; the default) or start "
        "(with B's, as in the published ReLoBlur set). Default: the scene's exposure.sharp_timing."),
) -> None:
    """Simulate the two-camera rig on one scene: lightbox, whiteboard, reference and N pairs."""
    if (preset is None) == (scene is None):
        raise fail("give exactly one of --preset NAME or --scene SPEC.yaml")
    try:
        spec = load_preset(preset) if preset is not None else load_scene_file(scene)
        spec = with_sharp_timing(with_sensor_size(spec, width, height), sharp_timing)
    except SceneSpecError as exc:
        raise fail(str(exc)) from None
    steps = pairs + 4
    with tqdm(total=steps, desc=f"simulate {spec.name}", unit="shot", disable=None) as bar:
        try:
            summary = simulate_scene(spec, pairs, out, seed=seed, overwrite=overwrite, on_step=lambda _: bar.update())
        except (OutputExistsError, SceneSpecError, ValueError) as exc:
            raise fail(str(exc)) from None
    s = spec.sensor
    typer.echo(f"scene {summary.scene!r} (seed {summary.seed}) → {summary.out_dir}")
    typer.echo(f"  sensor          {s.width}×{s.height}, {s.bits}-bit {s.cfa_pattern}")
    typer.echo(f"  exposures       tS = {summary.short_exposure_s * 1e3:.3f} ms (camera S), "
               f"tL = {summary.long_exposure_s * 1e3:.3f} ms (camera B), τ = {summary.nd_transmittance:g}")
    where = "at the centre of B's" if summary.sharp_timing == "centre" else "together with B's"
    typer.echo(f"  sharp timing    {summary.sharp_timing}: S starts {summary.sharp_delay_s * 1e3:.3f} ms after B ({where})")
    typer.echo(f"  blur length     B {summary.blur_px_b:.1f} px, S {summary.blur_px_s:.1f} px (Eq. 2, fastest object)")
    typer.echo(f"  blurred area    {100 * summary.mean_blurred_area_fraction:.2f} % of the frame (mean over pairs)")
    typer.echo(f"  {'pair':<10}{'trigger':>8}{'t0 (ms)':>10}{'area %':>9}{'samples B/S':>13}")
    for r in summary.rows:
        typer.echo(
            f"  {r['shot']:<10}{r['trigger_index']:>8}{r['trigger_time_s'] * 1e3:>10.1f}"
            f"{100 * r['blurred_area_fraction']:>9.2f}{r['samples_B']:>8}/{r['samples_S']}"
        )
