"""Rigs: the rig files in ``settings.rigs_dir``, whether each is busy, instrument identity."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from acquisition.capture import rig_lock
from acquisition.rig import RigConfig
from api.http.deps import DbDep, SettingsDep, ViewerToken
from api.http.rig_service import active_capture_rigs, find_rig, lock_held, rig_files
from api.http.schemas import (
    CameraIdentity,
    RigCameraOut,
    RigIdentityOut,
    RigOut,
    SynchronizerIdentity,
)
from core.models import RigRecord as RigRow
from core.settings import Settings

router = APIRouter(tags=["rigs"])


RIG_STATE_MAX_AGE_S = 2.0
"""How long a rig's cached answer may be served: its file and its lock live outside the
database (a capture started by the CLI holds the lock), so the read cache cannot see them change."""


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
