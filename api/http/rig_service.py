"""The rig files of ``settings.rigs_dir`` and whether a rig is busy: parsed once per change,
looked up by name (404 naming the rigs there are), and checked free before a capture is
submitted (409). Shared by the rigs, plans and captures routes."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from acquisition.capture import RigBusyError, rig_lock
from acquisition.rig import (
    RigConfig,
    RigConfigError,
    check_rig_identity,
    load_rig,
    load_rig_config,
    rig_file,
)
from core.models import Job, JobKind, JobStatus
from core.settings import Settings

log = logging.getLogger(__name__)

_parsed: dict[Path, tuple[tuple[int, int], RigConfig | RigConfigError]] = {}
"""Rig files already parsed, by path: (mtime_ns, size) when parsed → config or its error."""


def _load_rig_file(path: Path) -> RigConfig:
    """``load_rig_config(path)``, parsed again only when the file's mtime or size changed."""
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _parsed.get(path)
    if cached is None or cached[0] != stamp:
        try:
            result: RigConfig | RigConfigError = load_rig_config(path)
        except RigConfigError as exc:
            result = exc
        cached = _parsed[path] = (stamp, result)
    if isinstance(cached[1], RigConfigError):
        raise cached[1]
    return cached[1]


def rig_files(settings: Settings) -> dict[str, tuple[Path, RigConfig]]:
    """Every valid rig file in ``rigs_dir`` by rig name (invalid files are logged and skipped).
    A file is parsed again only when it changes."""
    found: dict[str, tuple[Path, RigConfig]] = {}
    folder = Path(settings.rigs_dir)
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            cfg = check_rig_identity(path, _load_rig_file(path))
        except (RigConfigError, OSError) as exc:
            log.warning("skipping rig file %s: %s", path, exc)
            continue
        found.setdefault(cfg.name, (path, cfg))
    return found


def find_rig(settings: Settings, name: str) -> tuple[Path, RigConfig]:
    """The rig file of rig ``name`` (``<rigs_dir>/<name>.yaml``, describing that rig); 404 naming
    the rigs there are."""
    try:
        return rig_file(settings.rigs_dir, name), load_rig(settings.rigs_dir, name, loader=_load_rig_file)
    except (RigConfigError, OSError):
        known = ", ".join(sorted(rig_files(settings))) or "none"
        raise HTTPException(404, f"no rig named {name!r} (rigs: {known})") from None


def active_capture_rigs(session: Session) -> set[str]:
    """Rig names with a capture or lightbox job queued or running."""
    jobs = session.scalars(
        select(Job).where(
            Job.kind.in_([JobKind.CAPTURE, JobKind.LIGHTBOX]),
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
    )
    return {str(j.params.get("rig")) for j in jobs}


def lock_held(settings: Settings, name: str) -> bool:
    """Whether a capture (this server's, or the CLI's) holds the rig's lock right now."""
    try:
        with rig_lock(Path(settings.data_dir), name):
            return False
    except RigBusyError:
        return True


def ensure_rig_free(session: Session, settings: Settings, name: str) -> None:
    """RigBusyError (409) when a capture is queued, running or holds the rig's lock."""
    if name in active_capture_rigs(session) or lock_held(settings, name):
        raise RigBusyError(
            f"rig {name!r} is busy: a capture is queued or running on it; try again when it ends"
        )
