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

Modules
-------
This module is the entry point and documents the whole; the work is split by job:
:mod:`core.backup_format` (member names, manifest constants, errors, summaries),
:mod:`core.backup_database` (which database a URL names, revisions),
:mod:`core.backup_sqlite` and :mod:`core.backup_postgres` (each database's snapshot and load),
:mod:`core.backup_create` (writing an archive), :mod:`core.backup_verify` (reading one back and
checking it) and :mod:`core.backup_restore` (putting it in place, undone on failure).
"""

from __future__ import annotations

from core.backup_create import create_backup
from core.backup_format import (
    FILES_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    POSTGRES_PREFIX,
    SQLITE_MEMBER,
    BackupError,
    BackupSummary,
    Progress,
    RestoreSummary,
)
from core.backup_restore import restore_backup

__all__ = [
    "FILES_PREFIX",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "POSTGRES_PREFIX",
    "SQLITE_MEMBER",
    "BackupError",
    "BackupSummary",
    "Progress",
    "RestoreSummary",
    "create_backup",
    "restore_backup",
]
