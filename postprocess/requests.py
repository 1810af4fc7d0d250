"""What the post-processing use cases take: one request model each (see :mod:`postprocess.services`).

Light to import (pydantic only; the pipeline's parameters are checked with
:class:`postprocess.params.PipelineParams`, imported when a request holds some): the API's job
parameters (:mod:`api.jobs.params`) extend these models with the API's path rules.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator

from core.config import StrictModel, validation_problems

__all__ = ["ExportRequest", "ProcessRequest", "pipeline_params_dict"]


def pipeline_params_dict(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Pipeline parameters checked the way ``reloblur process --params`` checks them (with
    :class:`postprocess.params.PipelineParams`), returned with every default filled in; None
    stays None (the built-in parameters). ValueError names the first bad field."""
    if data is None:
        return None
    from postprocess.params import PipelineParams  # lazy: OpenCV and SciPy come with the methods

    try:
        return PipelineParams.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise ValueError(f"pipeline parameters: {validation_problems(exc, root='params')[0]}") from None


class ProcessRequest(StrictModel):
    """One scene through the pipeline; ``params`` as in ``configs/pipeline.yaml`` (None: the
    built-in parameters; filled in with every default once checked)."""

    scene: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] | None = None

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return pipeline_params_dict(value)


class ExportRequest(StrictModel):
    """Processed scenes in the ReLoBlur layout under ``out``: ``test_scenes`` form the test
    split, ``scenes`` the exported ones (None: every processed scene); ``overwrite`` replaces
    only a previous export; ``link`` hard-links the product files instead of copying them;
    ``params``: the processing parameters whose products are exported (None: the built-in ones).
    Where ``out`` lies is the caller's: see :func:`postprocess.services.export`."""

    out: str
    test_scenes: list[str]
    scenes: list[str] | None = None
    overwrite: bool = False
    link: bool = False
    params: dict[str, Any] | None = None

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return pipeline_params_dict(value)
