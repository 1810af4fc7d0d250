"""An import manifest: what scene, which rig, and the B/S RAW files of each capture.

YAML (a mapping, :class:`Manifest`) or CSV (header ``kind,index,role,path``; scene and rig then
come from the caller). Paths are relative to the import folder; rig optics in µm / mm, ND
transmittances in (0, 1], default exposures in seconds (0, 3600]. Reading or validation
failures are :class:`~acquisition.raw_import_errors.ManifestError` naming the field or line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator

from acquisition.raw_import_errors import ManifestError
from core.config import StrictModel, format_validation_error, read_yaml
from core.filestore import StrPath

ROLES = ("B", "S")
KIND_ORDER = ("lightbox", "whiteboard", "reference", "pair")
_NAME = r"^[A-Za-z0-9_.-]+$"
_CSV_HEADER = ("kind", "index", "role", "path")


class _Strict(StrictModel):
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
    kept = [  # the rig given as a mapping: its "or a name" branch is noise
        {**e, "loc": tuple(p for p in e["loc"] if p != "RigManifest")}
        for e in errors if not (rig_as_mapping and e["loc"][:2] == ("rig", "str"))
    ]
    return f"manifest {source}: {format_validation_error(kept)}"


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
        data = read_yaml(path, ManifestError, "manifest")
        if isinstance(data, dict):
            if scene:
                data["scene"] = scene
            if rig:
                data["rig"] = (
                    {**data["rig"], "name": rig} if isinstance(data.get("rig"), dict) else rig
                )
    return _validate(data, source)
