"""Which database a backup or restore works on, and its schema revision.

A URL names SQLite (a database *file*: ``:memory:`` and ``file:`` URIs are refused) or
PostgreSQL; anything else is a :class:`~core.backup_format.BackupError`. A snapshot
(:class:`_Snapshot`) is what :mod:`core.backup_sqlite` and :mod:`core.backup_postgres` hand the
archive writer: its members (archive name, file on disk), its tables (name, rows, columns) and
the ``(table, path, sha256)`` rows that name files of the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from core import migrate
from core.backup_format import BackupError
from core.models import Base

_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
"""What SQLite keeps beside a database file (never archived; a restore refuses any of them)."""


def _default_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / 'reloblur.db').resolve()}"


def _database(url: str) -> tuple[str, Path | None]:
    """``("sqlite", file)`` or ``("postgresql", None)`` for a database URL."""
    sa_url = make_url(url)
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise BackupError(f"cannot back up or restore the SQLite database {database or ':memory:'!r}: "
                              "only a database file given by its path is supported")
        return "sqlite", Path(database).resolve()
    if backend == "postgresql":
        return "postgresql", None
    raise BackupError(f"unsupported database backend {backend!r}: SQLite or PostgreSQL")


def _masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _our_tables() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables]


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic's ResolutionError / CommandError for an unknown id
        return False


def _single_revision(heads: Iterable[str]) -> str | None:
    heads = tuple(heads)
    if len(heads) > 1:
        raise BackupError(f"the database is at several alembic heads {heads}; merge them first")
    return heads[0] if heads else None


@dataclass
class _Snapshot:
    kind: str
    revision: str | None
    members: list[tuple[str, Path]]
    tables: list[dict[str, Any]]
    referenced: list[tuple[str, str, str]]  # (table, path, sha256)
