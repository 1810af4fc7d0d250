"""``reloblur backup --out FILE`` and ``reloblur restore FILE``: the lab's database and file store
in one archive, made while the service runs (format and guarantees: ``core/backup.py``)."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from api.cli.common import fail

app = typer.Typer()


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _bar_progress(bar: tqdm):
    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return progress


@app.command("backup")
def backup(
    out: Path = typer.Option(
        ..., "--out", help="Archive to write: FILE.tar.gz (or .tgz) compressed, FILE.tar plain; "
        "must not exist. Keep it outside the data directory."
    ),
) -> None:
    """Back up the database and every file of the data directory into one archive.

    Safe while the service runs: the database snapshot comes first (SQLite online backup, or one REPEATABLE READ transaction on PostgreSQL), then the files, each with its sha256.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from core.backup import BackupError, create_backup
    from core.settings import get_settings

    settings = get_settings()
    try:
        with tqdm(desc="backup", unit="file", disable=None) as bar:
            summary = create_backup(
                out, data_dir=settings.data_dir, database_url=settings.resolved_database_url,
                progress=_bar_progress(bar),
            )
    except BackupError as exc:
        raise fail(f"{exc}; no archive was written") from None
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"the backup failed: {exc}; no archive was written", code=1) from None
    rows = sum(summary.tables.values())
    typer.echo(f"backup written to {summary.archive} ({_mb(summary.archive_bytes)})")
    typer.echo(f"  database   {summary.database_kind} at revision {summary.revision or 'none'}: "
               f"{len(summary.tables)} tables, {rows} rows")
    typer.echo(f"  files      {summary.files} ({_mb(summary.bytes)})")
    if summary.links:
        typer.echo(f"  links      {len(summary.links)} symlink(s) recorded, not archived "
                   "(their targets lie outside the backup)")
    for s in summary.skipped:
        typer.echo(f"  skipped    {s['path']}: {s['reason']}")
    for problem in summary.problems:
        typer.secho(f"warning: {problem}", err=True, fg=typer.colors.YELLOW)


@app.command("restore")
def restore(
    archive: Path = typer.Argument(..., help="An archive written by `reloblur backup`."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Target data directory (default: RELOBLUR_DATA_DIR); must be "
        "empty or absent."
    ),
    force: bool = typer.Option(
        False, "--force", help="Also restore into a non-empty data directory (never over an "
        "existing file) and into PostgreSQL tables that exist but hold no row."
    ),
) -> None:
    """Restore a backup into an empty data directory and an empty database.

    Every file is checked against the archive's sha256 manifest before anything appears in the target; the database is migrated to the newest schema. Stop the service first. The database is RELOBLUR_DATABASE_URL, or the SQLite file in the target data directory.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from core.backup import BackupError, restore_backup
    from core.settings import get_settings

    settings = get_settings()
    target = data_dir if data_dir is not None else settings.data_dir
    try:
        with tqdm(desc="restore", unit="B", unit_scale=True, disable=None) as bar:
            summary = restore_backup(
                archive, data_dir=target, database_url=settings.database_url, force=force,
                progress=_bar_progress(bar),
            )
    except BackupError as exc:
        raise fail(str(exc)) from None
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"the restore failed: {exc}; the target was left as it was", code=1) from None
    rows = sum(summary.tables.values())
    typer.echo(f"restored {summary.archive} (made {summary.created_at} by reloblur "
               f"{summary.reloblur_version}) into {summary.data_dir}")
    typer.echo(f"  database   {summary.database_kind} {summary.database}: {len(summary.tables)} "
               f"tables, {rows} rows; revision {summary.revision or 'none'} -> "
               f"{summary.schema_revision} (head)")
    typer.echo(f"  files      {summary.files} ({_mb(summary.bytes)}), sha256 verified")
    for link in summary.links:
        typer.echo(f"  not restored (symlink): {link['path']} -> {link['target']}")
    for s in summary.skipped:
        typer.echo(f"  not in the backup: {s['path']}: {s['reason']}")
