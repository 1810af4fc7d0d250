"""SQLite in a backup: the snapshot (online backup API, one read transaction) and, on restore,
the staged snapshot's integrity check and migration to head.

The snapshot is one file, in rollback-journal mode, archived as ``db/reloblur.sqlite``; row
counts and the ``path``/``sha256`` rows are read from it, not from the live database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core import migrate
from core.backup_database import _single_revision, _Snapshot
from core.backup_format import SQLITE_MEMBER, BackupError


def _snapshot_sqlite(db_path: Path, workdir: Path) -> _Snapshot:
    """A consistent copy of the live SQLite file (online backup API, one step)."""
    if not db_path.is_file():
        raise BackupError(f"there is no SQLite database at {db_path}: nothing to back up "
                          "(run `reloblur db upgrade` to create it)")
    dest_path = workdir / "reloblur.sqlite"
    source = sqlite3.connect(f"{db_path.as_uri()}?mode=rw", uri=True, timeout=30)
    try:
        dest = sqlite3.connect(dest_path)
        try:
            source.backup(dest)  # pages=-1: the whole database within one read transaction
        finally:
            dest.close()
    finally:
        source.close()
    snap = sqlite3.connect(dest_path)
    try:
        snap.execute("PRAGMA journal_mode=DELETE")
        check = snap.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the SQLite database {db_path} fails its integrity check: {check}")
        names = [r[0] for r in snap.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        tables, referenced = [], []
        revision = None
        if "alembic_version" in names:
            revision = _single_revision(r[0] for r in snap.execute(
                "SELECT version_num FROM alembic_version"))
        for name in names:
            if name == "alembic_version":
                continue
            q = '"' + name.replace('"', '""') + '"'
            columns = [r[1] for r in snap.execute(f"PRAGMA table_info({q})")]
            rows = snap.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
            tables.append({"name": name, "rows": rows, "columns": columns})
            if "path" in columns and "sha256" in columns:
                referenced += [(name, p, s) for p, s in snap.execute(f"SELECT path, sha256 FROM {q}")]
    finally:
        snap.close()
    return _Snapshot("sqlite", revision, [(SQLITE_MEMBER, dest_path)], tables, referenced)


def _sqlite_tables(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'alembic_version'")]
        return {n: con.execute('SELECT count(*) FROM "' + n.replace('"', '""') + '"').fetchone()[0]
                for n in sorted(names)}
    finally:
        con.close()


def _prepare_sqlite(staged: Path) -> None:
    """Check the staged snapshot and migrate it to head, in staging (nothing is visible yet)."""
    con = sqlite3.connect(staged)
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the archive's SQLite database is damaged: {exc}") from exc
    finally:
        con.close()
    if check != "ok":
        raise BackupError(f"the archive's SQLite database fails its integrity check: {check}")
    url = f"sqlite:///{staged}"
    migrate.upgrade(url)
    current = migrate.current(url)
    if current != (migrate.head(),):
        raise BackupError(f"the restored SQLite database is at {current} after migrating, "
                          f"not at head {migrate.head()}")
    con = sqlite3.connect(staged)
    try:
        # checkpoint and leave rollback-journal mode: one self-contained file, no -wal beside it
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()
