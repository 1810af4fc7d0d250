"""Writing a backup: the database snapshot first, then every file of the store, then the manifest.

:func:`create_backup` is the entry point (:mod:`core.backup` documents the format and why a
backup made while the service runs is consistent). Files are listed without following links
(links are recorded, not archived), read through a descriptor opened with ``O_NOFOLLOW`` and
hashed while they stream into the tar (SHA-256); a file that vanished or shrank is noted in
``skipped``, and snapshot rows whose file is not archived with their sha256 in ``problems``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import core
from core.backup_database import _SQLITE_SIDE_FILES, _database, _default_url
from core.backup_format import (
    FILES_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    BackupError,
    BackupSummary,
    Progress,
    _unsafe_relpath,
)
from core.backup_postgres import _snapshot_postgres
from core.backup_sqlite import _snapshot_sqlite
from core.filestore import atomic_path


def _text(name: str) -> str:
    """``name`` made safe for the UTF-8 manifest (undecodable bytes shown as escapes)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
