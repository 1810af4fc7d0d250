"""Register RAW pairs captured with other software as a scene, so the pipeline processes them.

The other way into the RAW store (:mod:`core.layouts`) besides :mod:`acquisition.capture`: the
files land where a capture puts them and the rows are of the kinds a capture writes (cameras
with ``driver="imported"``), so post-processing reads an imported scene as a captured one.

A manifest (YAML, or CSV ``kind,index,role,path``) names the scene, the rig and the RAW files
of each capture (paths relative to the import folder). :func:`import_scene`:

1. parses and validates the manifest (:class:`ManifestError` names the field or line);
2. reads every file with :func:`core.rawio.read_raw` and checks B and S of a capture have the
   same size and every frame the same size and CFA pattern; nothing is written before this;
3. places the files under the data directory as acquisition does
   (:func:`core.layouts.raw_frame`), ``raw/<rig>/<scene>/<kind>_<idx:04d>_<role><ext>``
   (lightbox: ``raw/<rig>/lightbox/lightbox_<idx:04d>_<role><ext>``), by atomic copy (``mode="copy"``)
   or as a symlink to the absolute source path (``mode="reference"``); sources are never
   modified;
4. commits the rig (created from the manifest when new), cameras (``driver="imported"``),
   scene, captures, frames and one ``CaptureRun`` in one transaction.

All or nothing: on any error the files and symlinks made so far are removed and no row is kept.
The importer's own errors are :class:`SceneImportError` s, each a :class:`core.errors.UserError`
(``http_status`` 422; 404 for a rig named but not there, 409 for a file already there); a scene
already in the database is :class:`acquisition.capture.SceneExistsError` (409), the one the
capture raises too.
Trigger indices: whiteboard 0, reference 0, pairs 0..n-1 (unique per scene and kind); the
lightbox gets the rig's next free lightbox index.

Modules: :mod:`acquisition.raw_import_manifest` (step 1), :mod:`acquisition.raw_import_sources`
(step 2), :mod:`acquisition.raw_import_rows` (step 4), :mod:`acquisition.raw_import_errors`;
this module places the files (step 3) and runs the whole, and re-exports the rest.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from acquisition.capture_errors import SceneExistsError
from acquisition.raw_import_errors import (
    CameraMismatchError,
    CfaMismatchError,
    DestinationExistsError,
    FrameSizeMismatchError,
    ManifestError,
    RigMismatchError,
    RigNotFoundError,
    SceneImportError,
    SourceFileMissingError,
)
from acquisition.raw_import_manifest import (
    KIND_ORDER,
    ROLES,
    FilePair,
    Manifest,
    RigManifest,
    RoleExposure,
    load_manifest,
)
from acquisition.raw_import_rows import ImportMode, ImportSummary, _prepare, _write_rows
from acquisition.raw_import_sources import _check_sources, _Source
from core import layouts
from core.db import session_factory
from core.filestore import StrPath, atomic_path, sha256_file
from core.models import Scene

__all__ = [
    "KIND_ORDER",
    "ROLES",
    "CameraMismatchError",
    "CfaMismatchError",
    "DestinationExistsError",
    "FilePair",
    "FrameSizeMismatchError",
    "ImportMode",
    "ImportSummary",
    "Manifest",
    "ManifestError",
    "RigManifest",
    "RigMismatchError",
    "RigNotFoundError",
    "RoleExposure",
    "SceneExistsError",
    "SceneImportError",
    "SourceFileMissingError",
    "count_steps",
    "import_scene",
    "load_manifest",
]


def _destination(manifest: Manifest, s: _Source, lightbox_index: int) -> str:
    """Where the frame goes, relative to the data directory (the RAW store's layout)."""
    ext = s.path.suffix.lower()
    if s.kind == "lightbox":
        return layouts.raw_frame(manifest.rig_name, layouts.LIGHTBOX_SCENE, "lightbox", lightbox_index,
                                 s.role, ext)
    return layouts.raw_frame(manifest.rig_name, manifest.scene, s.kind, s.index, s.role, ext)


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
