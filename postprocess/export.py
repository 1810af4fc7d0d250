"""Export processed scenes in ReLoBlur's own dataset layout, with scene-disjoint splits.

Layout under ``out`` (:mod:`core.layouts`'s ReLoBlur layout, what
:class:`deblur.data.ReLoBlurDataset` reads)::

    dataset/{train,test}/<scene>/00/<idx>_blur.png     8-bit sRGB, the aligned blurred image
    dataset/{train,test}/<scene>/00/<idx>_sharp.png    8-bit sRGB, the sharp image
    masks/{train,test}/<scene>/00/<idx>.png            LBFMG blur mask, 0 / 255, one channel
    preview/{train,test}/<scene>/00/<idx>.png          half-size quick look: blurred | sharp | mask
    export.json                                        scenes, splits, parameters, every file's sha256

``<idx>`` is the pair's trigger index in its scene, 5 digits; each scene is one sequence ``00``.
A scene's products are those of its newest *complete* processing run with the given
parameters (``reloblur process`` first); pairs that failed or have no mask are left out and
listed in ``export.json``. Splits are disjoint by scene: the ``test_scenes`` go to ``test``,
every other exported scene to ``train``.

All or nothing: the export is assembled in a hidden sibling folder and renamed into place;
an existing non-empty ``out`` is refused unless ``overwrite``.

Where an export may go (:func:`check_export_destination`, applied by :func:`export_dataset`
itself, so every caller is held to it): symbolic links are resolved first and every rule applies
to the resolved folder. It is never the data directory, one of its ancestors, the exports root
itself or one of the exports root's ancestors; inside the data directory it must lie under the
exports root (never under the data directory's own folders such as ``raw/`` or ``processed/``);
with ``confine`` (the API) it must lie under the exports root wherever that is. An existing
destination must be an empty folder, or a previous export (an ``export.json`` whose ``layout``
is ``ReLoBlur``, next to nothing but ``dataset/``, ``masks/`` and ``preview/``); only a previous
export is ever replaced, and only with ``overwrite``. A folder holding anything else (the data
directory's own ``raw/``, ``reloblur.db``..., or any file an export does not write) is refused,
and so is a path with a control character. The export is staged next to the destination (so in
the same root) and a replaced export is moved aside, not removed, until the new one is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core import layouts
from core.db import session_factory
from core.errors import UserError
from core.filestore import read_png, sha256_file, write_png
from core.models import Product, Scene
from postprocess.params import PIPELINE_VERSION, PipelineParams
from postprocess.pipeline import latest_complete_run


class ExportError(UserError, ValueError):
    """The export cannot be made as asked; the message says why and what to do."""


SEQUENCE = "00"
"""Each exported scene is one sequence of the layout: ``<scene>/00/<idx>``."""

PREVIEW_DIR = "preview"
"""The quick looks: ``preview/<split>/<scene>/00/<idx>.png`` (not part of ReLoBlur's layout)."""

EXPORT_ENTRIES = frozenset({layouts.DATASET_DIR, layouts.MASKS_DIR, PREVIEW_DIR, "export.json"})
"""What an export writes at its top level: a previous export holds nothing else."""

DATA_DIR_ENTRIES = ("raw", "processed", "uploads", "checkpoints", "runs", "locks", "deblur", ".scratch",
                    "reloblur.db")
"""The data directory's own top-level folders and files: never part of an export's destination."""

STAGING_MARK = ".export-"
"""Hidden siblings ``.<name>.export-<hex>`` (the export being assembled) and
``.<name>.export-<hex>.old`` (a replaced export being removed) carry this mark."""


def _within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved)."""
    return path == folder or folder in path.parents


def is_previous_export(folder: Path) -> bool:
    """True when ``folder`` is an export this module wrote: its ``export.json`` parses and says
    ``"layout": "ReLoBlur"``, and it holds nothing at its top level an export does not write."""
    manifest = folder / "export.json"
    try:
        if manifest.is_symlink() or not manifest.is_file():
            return False
        data = json.loads(manifest.read_text())
        names = {entry.name for entry in folder.iterdir()}
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("layout") == "ReLoBlur" and names <= EXPORT_ENTRIES


def check_export_destination(out: Path | str, data_dir: Path | str, root: Path | str | None = None, *,
                             overwrite: bool = False, confine: bool = False) -> Path:
    """The resolved folder an export to ``out`` may write; ExportError (a ValueError) otherwise.

    data_dir: the data directory, which an export never replaces, contains or writes into (outside
    ``root``). root: the exports root; exports inside the data directory must lie under it (None:
    nothing inside the data directory is allowed). confine: ``out`` must lie under ``root`` even
    outside the data directory (the API). overwrite: a previous export (see
    :func:`is_previous_export`) may be replaced; nothing else ever is.
    The messages name no absolute path (they may be shown to API clients).
    """
    if confine and root is None:
        raise ExportError("confine needs an exports root")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in str(out)):  # NUL, newline, DEL...
        raise ExportError("the export folder's path holds control characters: choose a plain name")
    data = Path(data_dir).resolve()
    dest = Path(out).resolve()
    top = Path(root).resolve() if root is not None else None
    if top is not None:
        if _within(data, top):
            raise ExportError("the exports root is the data directory or one of its parent folders: "
                              "configure a folder of its own (RELOBLUR_EXPORTS_DIR)")
        if _within(top, data) and top.relative_to(data).parts[0] in DATA_DIR_ENTRIES:
            raise ExportError(f"the exports root lies in the data directory's own "
                              f"{top.relative_to(data).parts[0]!r}: configure a folder of its own")
    if dest == data:
        raise ExportError("the export folder is the data directory itself: choose a new folder "
                          "under the exports root")
    if data in dest.parents:  # checked before the ancestor rule: clearer for a folder in the data dir
        part = dest.relative_to(data).parts[0]
        if part in DATA_DIR_ENTRIES:
            raise ExportError(f"the export folder lies in the data directory's own {part!r}: choose a new "
                              f"folder under the exports root")
        if top is None or not _within(dest, top):
            where = f" ({top.relative_to(data).as_posix()}/)" if top is not None and _within(top, data) else ""
            raise ExportError(f"the export folder lies inside the data directory but outside the exports "
                              f"root{where}: choose a new folder under the exports root")
    if dest in data.parents:
        raise ExportError("the export folder contains the data directory (it is one of its parent "
                          "folders): choose a new folder under the exports root")
    if top is not None:
        if dest == top:
            raise ExportError("the export folder is the exports root itself: name a folder under it")
        if dest in top.parents:
            raise ExportError("the export folder contains the exports root: choose a folder under it")
        if confine and top not in dest.parents:
            raise ExportError("the export folder resolves outside the exports root (through '..' or a "
                              "symbolic link?): choose a new folder under the exports root")
    if not dest.name or (dest.name.startswith(".") and STAGING_MARK in dest.name):
        raise ExportError("the export folder's name is reserved for the export's own staging folders")
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise ExportError("the export folder exists and is not a folder (a file or a broken link): "
                              "choose a new folder")
        entries = sorted(entry.name for entry in dest.iterdir())
        if entries:
            own = [name for name in DATA_DIR_ENTRIES if name in entries]
            if own:
                raise ExportError(f"the export folder holds a data directory's own {', '.join(own)}: "
                                  f"it is not an export; choose a new folder")
            if not is_previous_export(dest):
                foreign = [name for name in entries if name not in EXPORT_ENTRIES][:5]
                why = (f"files an export does not write ({', '.join(map(repr, foreign))})" if foreign
                       else "no export.json with layout ReLoBlur")
                raise ExportError(f"the export folder exists and is not empty, and it is not a previous "
                                  f"export ({why}): it is never replaced, even with overwrite; "
                                  f"choose a new folder")
            if not overwrite:
                raise ExportError("the export folder exists and is not empty (a previous export): choose "
                                  "another folder or pass overwrite (--overwrite) to replace it")
    return dest


@dataclass
class ExportSummary:
    """What :func:`export_dataset` wrote."""

    out: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)


def _place(src: Path, dst: Path, link: bool) -> None:
    """Copy ``src`` to ``dst``; with ``link``, hard-link it when both share a file system."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _preview(blur: Path, sharp: Path, mask: Path) -> np.ndarray:
    """Half-size (H/2, 3·W/2, 3) uint8 montage: blurred | sharp | mask."""
    m = read_png(mask)
    panels = [read_png(blur), read_png(sharp), np.repeat(m[..., None], 3, axis=2)]
    montage = np.hstack(panels)
    return cv2.resize(montage, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def export_dataset(
    engine: Engine,
    data_dir: Path | str,
    out: Path | str,
    test_scenes: Sequence[str],
    scenes: Sequence[str] | None = None,
    params: PipelineParams | None = None,
    overwrite: bool = False,
    link: bool = False,
    previews: bool = True,
    on_pair: Callable[[str], None] | None = None,
    root: Path | str | None = None,
    confine: bool = False,
) -> ExportSummary:
    """Write the processed ``scenes`` (default: every scene with a complete run) under ``out``.

    test_scenes: scene names for the test split (each must be among the exported scenes).
    params: the processing parameters whose products are exported (default parameters).
    link: hard-link the product files instead of copying them (saves the space; an image edited
    in place in the export would then change the product too, so copying is the default).
    previews: also write the half-size blurred | sharp | mask montages under ``preview/``.
    root, confine: where the export may go, see :func:`check_export_destination` (``root``: the
    exports root; ``confine``: ``out`` must lie under it, as for the API). ``summary.out`` is the
    resolved folder written.
    Raises ExportError for an unknown or unprocessed scene, 16-bit products, a destination the
    rules refuse, or an existing previous export without ``overwrite``.
    """
    data_dir = Path(data_dir)
    params = params or PipelineParams()
    if params.isp.output_bits != 8:
        raise ExportError("ReLoBlur's layout holds 8-bit PNGs: export products made with isp.output_bits 8")
    out = check_export_destination(out, data_dir, root, overwrite=overwrite, confine=confine)
    sessions = session_factory(engine)
    plan: list[tuple[str, str, list[tuple[str, Path, Path, Path]]]] = []
    summary = ExportSummary(out, {"train": [], "test": []})
    with sessions() as session:
        runs = {}
        names = list(scenes) if scenes else list(session.scalars(select(Scene.name).order_by(Scene.name)))
        for name in names:
            scene = session.scalar(select(Scene).where(Scene.name == name))
            if scene is None:
                raise ExportError(f"no scene named {name!r} in the database")
            run = latest_complete_run(session, scene.id, params)
            if run is None:
                if scenes:
                    raise ExportError(f"scene {name!r} has no complete processing run with these parameters: "
                                      f"run `reloblur process --scene {name}` first")
                continue
            runs[name] = run
        unknown = [s for s in test_scenes if s not in runs]
        if unknown:
            raise ExportError(f"test scene(s) {', '.join(unknown)} are not among the processed scenes "
                              f"{', '.join(runs) or '(none)'}")
        if not runs:
            raise ExportError("no processed scene to export: run `reloblur process --all` first")
        for name, run in runs.items():
            split = "test" if name in test_scenes else "train"
            files, skipped = [], []
            for index, pair in sorted((run.outcome or {}).get("pairs", {}).items(), key=lambda kv: int(kv[0])):
                ids = [pair["blurred"], pair["sharp"], pair.get("mask")]
                rows = [session.get(Product, i) if i is not None else None for i in ids]
                if any(r is None or not (data_dir / r.path).is_file() for r in rows):
                    skipped.append(f"{int(index):05d}")
                    continue
                files.append((f"{int(index):05d}", *(data_dir / r.path for r in rows)))
            failed = [f["unit"] for f in (run.outcome or {}).get("failures", [])]
            summary.skipped[name] = skipped + failed
            plan.append((name, split, files))
    staging = out.parent / f".{out.name}{STAGING_MARK}{uuid.uuid4().hex[:8]}"  # same folder, same root
    manifest = {"layout": "ReLoBlur", "pipeline_version": PIPELINE_VERSION, "params_hash": params.hash(),
                "params": params.model_dump(mode="json"), "splits": {"train": [], "test": []},
                "skipped": summary.skipped, "files": {}}
    try:
        staging.mkdir(parents=True)
        for name, split, files in plan:
            for idx, blur, sharp, mask in files:
                rels = layouts.dataset_relpaths(split, name, SEQUENCE, idx)
                targets = {rels["blur"]: blur, rels["sharp"]: sharp, rels["mask"]: mask}
                for rel, src in targets.items():
                    _place(src, staging / rel, link)
                    manifest["files"][rel] = sha256_file(staging / rel)
                if previews:
                    write_png(staging / PREVIEW_DIR / split / name / SEQUENCE / f"{idx}.png",
                              _preview(blur, sharp, mask))
                if on_pair:
                    on_pair(f"{name}/{idx}")
            manifest["splits"][split].append(name)
            summary.splits[split].append(name)
            summary.pairs[name] = len(files)
        (staging / "export.json").write_text(json.dumps(manifest, indent=1))
        # the rules once more, on what is there now (the folder may have changed meanwhile)
        if check_export_destination(out, data_dir, root, overwrite=overwrite, confine=confine) != out:
            raise ExportError("the export folder changed while the export was assembled: try again")
        old = None
        if out.is_dir():  # a previous export (checked): moved aside, removed once the new one is in
            old = staging.with_name(staging.name + ".old")
            out.rename(old)
        try:
            staging.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
