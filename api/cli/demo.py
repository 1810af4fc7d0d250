"""``reloblur demo``: the main job, end to end through the lab service (see api/demo.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import fail

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
    from api.demo import DemoError, run_demo
    from core.settings import get_settings

    if not checkpoint.is_file():
        raise fail(f"no checkpoint file {checkpoint}: give an LBAG checkpoint, e.g. the shipped "
                   "deblur/weights/lbag_twin_cpu.pt, or train one (`make demo TRAIN=1`)")
    try:
        run_demo(get_settings(), checkpoint, rig=rig, scene=scene, pairs=pairs, echo=typer.echo)
    except DemoError as exc:
        raise fail(str(exc), code=1) from None
