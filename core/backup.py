"""Backups of a lab: the database and the file store in one archive, made while the service runs.

:func:`create_backup` writes one archive; :func:`restore_backup` restores it into an empty data
directory (and an empty database). ``reloblur backup --out FILE`` and ``reloblur restore FILE``
(``api/cli/backup.py``) are thin wrappers.

Archive format (``format_version`` 1)
-------------------------------------
A POSIX (pax) tar file; gzip-compressed when FILE ends in ``.tar.gz`` or ``.tgz``, plain when it
ends in ``.tar`` (other names are refused, so the name always tells what the file is; restore
detects the compression from the content). Its members, in this order, are regular files only:

- ``db/reloblur.sqlite``: for SQLite, a snapshot made with SQLite's online backup API
  (``sqlite3.Connection.backup``, one step: one read transaction), in rollback-journal mode;
- ``db/postgresql/<table>.jsonl``: for PostgreSQL, one file per table of the schema
  (``core.models.Base.metadata``'s tables that exist in the database, in dependency order),
  one JSON object per row ``{"column": value}`` in primary-key order. Values are JSON scalars;
  timestamps are ISO 8601 strings with their offset; a JSON column's value is the column's JSON
  *text* (a string), so SQL NULL (``null``) and JSON ``null`` (``"null"``) stay distinct;
- ``files/<relative path>``: every regular file under the data directory, except names starting
  with ``.`` (temporary and staging files: ``.upload-*.tmp``, ``.<name>.<hex>.tmp``,
  ``.<name>.export-*/``, ``.restore-*/``) and the live SQLite database with its ``-wal``,
  ``-shm`` and ``-journal`` files. Symbolic links are never followed: each is recorded in the
  manifest (``links``: path and target), not archived and not restored;
- ``manifest.json``, last (it is written after every file was read, so it describes the bytes
  actually archived)::

    {"format": "reloblur-backup", "format_version": 1,
     "created_at": "2026-11-25T10:00:00Z",        # UTC
     "reloblur_version": "0.1.0",                  # core.__version__
     "database": {"kind": "sqlite" | "postgresql",
                  "revision": "0006" | null,       # alembic revision of the snapshot
                  "members": [{"path": "db/...", "size": 123, "sha256": "..."}],
                  "tables": [{"name": "rigs", "rows": 1, "columns": ["id", ...]}]},
     "files": [{"path": "raw/scene1/pair_0002_B.dng", "size": 123, "sha256": "..."}],
     "links": [{"path": "raw/x.dng", "target": "/mnt/originals/x.dng"}],
     "skipped": [{"path": "...", "reason": "...", "archived": false}],
     "problems": ["frames: raw/y.dng is missing from the data directory", ...]}

  ``skipped`` lists what could not be archived (a file that vanished between listing and
  reading, an unreadable one, an odd file type); ``archived: true`` marks a file that shrank
  while it was read: its member is in the tar (padded) and restore discards it. ``problems``
  names rows of the snapshot (any table with ``path`` and ``sha256`` columns: frames, products)
  whose file is not in the archive with that sha256.

PostgreSQL: a logical dump through SQLAlchemy, not ``pg_dump``
--------------------------------------------------------------
``pg_dump`` refuses a server newer than itself and is not in the service image (compose runs
PostgreSQL 16), its output names every object with its schema (a dump of one schema cannot be
loaded into another, which deployments behind ``options=-csearch_path=...`` and the test suite
need), and restoring it would need ``psql`` of a matching version. The logical dump needs only
the application's own connection: every table is read in one ``REPEATABLE READ, READ ONLY``
transaction (one snapshot, the same guarantee as ``pg_dump``; writers are not blocked), with the
alembic revision read in that same transaction. Restore creates the schema by running the
migrations up to the archive's revision, inserts the rows table by table in dependency order
(rows of a self-referencing table, ``jobs.parent_id``, parents first) in one transaction, resets
every serial sequence to its column's maximum, and then migrates to head. The price: it is
slower than ``pg_dump`` on very large databases (a lab's database is small next to its files),
and objects outside the migrations (a DBA's extra index) are not carried.

Consistency while the service runs
----------------------------------
The database snapshot is taken first, then the files are listed and read. Files are published
atomically (``core.filestore``: temporary sibling, fsync, rename) *before* the row naming them
is committed, and a published file is never rewritten in place, so every file a snapshot row
points to already exists, complete, when the listing starts; files added after the snapshot
are harmless extras. Files are opened without following links (``O_NOFOLLOW``) and read through
the open descriptor, so a file replaced or deleted while it is read still yields the bytes of
one version; one that vanished before it was opened is skipped and noted. Every snapshot row's
``path``/``sha256`` is checked against what was archived, and anything missing is reported
(``problems``) rather than failing the backup: a backup with a noted gap beats none. The archive
is written to a temporary sibling of FILE (``.<name>.<hex>.tmp``), fsynced and renamed, so a
failed backup leaves no FILE; an existing FILE is never overwritten.

Restore
-------
The target data directory must be empty or absent, and the database must not exist (SQLite:
no file at its path) or hold none of our tables (PostgreSQL). ``force`` relaxes this to "nothing
can be lost": a non-empty data directory is accepted, but a file the archive also holds is a
conflict that refuses the restore (nothing is ever overwritten or deleted), and a PostgreSQL
schema whose tables exist but hold no row at all, at the archive's revision (a fresh
``reloblur db upgrade``), is accepted. A database holding any row, or an existing SQLite file,
is always refused: move it away first. Every member is checked while it is read (regular files
only; relative names without ``..``, empty or ``.`` parts, NUL or backslash; no duplicates;
links, hard links, devices and FIFOs are refused) and extracted into a staging folder inside
the target (``.restore-<hex>``), hashed; then the manifest is checked (format, version, database
kind, revision known to this code) and every size and sha256 compared. Only then are the files
moved into place (hard link + unlink: never over an existing name) and the database put in
place last (SQLite: the snapshot, already migrated to head in staging; PostgreSQL: the rows,
committed after the files are in place), and the schema is then migrated to head. On any error
before that last step the staging folder, every file placed so far, every folder the restore
created and the (empty) tables it created are removed: the target is left as it was.

Errors about the archive or the target are :class:`BackupError` (a ``ValueError``).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    Uuid,
    bindparam,
    cast,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.engine import Connection

import core
from core import migrate
from core.db import make_engine
from core.filestore import atomic_path
from core.models import Base

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BackupError",
    "BackupSummary",
    "RestoreSummary",
    "create_backup",
    "restore_backup",
]

FORMAT = "reloblur-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "db/reloblur.sqlite"
POSTGRES_PREFIX = "db/postgresql/"
FILES_PREFIX = "files/"

_CHUNK = 1 << 20
_INSERT_BATCH = 500
_MAX_MANIFEST_BYTES = 512 << 20
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

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


# --------------------------------------------------------------------------- shared helpers


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


def _text(name: str) -> str:
    """``name`` made safe for the UTF-8 manifest (undecodable bytes shown as escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(UTC).timestamp())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_path(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    """Archive a file the backup itself wrote (a database dump); → its manifest entry."""
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mtime = int(path.stat().st_mtime)
    info.mode = 0o644
    with open(path, "rb") as f:
        reader = _HashingReader(f, info.size)
        tar.addfile(info, reader)
    if reader.short:
        raise BackupError(f"the database dump {path} changed while it was archived")
    return {"path": name, "size": info.size, "sha256": reader.hexdigest()}


class _HashingReader:
    """Reads exactly ``size`` bytes from ``f`` for tarfile, hashing them; pads with zeros (and
    sets ``short``) when the file ends early, so the tar stream stays well-formed."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f = f
        self._left = size
        self._hash = hashlib.sha256()
        self.short = False

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        parts = []
        got = 0
        while got < want and not self.short:
            chunk = self._f.read(want - got)
            if not chunk:
                self.short = True
                break
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts)
        self._hash.update(data)
        if got < want:
            data += b"\x00" * (want - got)
        self._left -= want
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# --------------------------------------------------------------------------- logical dump codecs


def _encoder(table: str, column: Any) -> Callable[[Any], Any] | None:
    """How a value of ``column`` becomes JSON (``None``: as it is)."""
    t = column.type
    if isinstance(t, JSON):
        return None  # selected as its JSON text
    if isinstance(t, DateTime | Date | Time):
        return lambda v: None if v is None else v.isoformat()
    if isinstance(t, LargeBinary):
        return lambda v: None if v is None else base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(t, Float):
        return None
    if isinstance(t, Numeric):
        return lambda v: None if v is None else str(v)
    if isinstance(t, Uuid):
        return lambda v: None if v is None else str(v)
    if isinstance(t, Integer | String | Boolean):  # Text and enums (VARCHAR + CHECK) included
        return None
    raise BackupError(f"column {table}.{column.name} has type {t!r}, which the PostgreSQL "
                      "dump does not know how to write")


def _decoder(column: Any) -> Callable[[Any], Any] | None:
    """How a JSON value of the dump becomes a bind value of ``column`` (``None``: as it is)."""
    t = column.type
    if isinstance(t, DateTime):
        return lambda v: None if v is None else datetime.fromisoformat(v)
    if isinstance(t, Date):
        return lambda v: None if v is None else date.fromisoformat(v)
    if isinstance(t, Time):
        return lambda v: None if v is None else time.fromisoformat(v)
    if isinstance(t, LargeBinary):
        return lambda v: None if v is None else base64.b64decode(v)
    if isinstance(t, Numeric) and not isinstance(t, Float):
        return lambda v: None if v is None else Decimal(v)
    return None


def _reflect(connection: Connection, names: Iterable[str]) -> list[Table]:
    present = set(inspect(connection).get_table_names())
    wanted = [n for n in names if n in present]
    metadata = MetaData()
    if wanted:
        metadata.reflect(connection, only=wanted)
    return [t for t in metadata.sorted_tables if t.name in wanted]


# --------------------------------------------------------------------------- database snapshots


@dataclass
class _Snapshot:
    kind: str
    revision: str | None
    members: list[tuple[str, Path]]
    tables: list[dict[str, Any]]
    referenced: list[tuple[str, str, str]]  # (table, path, sha256)


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


def _snapshot_postgres(url: str, workdir: Path) -> _Snapshot:
    """Every table of ours, read in one REPEATABLE READ, READ ONLY transaction, as JSON lines."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    members, tables, referenced = [], [], []
    try:
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            revision = _single_revision(
                MigrationContext.configure(connection).get_current_heads())
            for table in _reflect(connection, _our_tables()):
                columns = list(table.columns)
                encoders = [_encoder(table.name, c) for c in columns]
                select_columns = [cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c
                                  for c in columns]
                refs = "path" in table.c and "sha256" in table.c
                order = list(table.primary_key.columns) or columns
                stmt = select(*select_columns).order_by(*order)
                path = workdir / f"{table.name}.jsonl"
                n = 0
                with open(path, "w", encoding="utf-8", newline="\n") as out:
                    result = connection.execute(stmt.execution_options(yield_per=1000))
                    for row in result:
                        values = {c.name: (enc(v) if enc else v)
                                  for c, enc, v in zip(columns, encoders, row, strict=True)}
                        out.write(json.dumps(values, ensure_ascii=False, separators=(",", ":")))
                        out.write("\n")
                        if refs:
                            referenced.append((table.name, values["path"], values["sha256"]))
                        n += 1
                    out.flush()
                    os.fsync(out.fileno())
                members.append((f"{POSTGRES_PREFIX}{table.name}.jsonl", path))
                tables.append({"name": table.name, "rows": n, "columns": [c.name for c in columns]})
    finally:
        engine.dispose()
    return _Snapshot("postgresql", revision, members, tables, referenced)


# --------------------------------------------------------------------------- backup


def _archive_mode(out: Path) -> str:
    name = out.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "w:gz"
    if name.endswith(".tar"):
        return "w"
    raise BackupError(f"{out}: name the archive FILE.tar.gz (or .tgz) for a gzip-compressed "
                      "archive, or FILE.tar for an uncompressed one")


def _list_files(
    root: Path, excluded: set[str]
) -> tuple[list[str], list[dict[str, str]], list[dict[str, Any]]]:
    """Regular files under ``root`` (sorted relative POSIX paths), symlinks and what was skipped.

    Names starting with ``.`` are temporary or staging files and are left out, folders
    included; links are never followed."""
    files: list[str] = []
    links: list[dict[str, str]] = []
    skipped: list[dict[str, Any]] = []

    def walk(folder: Path, prefix: str) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append({"path": _text(prefix.rstrip("/") or "."), "archived": False,
                            "reason": f"folder cannot be listed: {exc.strerror or exc}"})
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            if rel in excluded:
                continue
            try:
                if entry.is_symlink():
                    links.append({"path": _text(rel), "target": _text(os.readlink(entry.path))})
                elif entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), rel + "/")
                elif entry.is_file(follow_symlinks=False):
                    why = _unsafe_relpath(rel)
                    if why:
                        skipped.append({"path": _text(rel), "archived": False,
                                        "reason": f"cannot be archived: {why}"})
                    else:
                        files.append(rel)
                else:
                    skipped.append({"path": _text(rel), "archived": False,
                                    "reason": "not a regular file, folder or link"})
            except FileNotFoundError:
                skipped.append({"path": _text(rel), "archived": False,
                                "reason": "vanished while the data directory was listed"})

    walk(root, "")
    return files, links, skipped


def _archive_file(
    tar: tarfile.TarFile, root: Path, rel: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Archive ``root/rel`` without following links; → (manifest entry, skipped entry)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(root / rel, flags)
    except FileNotFoundError:
        return None, {"path": rel, "archived": False, "reason": "vanished before it was read"}
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, {"path": rel, "archived": False, "reason": "became a symlink"}
        return None, {"path": rel, "archived": False,
                      "reason": f"cannot be read: {exc.strerror or exc}"}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None, {"path": rel, "archived": False, "reason": "not a regular file"}
        info = tarfile.TarInfo(FILES_PREFIX + rel)
        info.size = st.st_size
        info.mtime = int(st.st_mtime)
        info.mode = 0o644
        reader = _HashingReader(f, st.st_size)
        tar.addfile(info, reader)
    if reader.short:
        return None, {"path": rel, "archived": True, "reason": "shrank while it was read"}
    return {"path": rel, "size": st.st_size, "sha256": reader.hexdigest()}, None


def _problems(
    referenced: list[tuple[str, str, str]],
    archived: dict[str, str],
    links: list[dict[str, str]],
    skipped: list[dict[str, Any]],
) -> list[str]:
    linked = {link["path"] for link in links}
    why_skipped = {s["path"]: s["reason"] for s in skipped}
    problems = []
    for table, path, sha in referenced:
        if archived.get(path) == sha:
            continue
        if path in archived:
            problems.append(f"{table}: {path} in the data directory differs from the row's sha256")
        elif path in linked:
            problems.append(f"{table}: {path} is a symlink (its target is not archived)")
        elif path in why_skipped:
            problems.append(f"{table}: {path} was not archived: {why_skipped[path]}")
        else:
            problems.append(f"{table}: {path} is missing from the data directory")
    return problems


def create_backup(
    out: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    database_url: str | None = None,
    progress: Progress | None = None,
) -> BackupSummary:
    """Write a backup of ``data_dir`` and its database to ``out`` (see the module docstring).

    Args:
        out: the archive to write: ``*.tar.gz`` / ``*.tgz`` (gzip) or ``*.tar``; must not exist.
        data_dir: the file store.
        database_url: the database; default the SQLite file ``<data_dir>/reloblur.db``.
        progress: called as ``progress(files_done, files_total)`` while files are archived.

    Raises:
        BackupError: ``out`` exists or has an unknown extension, no data directory or
            database, an unsupported column type.
        OSError, sqlalchemy.exc.SQLAlchemyError: reading or writing failed (no ``out`` is left).
    """
    out = Path(out).absolute()
    root = Path(data_dir).resolve()
    url = database_url or _default_url(root)
    mode = _archive_mode(out)
    if out.exists() or out.is_symlink():
        raise BackupError(f"{out} already exists; choose a new name (a backup never "
                          "overwrites a file)")
    if not root.is_dir():
        raise BackupError(f"the data directory {root} does not exist")
    kind, db_path = _database(url)
    out.parent.mkdir(parents=True, exist_ok=True)

    excluded: set[str] = set()
    if db_path is not None:
        excluded |= {_relative(root, Path(str(db_path) + s)) for s in ("", *_SQLITE_SIDE_FILES)}
    excluded.add(_relative(root, out.parent.resolve() / out.name))
    excluded.discard("")

    # hidden name: a backup written inside the data directory never archives its own work files
    with tempfile.TemporaryDirectory(prefix=".reloblur-backup-", dir=out.parent) as work:
        workdir = Path(work)
        # 1. the database snapshot, before anything else
        if kind == "sqlite":
            assert db_path is not None
            snapshot = _snapshot_sqlite(db_path, workdir)
        else:
            snapshot = _snapshot_postgres(url, workdir)
        # 2. the files, listed after the snapshot
        files, links, skipped = _list_files(root, excluded)
        entries: list[dict[str, Any]] = []
        options = {"compresslevel": 6} if mode == "w:gz" else {}
        # name=out: the gzip header names the archive, not its temporary file
        with atomic_path(out) as tmp, open(tmp, "xb") as f, tarfile.open(
            name=out, mode=mode, fileobj=f, format=tarfile.PAX_FORMAT, **options
        ) as tar:
            db_members = [_add_path(tar, name, path) for name, path in snapshot.members]
            for i, rel in enumerate(files, 1):
                entry, skip = _archive_file(tar, root, rel)
                if entry is not None:
                    entries.append(entry)
                if skip is not None:
                    skipped.append(skip)
                if progress is not None:
                    progress(i, len(files))
            archived = {e["path"]: e["sha256"] for e in entries}
            problems = _problems(snapshot.referenced, archived, links, skipped)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": _utc_now(),
                "reloblur_version": core.__version__,
                "database": {
                    "kind": snapshot.kind,
                    "revision": snapshot.revision,
                    "members": db_members,
                    "tables": snapshot.tables,
                },
                "files": entries,
                "links": links,
                "skipped": skipped,
                "problems": problems,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False).encode())
    return BackupSummary(
        archive=out,
        database_kind=snapshot.kind,
        revision=snapshot.revision,
        tables={t["name"]: t["rows"] for t in snapshot.tables},
        files=len(entries),
        bytes=sum(e["size"] for e in entries),
        archive_bytes=out.stat().st_size,
        links=links,
        skipped=skipped,
        problems=problems,
    )


def _relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as POSIX, or ``""`` when it is not inside it."""
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return ""


# --------------------------------------------------------------------------- restore: archive


class _CountingReader:
    """The archive file, reporting the bytes read (the restore's progress)."""

    def __init__(self, f: IO[bytes], total: int, progress: Progress | None) -> None:
        self._f = f
        self._total = total
        self._progress = progress
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.done += len(data)
        if self._progress is not None and data:
            self._progress(self.done, self._total)
        return data


def _check_member(member: tarfile.TarInfo, seen: set[str]) -> None:
    name = member.name
    shown = repr(name)
    if not member.isreg() or member.issparse():
        what = ("a symlink" if member.issym() else "a hard link" if member.islnk()
                else "a device" if (member.ischr() or member.isblk()) else "a FIFO"
                if member.isfifo() else "a folder" if member.isdir() else "not a regular file")
        raise BackupError(f"unsafe archive member {shown}: {what}; a backup holds regular files only")
    why = _unsafe_relpath(name)
    if why:
        raise BackupError(f"unsafe archive member {shown}: {why}")
    if name not in (MANIFEST, SQLITE_MEMBER) and not name.startswith((FILES_PREFIX,
                                                                        POSTGRES_PREFIX)):
        raise BackupError(f"unexpected archive member {shown}: not part of a reloblur backup")
    if name in seen:
        raise BackupError(f"unsafe archive member {shown}: it appears twice")
    seen.add(name)


def _extract(
    archive: Path, staging: Path, progress: Progress | None
) -> tuple[dict[str, tuple[int, str]], dict[str, Any]]:
    """Extract every member into ``staging`` (checking each first); → {name: (size, sha256)}
    and the manifest."""
    extracted: dict[str, tuple[int, str]] = {}
    manifest_bytes: bytes | None = None
    seen: set[str] = set()
    current = "(the start)"
    try:
        with open(archive, "rb") as raw:
            counting = _CountingReader(raw, archive.stat().st_size, progress)
            with tarfile.open(fileobj=counting, mode="r|*") as tar:
                for member in tar:
                    current = repr(member.name)
                    _check_member(member, seen)
                    src = tar.extractfile(member)
                    assert src is not None
                    if member.name == MANIFEST:
                        if member.size > _MAX_MANIFEST_BYTES:
                            raise BackupError(f"{MANIFEST} is {member.size} bytes: too large")
                        manifest_bytes = src.read()
                        continue
                    dest = staging / member.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    size = 0
                    with open(dest, "xb") as f:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            f.write(chunk)
                            size += len(chunk)
                        f.flush()
                        os.fsync(f.fileno())
                    if size != member.size:
                        raise BackupError(f"archive member {current} is truncated")
                    with suppress(OverflowError, OSError):
                        os.utime(dest, (member.mtime, member.mtime))
                    extracted[member.name] = (size, digest.hexdigest())
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive} is damaged or not a backup archive (reading member "
                          f"{current}): {exc}") from exc
    if manifest_bytes is None:
        raise BackupError(f"{archive} has no {MANIFEST}: it is not a complete reloblur backup")
    try:
        manifest = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"the {MANIFEST} of {archive} is damaged: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BackupError(f"the {MANIFEST} of {archive} is damaged: not a JSON object")
    return extracted, manifest


def _check_manifest(
    manifest: dict[str, Any], extracted: dict[str, tuple[int, str]], target_kind: str
) -> None:
    """The format is known, the database fits the target, and every member matches the
    manifest (sizes, sha256s, nothing missing and nothing extra)."""
    if manifest.get("format") != FORMAT:
        raise BackupError(f"not a reloblur backup: {MANIFEST} says format {manifest.get('format')!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BackupError(f"unknown backup format version {version!r}: this reloblur "
                          f"({core.__version__}) reads version {FORMAT_VERSION}")
    try:
        database = manifest["database"]
        kind = database["kind"]
        revision = database["revision"]
        db_members = list(database["members"])
        files = list(manifest["files"])
        skipped = list(manifest.get("skipped", []))
    except (KeyError, TypeError) as exc:
        raise BackupError(f"the {MANIFEST} is incomplete: no {exc}") from exc
    if kind != target_kind:
        raise BackupError(f"the archive holds a {kind} database but the target database is "
                          f"{target_kind}; restore it with RELOBLUR_DATABASE_URL set to a {kind} "
                          "database")
    if revision is not None and not _known_revision(revision):
        raise BackupError(f"the archive's schema revision {revision!r} is unknown to this "
                          f"reloblur ({core.__version__}, head {migrate.head()}); restore it with "
                          f"reloblur {manifest.get('reloblur_version')} or newer")
    expected: dict[str, tuple[int, str]] = {}
    try:
        for entry in db_members:
            expected[entry["path"]] = (entry["size"], entry["sha256"])
        for entry in files:
            why = _unsafe_relpath(entry["path"])
            if why:
                raise BackupError(f"unsafe path {entry['path']!r} in the {MANIFEST}: {why}")
            expected[FILES_PREFIX + entry["path"]] = (entry["size"], entry["sha256"])
        discarded = {FILES_PREFIX + s["path"] for s in skipped if s.get("archived")}
        if kind == "postgresql":
            for t in database["tables"]:
                if f"{POSTGRES_PREFIX}{t['name']}.jsonl" not in expected:
                    raise BackupError(f"table {t['name']!r} has no dump in the {MANIFEST}")
    except (KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"the {MANIFEST} is malformed ({type(exc).__name__}: {exc})") from exc
    for name, (size, sha) in expected.items():
        if name not in extracted:
            raise BackupError(f"archive member {name!r} listed in the {MANIFEST} is missing")
        got_size, got_sha = extracted[name]
        if got_sha != sha or got_size != size:
            raise BackupError(f"checksum mismatch: archive member {name!r} has sha256 "
                              f"{got_sha} ({got_size} bytes), the {MANIFEST} says {sha} "
                              f"({size} bytes); the archive is damaged")
    for name in extracted:
        if name not in expected and name not in discarded:
            raise BackupError(f"archive member {name!r} is not in the {MANIFEST}")


# --------------------------------------------------------------------------- restore: targets


def _check_data_dir(data_dir: Path, force: bool) -> None:
    if data_dir.is_symlink() and not data_dir.exists():
        raise BackupError(f"the data directory {data_dir} is a dangling symlink")
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a folder")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"the data directory {data_dir} is not empty; restore into an empty "
                          "or new folder (--force restores beside existing files, never over one)")


def _postgres_state(url: str) -> tuple[list[str], int, str | None]:
    """Our tables present in the target schema, their rows in all, its revision."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            ours = [n for n in (*_our_tables(), "alembic_version") if n in present]
            rows = 0
            for name in ours:
                if name != "alembic_version":
                    table = Table(name, MetaData())
                    rows += connection.execute(select(func.count()).select_from(table)).scalar_one()
            revision = None
            if "alembic_version" in present:
                revision = _single_revision(MigrationContext.configure(connection).get_current_heads())
            return ours, rows, revision
    finally:
        engine.dispose()


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


def _load_postgres(url: str, staging: Path, manifest: dict[str, Any], create: bool,
                   publish: Callable[[], None], undo: list[Callable[[], None]]) -> None:
    """Create the schema (migrations to the archive's revision), insert every table's rows,
    reset the sequences, place the files, commit (the caller then migrates to head)."""
    revision = manifest["database"]["revision"]
    if create and revision is not None:
        undo.append(lambda: _drop_created_schema(url))
        migrate.upgrade(url, revision)
    dumped = {t["name"]: t for t in manifest["database"]["tables"]}
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            tables = _reflect(connection, dumped)
            missing = set(dumped) - {t.name for t in tables}
            if missing:
                raise BackupError(f"the target schema at revision {revision} lacks the tables "
                                  f"{sorted(missing)} of the archive")
            for table in tables:
                _insert_table(connection, table, dumped[table.name],
                              staging / f"{POSTGRES_PREFIX}{table.name}.jsonl")
            for table in tables:
                _reset_sequences(connection, table)
            publish()  # the files are in place before the rows that name them are committed
    finally:
        engine.dispose()


def _drop_created_schema(url: str) -> None:
    """Undo the migrations a failed restore ran on a database that had none of our tables."""
    migrate.downgrade(url, "base")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if "alembic_version" in inspect(connection).get_table_names():
                left = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
                if left == 0:
                    connection.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()


def _insert_table(connection: Connection, table: Table, dumped: dict[str, Any], path: Path) -> None:
    columns = {c.name: c for c in table.columns}
    if set(dumped["columns"]) != set(columns):
        raise BackupError(f"table {table.name}: the archive has columns {sorted(dumped['columns'])}, "
                          f"the target schema {sorted(columns)}")
    decoders = {name: _decoder(c) for name, c in columns.items()}
    values = {
        name: cast(bindparam(f"p_{name}", type_=Text), c.type) if isinstance(c.type, JSON)
        else bindparam(f"p_{name}", type_=c.type)
        for name, c in columns.items()
    }
    stmt = table.insert().values(values)
    self_refs = [(fk.parent.name, fk.column.name) for fk in table.foreign_keys
                 if fk.column.table is table]
    inserted: dict[str, set[Any]] = {ref: set() for _, ref in self_refs}
    batch: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    count = 0

    def ready(row: dict[str, Any]) -> bool:
        return all(row[f"p_{col}"] is None or row[f"p_{col}"] in inserted[ref]
                   for col, ref in self_refs)

    def take(row: dict[str, Any]) -> None:
        nonlocal count
        batch.append(row)
        for _, ref in self_refs:
            inserted[ref].add(row[f"p_{ref}"])
        count += 1
        if len(batch) >= _INSERT_BATCH:
            flush()

    def flush() -> None:
        if batch:
            connection.execute(stmt, batch)
            batch.clear()

    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BackupError(f"{path.name} line {line_no}: not JSON ({exc})") from exc
            row = {f"p_{k}": (decoders[k](v) if decoders[k] else v) for k, v in obj.items()}
            if ready(row):
                take(row)
            else:
                pending.append(row)
    while pending:  # rows whose parent (same table) came later in the dump
        still = [r for r in pending if not ready(r)]
        if len(still) == len(pending):
            raise BackupError(f"table {table.name}: {len(still)} rows reference rows that are "
                              "not in the archive")
        for r in pending:
            if ready(r):
                take(r)
        pending = still
    flush()
    if count != dumped["rows"]:
        raise BackupError(f"table {table.name}: the archive holds {count} rows, its manifest "
                          f"says {dumped['rows']}")


def _reset_sequences(connection: Connection, table: Table) -> None:
    quote = connection.dialect.identifier_preparer.quote
    for column in table.primary_key.columns:
        if not isinstance(column.type, Integer):
            continue
        sequence = connection.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                      {"t": quote(table.name), "c": column.name}).scalar()
        if sequence:
            qt, qc = quote(table.name), quote(column.name)
            connection.execute(text(
                f"SELECT setval(:s, COALESCE((SELECT MAX({qc}) FROM {qt}), 1), "
                f"(SELECT MAX({qc}) FROM {qt}) IS NOT NULL)"), {"s": sequence})


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
