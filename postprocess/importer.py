"""Register RAW pairs captured with other software as a scene, so the pipeline processes them.

A manifest (YAML, or CSV ``kind,index,role,path``) names the scene, the rig and the RAW files
of each capture (paths relative to the import folder). :func:`import_scene`:

1. parses and validates the manifest (:class:`ManifestError` names the field or line);
2. reads every file with :func:`core.rawio.read_raw` and checks B and S of a capture have the
   same size and every frame the same size and CFA pattern; nothing is written before this;
3. places the files under the data directory as acquisition does,
   ``raw/<rig>/<scene>/<kind>_<idx:04d>_<role><ext>`` (lightbox:
   ``raw/<rig>/lightbox/lightbox_<idx:04d>_<role><ext>``), by atomic copy (``mode="copy"``)
   or as a symlink to the absolute source path (``mode="reference"``); sources are never
   modified;
4. commits the rig (created from the manifest when new), cameras (``driver="imported"``),
   scene, captures, frames and one ``CaptureRun`` in one transaction.

All or nothing: on any error the files and symlinks made so far are removed and no row is kept.
Trigger indices: whiteboard 0, reference 0, pairs 0..n-1 (unique per scene and kind); the
lightbox gets the rig's next free lightbox index.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import __version__
from core.db import session_factory
from core.dng import RawMetadata
from core.filestore import StrPath, atomic_path, sha256_file
from core.models import (
    Camera,
    Capture,
    CaptureKind,
    CaptureRun,
    CaptureStatus,
    CFAPattern,
    Frame,
    Rig,
    RunStatus,
    Scene,
    utcnow,
)
from core.rawio import read_raw

__all__ = [
    "CameraMismatchError",
    "CfaMismatchError",
    "DestinationExistsError",
    "FrameSizeMismatchError",
    "ImportMode",
    "ImportSummary",
    "Manifest",
    "ManifestError",
    "RigMismatchError",
    "RigNotFoundError",
    "SceneExistsError",
    "SceneImportError",
    "SourceFileMissingError",
    "count_steps",
    "import_scene",
    "load_manifest",
]

ImportMode = Literal["copy", "reference"]
ROLES = ("B", "S")
KIND_ORDER = ("lightbox", "whiteboard", "reference", "pair")
_NAME = r"^[A-Za-z0-9_.-]+$"
_CSV_HEADER = ("kind", "index", "role", "path")


class SceneImportError(Exception):
    """Base class of the importer's errors; the message says what was wrong and what to do."""


class ManifestError(SceneImportError, ValueError):
    """The manifest cannot be read or fails validation; the message names the field or line."""


class RigNotFoundError(ManifestError):
    """The manifest names a rig only by name and no such rig exists."""


class SourceFileMissingError(SceneImportError, FileNotFoundError):
    """A file the manifest names does not exist."""


class SceneExistsError(SceneImportError):
    """A scene of that name already exists."""


class FrameSizeMismatchError(SceneImportError):
    """Frames of a capture, or of the scene, differ in size."""


class CfaMismatchError(SceneImportError):
    """Frames of the scene differ in CFA pattern."""


class CameraMismatchError(SceneImportError):
    """Frames of one role come from cameras with different serial numbers."""


class RigMismatchError(SceneImportError):
    """The existing rig's sensor or optics differ from the imported RAWs or manifest."""


class DestinationExistsError(SceneImportError):
    """A file is already at the place an imported frame would go."""


# --------------------------------------------------------------------------- manifest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RigManifest(_Strict):
    """A rig to create: optics in µm / mm, ND transmittances in (0, 1]."""

    name: str = Field(min_length=1, max_length=128, pattern=_NAME)
    description: str = ""
    pixel_pitch_um: float = Field(gt=0, le=1000)
    focal_length_mm: float = Field(gt=0, le=10000)
    nd_filters: list[float] = Field(default_factory=list)
    color_matrix_1: list[list[float]] | None = Field(
        None, description="DNG ColorMatrix1 (XYZ D65 → camera), 3×3; informational."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError(f"{value!r} cannot be a rig name; choose another")
        return value

    @field_validator("nd_filters")
    @classmethod
    def _nd(cls, value: list[float]) -> list[float]:
        bad = [t for t in value if not 0.0 < t <= 1.0]
        if bad:
            raise ValueError(f"ND transmittances must lie in (0, 1], got {bad}")
        return value

    @field_validator("color_matrix_1")
    @classmethod
    def _matrix(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        if value is not None and (len(value) != 3 or any(len(r) != 3 for r in value)):
            raise ValueError("must be a 3×3 list of numbers")
        return value


class FilePair(_Strict):
    """The B (blurred side) and S (sharp side) files of one capture, relative to the folder."""

    B: str = Field(min_length=1)
    S: str = Field(min_length=1)


class RoleExposure(_Strict):
    """Exposure times (s) to use for RAWs that record none."""

    B: float | None = Field(None, gt=0, le=3600)
    S: float | None = Field(None, gt=0, le=3600)


class Manifest(_Strict):
    """What to import: scene, rig, and the files of each capture (see the module docstring)."""

    scene: str = Field(min_length=1, max_length=128, pattern=_NAME)
    rig: str | RigManifest
    object_distance_m: float | None = Field(None, gt=0)
    description: str = ""
    default_exposure_s: RoleExposure = RoleExposure()
    lightbox: FilePair | None = None
    whiteboard: FilePair
    reference: FilePair
    pairs: list[FilePair] = Field(min_length=1)

    @field_validator("scene")
    @classmethod
    def _scene(cls, value: str) -> str:
        if value in (".", "..", "lightbox"):
            raise ValueError(f"{value!r} cannot be a scene name; choose another")
        return value

    @field_validator("rig", mode="before")
    @classmethod
    def _rig_name(cls, value: Any) -> Any:
        if isinstance(value, str) and (not re.match(_NAME, value) or value in (".", "..")):
            raise ValueError(f"rig name {value!r} may hold only letters, digits, '_', '.', '-'")
        return value

    @property
    def rig_name(self) -> str:
        return self.rig if isinstance(self.rig, str) else self.rig.name

    def captures(self) -> list[tuple[str, int, FilePair]]:
        """(kind, trigger index, files) of every capture; the lightbox index is a placeholder 0."""
        out = [] if self.lightbox is None else [("lightbox", 0, self.lightbox)]
        out += [("whiteboard", 0, self.whiteboard), ("reference", 0, self.reference)]
        return out + [("pair", i, p) for i, p in enumerate(self.pairs)]


def _validation_message(exc: ValidationError, source: str) -> str:
    errors = exc.errors()
    rig_as_mapping = any(e["loc"][:2] == ("rig", "RigManifest") for e in errors)
    parts = []
    for err in errors:
        if rig_as_mapping and err["loc"][:2] == ("rig", "str"):
            continue  # the rig was given as a mapping: the "or a name" branch is noise
        loc = [str(p) for p in err["loc"] if p != "RigManifest"]
        parts.append(f"{'.'.join(loc) or '(top level)'}: {err['msg']}")
    return f"manifest {source}: " + "; ".join(parts)


def _validate(data: Any, source: str) -> Manifest:
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {source}: expected a mapping of fields, got "
                            f"{type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(_validation_message(exc, source)) from None


def _read_csv(path: Path, scene: str | None, rig: str | None) -> dict[str, Any]:
    """A manifest dict from a CSV with header ``kind,index,role,path``."""
    if not scene or not rig:
        raise ManifestError(f"manifest {path}: a CSV manifest needs --scene and --rig")
    captures: dict[tuple[str, int], dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if tuple(header) != _CSV_HEADER:
            raise ManifestError(
                f"manifest {path} line 1: header must be {','.join(_CSV_HEADER)}, got "
                f"{','.join(header) or '(empty)'}"
            )
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 4:
                raise ManifestError(f"manifest {path} line {line}: expected 4 columns, got {len(row)}")
            kind, index, role, file = (c.strip() for c in row)
            if kind not in KIND_ORDER:
                raise ManifestError(
                    f"manifest {path} line {line}: kind {kind!r} is not one of {', '.join(KIND_ORDER)}"
                )
            if role not in ROLES:
                raise ManifestError(f"manifest {path} line {line}: role {role!r} must be B or S")
            if not index.isdigit():
                raise ManifestError(
                    f"manifest {path} line {line}: index {index!r} must be a non-negative integer"
                )
            slot = captures.setdefault((kind, int(index)), {})
            if role in slot:
                raise ManifestError(
                    f"manifest {path} line {line}: {kind} {index} {role} is listed twice"
                )
            slot[role] = file
    data: dict[str, Any] = {"scene": scene, "rig": rig, "pairs": []}
    for kind in ("lightbox", "whiteboard", "reference"):
        found = sorted(i for k, i in captures if k == kind)
        if len(found) > 1:
            raise ManifestError(f"manifest {path}: only one {kind} capture allowed, got indices {found}")
        if found:
            data[kind] = captures[(kind, found[0])]
    pair_indices = sorted(i for k, i in captures if k == "pair")
    if pair_indices != list(range(len(pair_indices))):
        raise ManifestError(
            f"manifest {path}: pair indices must be 0..n-1 without gaps, got {pair_indices}"
        )
    data["pairs"] = [captures[("pair", i)] for i in pair_indices]
    return data


def load_manifest(path: StrPath, scene: str | None = None, rig: str | None = None) -> Manifest:
    """Read a YAML or (``.csv``) CSV manifest; ``scene`` / ``rig`` override its names.

    Raises:
        ManifestError: missing, unreadable or invalid; the message names the field or line.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist; pass --manifest FILE")
    source = str(path)
    if path.suffix.lower() == ".csv":
        data = _read_csv(path, scene, rig)
    else:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ManifestError(f"manifest {source}{line}: not valid YAML ({exc.problem})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest {source}: not valid YAML ({exc})") from None
        if isinstance(data, dict):
            if scene:
                data["scene"] = scene
            if rig:
                data["rig"] = (
                    {**data["rig"], "name": rig} if isinstance(data.get("rig"), dict) else rig
                )
    return _validate(data, source)


# --------------------------------------------------------------------------- import


def _exposure_delay(meta: RawMetadata) -> float | None:
    """When the frame's exposure started after camera B's, if its DNG description (JSON, as
    written by this lab's capture and the twin) says so; else unknown (None)."""
    try:
        value = json.loads(meta.description or "").get("exposure_delay_s")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class _Source:
    kind: str
    index: int
    role: str
    path: Path
    meta: RawMetadata
    height: int
    width: int
    sha256: str
    size: int


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


def _check_sources(
    manifest: Manifest, directory: Path, on_step: Callable[[str], None]
) -> list[_Source]:
    seen: dict[Path, str] = {}
    for kind, index, pair in manifest.captures():
        for role in ROLES:
            path = (directory / getattr(pair, role)).resolve()
            label = f"{kind} {index} {role}"
            if path in seen:
                raise ManifestError(f"manifest: {label} names {path}, already used by {seen[path]}")
            seen[path] = label
    sources = []
    for kind, index, pair in manifest.captures():
        for role in ROLES:
            path = directory / getattr(pair, role)
            if not path.is_file():
                raise SourceFileMissingError(
                    f"{kind} {index} {role}: no file at {path}; fix the path in the manifest "
                    "(paths are relative to the import folder)"
                )
            default = getattr(manifest.default_exposure_s, role)
            cfa, meta = read_raw(path, default_exposure_s=default)
            height, width = cfa.shape
            del cfa
            sources.append(_Source(kind, index, role, path, meta, height, width,
                                   sha256_file(path), path.stat().st_size))
            on_step(f"read {path.name}")
    _check_consistency(sources)
    return sources


def _check_consistency(sources: list[_Source]) -> None:
    by_capture: dict[tuple[str, int], dict[str, _Source]] = {}
    for s in sources:
        by_capture.setdefault((s.kind, s.index), {})[s.role] = s
    for (kind, index), frames in by_capture.items():
        b, s = frames["B"], frames["S"]
        if (b.height, b.width) != (s.height, s.width):
            raise FrameSizeMismatchError(
                f"{kind} {index}: B ({b.path}) is {b.width}×{b.height} px but S ({s.path}) is "
                f"{s.width}×{s.height} px; both cameras of a capture must have the same size"
            )
    first = sources[0]
    for s in sources[1:]:
        if (s.height, s.width) != (first.height, first.width):
            raise FrameSizeMismatchError(
                f"{s.kind} {s.index} {s.role} ({s.path}) is {s.width}×{s.height} px but "
                f"{first.kind} {first.index} {first.role} ({first.path}) is "
                f"{first.width}×{first.height} px; every frame of a scene must have the same size"
            )
        if s.meta.cfa_pattern != first.meta.cfa_pattern:
            raise CfaMismatchError(
                f"{s.kind} {s.index} {s.role} ({s.path}) has CFA {s.meta.cfa_pattern} but "
                f"{first.path} has {first.meta.cfa_pattern}; every frame must share one pattern"
            )
    for role in ROLES:
        serials = {s.meta.camera_serial for s in sources if s.role == role}
        if len(serials) > 1:
            raise CameraMismatchError(
                f"the {role} frames come from cameras {sorted(serials)}; import one camera per "
                "side (split the scene, or fix the files)"
            )


def _check_rig(rig: Rig, manifest: Manifest, first: _Source) -> None:
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


def _prepare(session: Session, manifest: Manifest, first: _Source) -> tuple[Rig | None, int]:
    """Check scene and rig against the DB; return (existing rig or None, next lightbox index)."""
    if session.scalar(select(Scene.id).where(Scene.name == manifest.scene)) is not None:
        raise SceneExistsError(
            f"scene {manifest.scene!r} already exists; choose another name (--scene NAME)"
        )
    rig = session.scalar(select(Rig).where(Rig.name == manifest.rig_name))
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


def _destination(manifest: Manifest, s: _Source, lightbox_index: int) -> str:
    ext = s.path.suffix.lower()
    if s.kind == "lightbox":
        return f"raw/{manifest.rig_name}/lightbox/lightbox_{lightbox_index:04d}_{s.role}{ext}"
    return f"raw/{manifest.rig_name}/{manifest.scene}/{s.kind}_{s.index:04d}_{s.role}{ext}"


def _place(source: Path, dest: Path, mode: ImportMode) -> int:
    """Copy (atomically) or symlink ``source`` at ``dest``; return the bytes copied."""
    if mode == "copy":
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
        return dest.stat().st_size
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    os.symlink(source.resolve(), tmp)
    try:
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return 0


def _missing_dirs(path: Path, stop: Path) -> list[Path]:
    """``path`` and its ancestors below ``stop`` that do not exist yet, deepest first."""
    out = []
    while path != stop and not path.exists():
        out.append(path)
        path = path.parent
    return out


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
        rig = Rig(
            name=spec.name, description=spec.description, pixel_pitch_um=spec.pixel_pitch_um,
            focal_length_mm=spec.focal_length_mm, nd_filters=list(spec.nd_filters),
            cfa_pattern=CFAPattern(first.meta.cfa_pattern),
            bit_depth=max(s.meta.bits for s in sources),
            sensor_width_px=first.width, sensor_height_px=first.height,
        )
        session.add(rig)
        session.flush()
    cameras: dict[str, Camera] = {}
    cameras_created = []
    for role in ROLES:
        meta = next(s.meta for s in sources if s.role == role)
        serial = (meta.camera_serial or f"{rig.name}-{role}")[:64]
        camera = session.scalar(select(Camera).where(
            Camera.rig_id == rig.id, Camera.role == role, Camera.serial == serial))
        if camera is None:
            camera = Camera(rig_id=rig.id, role=role, vendor=meta.camera_make[:64],
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


def import_scene(
    directory: StrPath,
    manifest_path: StrPath | None,
    engine: Engine,
    data_dir: StrPath,
    mode: ImportMode = "copy",
    *,
    scene: str | None = None,
    rig: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the RAW pairs a manifest lists under ``directory`` as one scene (all or nothing).

    Args:
        directory: the folder the manifest's paths are relative to.
        manifest_path: YAML or CSV manifest; ``None`` means ``directory/manifest.yaml``.
        engine: the database (migrated to head).
        data_dir: the data directory; files go under ``raw/<rig>/...`` in it.
        mode: ``"copy"`` (atomic copies) or ``"reference"`` (symlinks to the sources).
        scene, rig: override the manifest's names (required for a CSV manifest).
        on_step: called after each file is read and after each is placed
            (``2 × files`` calls; see :func:`count_steps`), for a progress bar.

    Raises:
        ManifestError (RigNotFoundError), SourceFileMissingError, SceneExistsError,
        FrameSizeMismatchError, CfaMismatchError, CameraMismatchError, RigMismatchError,
        DestinationExistsError; core.rawio's RawReadError / UnsupportedRawError /
        UnsupportedBitDepthError / MissingExposureError for a file it cannot read.
    """
    if mode not in ("copy", "reference"):
        raise ValueError(f"mode must be 'copy' or 'reference', got {mode!r}")
    directory = Path(directory).resolve()
    data_dir = Path(data_dir).resolve()
    step = on_step or (lambda label: None)
    manifest = load_manifest(manifest_path or directory / "manifest.yaml", scene=scene, rig=rig)
    sessions = session_factory(engine)
    with sessions() as session:  # fail early, before reading any file
        if session.scalar(select(Scene.id).where(Scene.name == manifest.scene)) is not None:
            raise SceneExistsError(
                f"scene {manifest.scene!r} already exists; choose another name (--scene NAME)"
            )
    sources = _check_sources(manifest, directory, step)
    with sessions() as session:
        _, lightbox_index = _prepare(session, manifest, sources[0])
    rel = {i: _destination(manifest, s, lightbox_index) for i, s in enumerate(sources)}
    for i in rel:
        dest = data_dir / rel[i]
        if dest.exists() or dest.is_symlink():
            raise DestinationExistsError(
                f"{dest} already exists (left by an earlier capture or import?); move it away "
                "or choose another scene name"
            )
    made: list[Path] = []
    made_dirs: list[Path] = []
    try:
        bytes_copied = 0
        for i, s in enumerate(sources):
            dest = data_dir / rel[i]
            made_dirs[:0] = _missing_dirs(dest.parent, data_dir)
            made.append(dest)
            bytes_copied += _place(s.path, dest, mode)
            if mode == "copy" and sha256_file(dest) != s.sha256:
                raise SceneImportError(
                    f"{s.path} changed while it was imported; make sure nothing writes to it "
                    "and run the import again"
                )
            step(f"{mode} {rel[i]}")
        with sessions() as session:
            try:
                summary = _write_rows(session, manifest, mode, directory, sources, rel,
                                      lightbox_index, bytes_copied)
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise SceneExistsError(
                    f"scene {manifest.scene!r} (or its rig or cameras) was created by another "
                    f"process during the import; run it again ({exc.orig})"
                ) from exc
        return summary
    except BaseException:
        for path in made:
            if path.is_symlink() or path.exists():
                path.unlink(missing_ok=True)
        for d in sorted(set(made_dirs), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone else's files are in it
                d.rmdir()
        raise


def count_steps(manifest: Manifest) -> int:
    """How many times :func:`import_scene` calls ``on_step`` for ``manifest``."""
    return 2 * len(ROLES) * len(manifest.captures())
