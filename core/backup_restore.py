"""Restoring a backup: the target checked, the archive extracted and verified in staging, then
files and database put in place without ever overwriting anything, and every step undone on
failure.

:func:`restore_backup` is the entry point (:mod:`core.backup` documents the rules: an empty
target, or with ``force`` one where nothing can be lost). Files are placed by hard link + unlink
(copy + rename across file systems), never over an existing name; each placed file and created
folder registers its own removal, run in reverse if a later step fails.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from core import migrate
from core.backup_database import (
    _SQLITE_SIDE_FILES,
    _database,
    _default_url,
    _masked,
    _single_revision,
)
from core.backup_format import (
    FILES_PREFIX,
    SQLITE_MEMBER,
    BackupError,
    Progress,
    RestoreSummary,
)
from core.backup_postgres import _load_postgres, _postgres_state
from core.backup_sqlite import _prepare_sqlite, _sqlite_tables
from core.backup_verify import _check_manifest, _extract


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_data_dir(data_dir: Path, force: bool) -> None:
    if data_dir.is_symlink() and not data_dir.exists():
        raise BackupError(f"the data directory {data_dir} is a dangling symlink")
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a folder")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"the data directory {data_dir} is not empty; restore into an empty "
                          "or new folder (--force restores beside existing files, never over one)")


def _check_database(url: str, kind: str, db_path: Path | None, force: bool,
                    revision: str | None = None, final: bool = False) -> bool:
    """Refuse a target database with anything in it; → whether the schema must be created."""
    shown = _masked(url)
    if kind == "sqlite":
        assert db_path is not None
        for p in (db_path, *(Path(str(db_path) + s) for s in _SQLITE_SIDE_FILES)):
            if p.exists() or p.is_symlink():
                raise BackupError(f"a SQLite database already exists at {p}; restore never "
                                  "replaces a database: move it away first")
        return True
    ours, rows, current = _postgres_state(url)
    if not ours:
        return True
    if rows:
        raise BackupError(f"the database {shown} already holds data ({rows} rows in our tables); "
                          "restore never writes into a database with data: restore into an empty "
                          "database or schema")
    if not force:
        raise BackupError(f"the database {shown} already has our tables (empty, revision "
                          f"{current}); restore with --force to load into them, or into an "
                          "empty schema")
    if final and current != revision:
        raise BackupError(f"the database {shown} has our tables (empty) at revision {current}, "
                          f"the archive is at {revision}: run `reloblur db downgrade base` on it "
                          "first, or restore into an empty schema")
    return False


@contextmanager
def _undo_on_error() -> Iterator[list[Callable[[], None]]]:
    undo: list[Callable[[], None]] = []
    try:
        yield undo
    except BaseException:
        for step in reversed(undo):
            with suppress(Exception):
                step()
        raise


def _create_dirs(path: Path, undo: list[Callable[[], None]]) -> None:
    """``mkdir -p path``, registering the removal of every folder it creates."""
    missing = []
    p = path
    while not (p.exists() or p.is_symlink()) and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        undo.append(d.rmdir)


def _make_dirs(path: Path, root: Path, undo: list[Callable[[], None]]) -> None:
    """Create ``path`` inside ``root`` as real folders (an existing link or file on the way is
    refused: it could lead out of ``root``), registering their removal."""
    rel = path.relative_to(root)
    check = root
    for part in rel.parts:
        check = check / part
        if check.is_symlink() or (check.exists() and not check.is_dir()):
            raise BackupError(f"cannot restore into {path}: {check} is a symlink or a file")
    _create_dirs(path, undo)


def _place(src: Path, dest: Path, undo: list[Callable[[], None]]) -> None:
    """Move ``src`` to ``dest`` without ever replacing an existing ``dest``."""
    try:
        os.link(src, dest)
    except FileExistsError:
        raise BackupError(f"{dest} already exists; restore never overwrites a file") from None
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        # no hard links here (another file system): copy beside it, then link or fail
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
        shutil.copyfile(src, tmp)
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if dest.exists() or dest.is_symlink():
                raise BackupError(f"{dest} already exists; restore never overwrites a file") from None
            os.rename(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    undo.append(dest.unlink)
    src.unlink()


def _publish_files(staging: Path, data_dir: Path, files: list[dict[str, Any]],
                   undo: list[Callable[[], None]]) -> None:
    folders: set[Path] = set()
    for entry in files:  # conflicts first: refuse before a single file is placed
        dest = data_dir / entry["path"]
        if dest.exists() or dest.is_symlink():
            raise BackupError(f"{dest} already exists; restore never overwrites a file")
    for entry in files:
        dest = data_dir / entry["path"]
        _make_dirs(dest.parent, data_dir, undo)
        _place(staging / FILES_PREFIX / entry["path"], dest, undo)
        folders.add(dest.parent)
    for folder in folders:
        _fsync_dir(folder)


def restore_backup(
    archive: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    database_url: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreSummary:
    """Restore ``archive`` into ``data_dir`` and the database (see the module docstring).

    Args:
        archive: a file written by :func:`create_backup`.
        data_dir: the target file store: absent or empty (see ``force``).
        database_url: the target database; default the SQLite file ``<data_dir>/reloblur.db``.
            It must not exist (SQLite) or hold none of our tables (PostgreSQL).
        force: accept a non-empty ``data_dir`` (a file the archive holds must not exist there)
            and a PostgreSQL schema whose tables hold no row, at the archive's revision.
        progress: called as ``progress(bytes_read, archive_bytes)`` while the archive is read.

    Raises:
        BackupError: damaged or unsafe archive, unknown format version or schema revision,
            checksum mismatch, non-empty target; the target is left as it was.
        OSError, sqlalchemy.exc.SQLAlchemyError: reading or writing failed (likewise undone).
    """
    archive = Path(archive).absolute()
    if not archive.is_file():
        raise BackupError(f"no backup archive at {archive}")
    data_dir = Path(data_dir).absolute()
    url = database_url or _default_url(data_dir)
    kind, db_path = _database(url)
    _check_data_dir(data_dir, force)
    _check_database(url, kind, db_path, force)

    with _undo_on_error() as undo:
        _create_dirs(data_dir, undo)
        staging = data_dir / f".restore-{secrets.token_hex(6)}"
        staging.mkdir(mode=0o700)
        try:
            extracted, manifest = _extract(archive, staging, progress)
            _check_manifest(manifest, extracted, kind)
            database = manifest["database"]
            files = manifest["files"]
            revision = database["revision"]
            create = _check_database(url, kind, db_path, force, revision, final=True)

            def publish() -> None:
                _publish_files(staging, data_dir, files, undo)

            if kind == "sqlite":
                assert db_path is not None
                staged_db = staging / SQLITE_MEMBER
                _prepare_sqlite(staged_db)
                tables = _sqlite_tables(staged_db)
                publish()
                _create_dirs(db_path.parent, undo)
                _place(staged_db, db_path, undo)
                _fsync_dir(db_path.parent)
            else:
                tables = {t["name"]: t["rows"] for t in database["tables"]}
                _load_postgres(url, staging, manifest, create, publish, undo)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # the schema must end at the migration head (SQLite was migrated in staging already)
    head = migrate.head()
    try:
        if kind == "postgresql" and revision != head:
            migrate.upgrade(url)
        schema_revision = _single_revision(migrate.current(url))
    except Exception as exc:
        raise BackupError(f"the backup was restored at schema revision {revision}, but "
                          f"migrating it to head {head} failed: {exc}; run "
                          "`reloblur db upgrade`") from exc
    if schema_revision != head:
        raise BackupError(f"the backup was restored, but the schema is at {schema_revision}, "
                          f"not head {head}: run `reloblur db upgrade`")
    return RestoreSummary(
        archive=archive,
        data_dir=data_dir,
        database_kind=kind,
        database=str(db_path) if db_path is not None else _masked(url),
        revision=revision,
        schema_revision=schema_revision,
        created_at=str(manifest.get("created_at")),
        reloblur_version=str(manifest.get("reloblur_version")),
        tables=tables,
        files=len(files),
        bytes=sum(e["size"] for e in files),
        links=list(manifest.get("links", [])),
        skipped=list(manifest.get("skipped", [])),
    )
