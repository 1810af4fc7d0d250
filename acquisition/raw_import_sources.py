"""The RAW files a manifest names, read (:func:`core.rawio.read_raw`) and checked before anything
is written: each exists, is used once, and B and S of a capture, and every frame of the scene,
share one size (px) and CFA pattern; each side comes from one camera (serial number).

A :class:`_Source` keeps what the import needs of a file (metadata, size, SHA-256, bytes), not
its pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from acquisition.raw_import_errors import (
    CameraMismatchError,
    CfaMismatchError,
    FrameSizeMismatchError,
    ManifestError,
    SourceFileMissingError,
)
from acquisition.raw_import_manifest import ROLES, Manifest
from core.dng import RawMetadata
from core.filestore import sha256_file
from core.rawio import read_raw


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
