"""``reloblur import DIR``: register RAW pairs captured with other software as a scene."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from acquisition.capture import SceneExistsError
from acquisition.raw_import import SceneImportError, count_steps, import_scene, load_manifest
from api.cli.common import engine_at_head, fail
from core.filestore import FileStoreError

app = typer.Typer()


@app.command("import")
def import_(
    directory: Path = typer.Argument(..., help="Folder holding the RAW files (manifest paths are relative to it)."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="YAML or CSV (kind,index,role,path) manifest; default DIR/manifest.yaml."
    ),
    reference: bool = typer.Option(
        False, "--reference/--copy",
        help="Symlink the originals instead of copying them into the data directory.",
    ),
    scene: str | None = typer.Option(None, "--scene", help="Scene name (required for CSV; overrides YAML)."),
    rig: str | None = typer.Option(None, "--rig", help="Rig name (required for CSV; overrides YAML)."),
) -> None:
    """Import a scene's RAW pairs (and its rig's lightbox) so the pipeline can process them."""
    from core.settings import get_settings

    if not directory.is_dir():
        raise fail(f"{directory} is not a folder; give the folder that holds the RAW files")
    manifest_path = manifest or directory / "manifest.yaml"
    mode = "reference" if reference else "copy"
    try:
        total = count_steps(load_manifest(manifest_path, scene=scene, rig=rig))
    except SceneImportError as exc:
        raise fail(str(exc)) from None
    engine = engine_at_head()
    try:
        with tqdm(total=total, desc=f"import {directory.name}", unit="file", disable=None) as bar:
            summary = import_scene(
                directory, manifest_path, engine, get_settings().data_dir, mode,
                scene=scene, rig=rig, on_step=lambda _: bar.update(),
            )
    except (SceneImportError, SceneExistsError, FileStoreError, OSError) as exc:
        raise fail(f"{exc}; nothing was imported") from None
    finally:
        engine.dispose()
    kinds = ", ".join(
        f"{k} {n}" for k in ("lightbox", "whiteboard", "reference", "pair")
        if (n := sum(1 for kind, _ in summary.captures if kind == k))
    )
    typer.echo(f"scene {summary.scene!r} imported on rig {summary.rig!r} "
               f"({'new' if summary.rig_created else 'existing'} rig; run {summary.run_id})")
    typer.echo(f"  captures   {len(summary.captures)} ({kinds}), {summary.frames} frames")
    if summary.cameras_created:
        typer.echo(f"  cameras    created {', '.join(summary.cameras_created)}")
    if mode == "copy":
        typer.echo(f"  copied     {summary.bytes_copied / 1e6:.2f} MB into the data directory")
    else:
        typer.echo("  linked     the originals (symlinks; keep them where they are)")
    if not summary.rig_has_lightbox:
        typer.echo(f"  note       rig {summary.rig!r} has no lightbox capture yet: capture or import "
                   "one before processing the scene")
