"""Reading a backup archive back: every member checked, extracted and hashed, then the manifest
checked against what was read.

A member must be a regular file with a safe relative name (no ``..``, empty or ``.`` parts, NUL,
backslash), one of the archive's own names, and appear once; links, hard links, devices and
FIFOs are refused. Then the manifest's format, version, database kind and schema revision are
checked, and every member's size and SHA-256 compared with it (nothing missing, nothing extra).
Everything here raises :class:`~core.backup_format.BackupError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import core
from core import migrate
from core.backup_database import _known_revision
from core.backup_format import (
    FILES_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    POSTGRES_PREFIX,
    SQLITE_MEMBER,
    BackupError,
    Progress,
    _unsafe_relpath,
)

_CHUNK = 1 << 20
"""Bytes copied at a time while a member is extracted."""
_MAX_MANIFEST_BYTES = 512 << 20
"""The largest manifest read into memory."""


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
