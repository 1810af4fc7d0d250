"""Rigs: the rig files in ``settings.rigs_dir``, whether each is busy, instrument identity."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
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
from api.deps import DbDep, SettingsDep, ViewerToken
from api.schemas import CameraIdentity, RigCameraOut, RigIdentityOut, RigOut, SynchronizerIdentity
from core.models import Job, JobKind, JobStatus
from core.models import Rig as RigRow
from core.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["rigs"])


RIG_STATE_MAX_AGE_S = 2.0
"""How long a rig's cached answer may be served: its file and its lock live outside the
database (a capture started by the CLI holds the lock), so the read cache cannot see them change."""

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


def _rig_out(path: Path, cfg: RigConfig, busy: bool, registered: int | None) -> RigOut:
    return RigOut(
        name=cfg.name,
        description=cfg.description,
        file=path.name,
        simulated=any(c.driver == "simulated" for c in cfg.cameras.values()),
        busy=busy,
        optics=cfg.optics.model_dump(mode="json"),
        cameras=[
            RigCameraOut(role=r, driver=c.driver, serial=c.serial)
            for r, c in sorted(cfg.cameras.items())
        ],
        registered_id=registered,
    )


@router.get("/rigs", response_model=list[RigOut], summary="The rigs and whether each is busy")
async def list_rigs(
    request: Request, db: DbDep, settings: SettingsDep, _: ViewerToken
) -> list[RigOut]:
    return await db.read(request, _list_rigs, settings, max_age=RIG_STATE_MAX_AGE_S)


def _list_rigs(session: Session, settings: Settings) -> list[RigOut]:
    active = active_capture_rigs(session)
    ids = dict(session.execute(select(RigRow.name, RigRow.id)).all())
    return [
        _rig_out(path, cfg, name in active or lock_held(settings, name), ids.get(name))
        for name, (path, cfg) in rig_files(settings).items()
    ]


@router.get("/rigs/{name}", response_model=RigOut, summary="One rig: optics, cameras, status")
async def get_rig(
    name: str, request: Request, db: DbDep, settings: SettingsDep, _: ViewerToken
) -> RigOut:
    return await db.read(request, _get_rig, name, settings, max_age=RIG_STATE_MAX_AGE_S)


def _get_rig(session: Session, name: str, settings: Settings) -> RigOut:
    path, cfg = find_rig(settings, name)
    busy = name in active_capture_rigs(session) or lock_held(settings, name)
    registered = session.scalar(select(RigRow.id).where(RigRow.name == name))
    return _rig_out(path, cfg, busy, registered)


@router.get(
    "/rigs/{name}/identity",
    response_model=RigIdentityOut,
    summary="Open the rig: pulse generator identity and camera features (409 while capturing)",
    responses={409: {"description": "A capture holds the rig."}},
)
def rig_identity(name: str, settings: SettingsDep, _: ViewerToken) -> RigIdentityOut:
    """Holds the rig's lock while the instruments are open, like a capture does."""
    from acquisition.cameras import CameraError
    from acquisition.rig import build_rig
    from acquisition.synchronizer import SynchronizerError

    _, cfg = find_rig(settings, name)
    with rig_lock(Path(settings.data_dir), cfg.name):
        try:
            rig = build_rig(cfg)
        except (SynchronizerError, CameraError) as exc:
            raise HTTPException(502, f"rig {name!r}: {exc}") from None
        with rig:
            ident = rig.synchronizer.identify()
            cameras = [
                CameraIdentity(
                    role=role,
                    vendor=cam.vendor,
                    model=cam.model,
                    serial=cam.serial,
                    features={k: _plain(v) for k, v in sorted(cam.features().items())},
                )
                for role, cam in rig.cameras.items()
            ]
    return RigIdentityOut(
        name=cfg.name,
        synchronizer=SynchronizerIdentity(
            make=ident.make, model=ident.model, serial=ident.serial, firmware=ident.firmware
        ),
        cameras=cameras,
    )


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool | None) else str(value)
