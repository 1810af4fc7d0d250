"""The backup archive's format: member names, manifest constants, the errors and summaries.

Shared by writing (:mod:`core.backup_create`), reading (:mod:`core.backup_verify`) and restoring
(:mod:`core.backup_restore`); :mod:`core.backup` documents the format as a whole. Member names
are relative POSIX paths: ``db/reloblur.sqlite``, ``db/postgresql/<table>.jsonl``,
``files/<relative path>`` and ``manifest.json`` (last).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "reloblur-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/reloblur.sqlite"
POSTGRES_PREFIX = "db/postgresql/"
FILES_PREFIX = "files/"


Progress = Callable[[int, int], None]
"""``progress(done, total)``: files archived of those listed (backup), bytes read of the archive
(restore)."""


class BackupError(ValueError):
    """A backup cannot be made or restored: bad archive, unsafe member, checksum mismatch,
    unknown format version, non-empty target. The message says what and where."""


@dataclass(frozen=True)
class BackupSummary:
    """What :func:`create_backup` wrote."""

    archive: Path
    database_kind: str
    revision: str | None
    tables: dict[str, int]
    files: int
    bytes: int
    archive_bytes: int
    links: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreSummary:
    """What :func:`restore_backup` restored."""

    archive: Path
    data_dir: Path
    database_kind: str
    database: str
    revision: str | None
    schema_revision: str | None
    created_at: str
    reloblur_version: str
    tables: dict[str, int]
    files: int
    bytes: int
    links: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _unsafe_relpath(name: str) -> str | None:
    """Why ``name`` cannot be a relative POSIX path inside a folder, or ``None`` when it can."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "NUL character in the name"
    if "\\" in name:
        return "backslash in the name"
    if name.startswith("/"):
        return "absolute path"
    parts = name.split("/")
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    if ".." in parts:
        return "'..' path component"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    return None
