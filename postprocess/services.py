"""The post-processing use cases behind every front door: process a scene, export a dataset.

One request model (:mod:`postprocess.requests`) and one function each: ``ProcessRequest`` →
:func:`process`, ``ExportRequest`` → :func:`export`. ``reloblur process`` / ``export`` build
the request from their options, the postprocess and export job handlers from the job's
parameters (:mod:`api.jobs.params`: these models with the API's path rules), and both call
these functions.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from postprocess.export import STAGING_MARK, ExportSummary, check_export_destination, export_dataset
from postprocess.params import PipelineParams
from postprocess.pipeline import SceneOutcome, process_scene
from postprocess.requests import ExportRequest, ProcessRequest

__all__ = ["export", "pipeline_params", "process"]


def pipeline_params(data: dict[str, Any] | None) -> PipelineParams | None:
    """A request's checked ``params`` as the pipeline's model (None: the built-in parameters)."""
    return PipelineParams.model_validate(data) if data else None


def process(engine: Engine, data_dir: Path | str, request: ProcessRequest,
            on_unit: Callable[[str], None] | None = None) -> SceneOutcome:
    """Run the pipeline on the request's scene (:func:`postprocess.pipeline.process_scene`:
    products already made with the same parameters are reused); ``on_unit`` is called with a
    label after each unit (scene stage, whiteboard, each pair, each mask)."""
    return process_scene(engine, data_dir, request.scene, pipeline_params(request.params), on_unit=on_unit)


def export(
    engine: Engine,
    data_dir: Path | str,
    request: ExportRequest,
    *,
    root: Path | str,
    confine: bool = False,
    clear_staging: bool = False,
    on_pair: Callable[[str], None] | None = None,
) -> ExportSummary:
    """Export as the request says (:func:`postprocess.export.export_dataset`).

    ``root``: the exports root. With ``confine`` (the API) ``request.out`` is relative to it and
    the export must stay under it; without (the CLI) ``request.out`` is a path of its own (where
    it may lie: :func:`~postprocess.export.check_export_destination`). The destination rules
    are checked before anything is touched (ExportError). ``clear_staging``: first remove a
    staging folder a killed attempt left beside the destination.
    """
    out = Path(root) / request.out if confine else Path(request.out)
    dest = check_export_destination(out, data_dir, root, overwrite=request.overwrite, confine=confine)
    if clear_staging:
        for stale in dest.parent.glob(f".{dest.name}{STAGING_MARK}*"):
            shutil.rmtree(stale, ignore_errors=True)
    return export_dataset(engine, data_dir, out, request.test_scenes, request.scenes,
                          pipeline_params(request.params), overwrite=request.overwrite, link=request.link,
                          on_pair=on_pair, root=root, confine=confine)
