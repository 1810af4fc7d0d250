"""The database side of an import: scene and rig checked against what exists, then the rig
(when new), cameras (``driver="imported"``), scene, captures, frames and one ``CaptureRun``
added to a session (the caller commits), and what was stored summed up (:class:`ImportSummary`).

Rig optics compare within 1e-9 relative; sensor size (px) and CFA pattern must match exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from acquisition.capture_errors import SceneExistsError
from acquisition.raw_import_errors import RigMismatchError, RigNotFoundError, SceneImportError
from acquisition.raw_import_manifest import ROLES, Manifest, RigManifest
from acquisition.raw_import_sources import _Source
from core import __version__
from core.dng import RawMetadata
from core.models import (
    CameraRecord,
    Capture,
    CaptureKind,
    CaptureRun,
    CaptureStatus,
    CFAPattern,
    Frame,
    RigRecord,
    RunStatus,
    Scene,
    utcnow,
)

ImportMode = Literal["copy", "reference"]


def _exposure_delay(meta: RawMetadata) -> float | None:
    """When the frame's exposure started after camera B's, if its DNG description (JSON, as
    written by this lab's capture and the twin) says so; else unknown (None)."""
    try:
        value = json.loads(meta.description or "").get("exposure_delay_s")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class ImportSummary:
    """What an import stored: scene, rig, captures ``(kind, trigger index)``, bytes copied."""

    scene: str
    rig: str
    mode: ImportMode
    run_id: int
    rig_created: bool
    cameras_created: list[str]
    captures: list[tuple[str, int]]
    frames: int
    bytes_copied: int
    files: list[str] = field(default_factory=list)
    rig_has_lightbox: bool = True


def _check_rig(rig: RigRecord, manifest: Manifest, first: _Source) -> None:
    wanted = (first.meta.cfa_pattern, first.width, first.height)
    have = (str(rig.cfa_pattern), rig.sensor_width_px, rig.sensor_height_px)
    if have != wanted:
        raise RigMismatchError(
            f"rig {rig.name!r} has a {have[1]}×{have[2]} {have[0]} sensor but the RAWs are "
            f"{wanted[1]}×{wanted[2]} {wanted[0]}; import them under another rig name"
        )
    if isinstance(manifest.rig, RigManifest):
        spec = manifest.rig
        same = (
            abs(rig.pixel_pitch_um - spec.pixel_pitch_um) <= 1e-9 * spec.pixel_pitch_um
            and abs(rig.focal_length_mm - spec.focal_length_mm) <= 1e-9 * spec.focal_length_mm
        )
        if not same:
            raise RigMismatchError(
                f"rig {rig.name!r} exists with pixel pitch {rig.pixel_pitch_um} µm and focal "
                f"length {rig.focal_length_mm} mm, the manifest says {spec.pixel_pitch_um} µm and "
                f"{spec.focal_length_mm} mm; use another rig name or give `rig: {rig.name}`"
            )


def _prepare(session: Session, manifest: Manifest, first: _Source) -> tuple[RigRecord | None, int]:
    """Check scene and rig against the DB; return (existing rig or None, next lightbox index)."""
    if session.scalar(select(Scene.id).where(Scene.name == manifest.scene)) is not None:
        raise SceneExistsError(
            f"scene {manifest.scene!r} already exists; choose another name (--scene NAME)"
        )
    rig = session.scalar(select(RigRecord).where(RigRecord.name == manifest.rig_name))
    if rig is None:
        if not isinstance(manifest.rig, RigManifest):
            raise RigNotFoundError(
                f"manifest: rig {manifest.rig_name!r} does not exist; describe it in the YAML "
                "manifest (rig: {name, pixel_pitch_um, focal_length_mm, nd_filters})"
            )
        return None, 0
    _check_rig(rig, manifest, first)
    last = session.scalar(
        select(func.max(Capture.trigger_index)).where(
            Capture.rig_id == rig.id, Capture.kind == CaptureKind.LIGHTBOX
        )
    )
    return rig, 0 if last is None else last + 1


def _write_rows(
    session: Session, manifest: Manifest, mode: ImportMode, directory: Path,
    sources: list[_Source], rel: dict[int, str], lightbox_index: int, bytes_copied: int,
) -> ImportSummary:
    first = sources[0]
    rig, index_now = _prepare(session, manifest, first)
    if rig is not None and index_now != lightbox_index:
        raise SceneImportError(
            f"another lightbox capture of rig {rig.name!r} was stored during the import; "
            "run the import again"
        )
    rig_created = rig is None
    if rig is None:
        spec = manifest.rig
        assert isinstance(spec, RigManifest)
        rig = RigRecord(
            name=spec.name, description=spec.description, pixel_pitch_um=spec.pixel_pitch_um,
            focal_length_mm=spec.focal_length_mm, nd_filters=list(spec.nd_filters),
            cfa_pattern=CFAPattern(first.meta.cfa_pattern),
            bit_depth=max(s.meta.bits for s in sources),
            sensor_width_px=first.width, sensor_height_px=first.height,
        )
        session.add(rig)
        session.flush()
    cameras: dict[str, CameraRecord] = {}
    cameras_created = []
    for role in ROLES:
        meta = next(s.meta for s in sources if s.role == role)
        serial = (meta.camera_serial or f"{rig.name}-{role}")[:64]
        camera = session.scalar(select(CameraRecord).where(
            CameraRecord.rig_id == rig.id, CameraRecord.role == role, CameraRecord.serial == serial))
        if camera is None:
            camera = CameraRecord(rig_id=rig.id, role=role, vendor=meta.camera_make[:64],
                            model=meta.camera_model[:64], serial=serial, driver="imported")
            session.add(camera)
            session.flush()
            cameras_created.append(f"{role}:{serial}")
        cameras[role] = camera
    scene = Scene(name=manifest.scene, rig_id=rig.id, description=manifest.description,
                  object_distance_m=manifest.object_distance_m,
                  notes=f"imported from {directory} ({mode})")
    session.add(scene)
    session.flush()
    now = utcnow()
    captures: list[tuple[str, int]] = []
    by_capture: dict[tuple[str, int], list[int]] = {}
    for i, s in enumerate(sources):
        by_capture.setdefault((s.kind, s.index), []).append(i)
    for (kind, index), members in by_capture.items():
        lightbox = kind == "lightbox"
        trigger = lightbox_index if lightbox else index
        capture = Capture(
            rig_id=rig.id, scene_id=None if lightbox else scene.id, kind=CaptureKind(kind),
            trigger_index=trigger, status=CaptureStatus.COMPLETE, started_at=now, finished_at=now,
        )
        for i in members:
            s = sources[i]
            capture.frames.append(Frame(
                camera_id=cameras[s.role].id, role=s.role, path=rel[i], sha256=s.sha256,
                exposure_s=s.meta.exposure_time_s, gain_db=s.meta.gain_db,
                black_level=s.meta.black_level, white_level=s.meta.white_level,
                width_px=s.width, height_px=s.height, trigger_index=trigger, received_at=now,
                exposure_delay_s=_exposure_delay(s.meta),
            ))
        session.add(capture)
        captures.append((kind, trigger))
    run = CaptureRun(
        rig_id=rig.id, scene_id=scene.id, status=RunStatus.COMPLETE, started_at=now,
        finished_at=utcnow(),
        config={
            "import": str(directory),
            "manifest": manifest.model_dump(mode="json"),
            "mode": mode,
            "software": f"reloblur-lab {__version__}",
        },
        outcome={
            "captures": len(captures), "frames": len(sources), "bytes_copied": bytes_copied,
            "lightbox": any(k == "lightbox" for k, _ in captures),
        },
    )
    session.add(run)
    session.flush()
    has_lightbox = session.scalar(select(Capture.id).where(
        Capture.rig_id == rig.id, Capture.kind == CaptureKind.LIGHTBOX).limit(1)) is not None
    return ImportSummary(
        scene=manifest.scene, rig=rig.name, mode=mode, run_id=run.id, rig_created=rig_created,
        cameras_created=cameras_created, captures=captures, frames=len(sources),
        bytes_copied=bytes_copied, files=[rel[i] for i in range(len(sources))],
        rig_has_lightbox=has_lightbox,
    )
