"""Export processed scenes in ReLoBlur's own dataset layout, with scene-disjoint splits.

Layout under ``out`` (what :class:`deblur.data.ReLoBlurDataset` reads)::

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
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from core.db import session_factory
from core.filestore import read_png, sha256_file, write_png
from core.models import Product, Scene
from postprocess.params import PIPELINE_VERSION, PipelineParams
from postprocess.pipeline import latest_complete_run


class ExportError(ValueError):
    """The export cannot be made as asked; the message says why and what to do."""


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
) -> ExportSummary:
    """Write the processed ``scenes`` (default: every scene with a complete run) under ``out``.

    test_scenes: scene names for the test split (each must be among the exported scenes).
    params: the processing parameters whose products are exported (default parameters).
    link: hard-link the product files instead of copying them (saves the space; an image edited
    in place in the export would then change the product too, so copying is the default).
    previews: also write the half-size blurred | sharp | mask montages under ``preview/``.
    Raises ExportError for an unknown or unprocessed scene, 16-bit products, or an existing
    ``out`` without ``overwrite``.
    """
    data_dir = Path(data_dir)
    out = Path(out)
    params = params or PipelineParams()
    if params.isp.output_bits != 8:
        raise ExportError("ReLoBlur's layout holds 8-bit PNGs: export products made with isp.output_bits 8")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} exists and is not empty: choose another folder or pass --overwrite")
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
    staging = out.parent / f".{out.name}.export-{uuid.uuid4().hex[:8]}"
    manifest = {"layout": "ReLoBlur", "pipeline_version": PIPELINE_VERSION, "params_hash": params.hash(),
                "params": params.model_dump(mode="json"), "splits": {"train": [], "test": []},
                "skipped": summary.skipped, "files": {}}
    try:
        for name, split, files in plan:
            for idx, blur, sharp, mask in files:
                targets = {
                    f"dataset/{split}/{name}/00/{idx}_blur.png": blur,
                    f"dataset/{split}/{name}/00/{idx}_sharp.png": sharp,
                    f"masks/{split}/{name}/00/{idx}.png": mask,
                }
                for rel, src in targets.items():
                    _place(src, staging / rel, link)
                    manifest["files"][rel] = sha256_file(staging / rel)
                if previews:
                    write_png(staging / f"preview/{split}/{name}/00/{idx}.png", _preview(blur, sharp, mask))
                if on_pair:
                    on_pair(f"{name}/{idx}")
            manifest["splits"][split].append(name)
            summary.splits[split].append(name)
            summary.pairs[name] = len(files)
        (staging / "export.json").write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
