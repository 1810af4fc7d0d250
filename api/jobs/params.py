"""What each job kind takes: one pydantic model per kind, and :func:`validate_params`.

The job records (:mod:`core.jobs`) store parameters that were validated here: core is the
bottom layer and does not know the pipeline's parameters (``postprocess.params``) or where the
rig files lie. The API routes and the job runner (a reprocess job's children) validate with
the app's :class:`core.settings.Settings` before they call :func:`core.jobs.create_job`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from acquisition.requests import NAME_PATTERN, LightboxRequest, SceneCaptureRequest
from acquisition.rig import rig_file
from core.config import StrictModel, validation_problems
from core.jobs import JobParamsError
from core.models import JobKind
from core.settings import Settings
from core.text import refuse_control_characters
from deblur.requests import DeblurRequest
from postprocess.requests import ExportRequest, ProcessRequest, pipeline_params_dict

MAX_DB_ID = 2_147_483_647
"""The largest database id (a 32-bit signed integer column on PostgreSQL)."""

ProductId = Annotated[StrictInt, Field(ge=1, le=MAX_DB_ID)]
"""A product's database id: a JSON integer (not a boolean or a string) in [1, 2^31 − 1]."""

__all__ = [
    "JOB_PARAMS",
    "CaptureParams",
    "DeblurParams",
    "ExportParams",
    "JobParamsError",
    "LightboxParams",
    "PostprocessParams",
    "ReprocessParams",
    "validate_params",
]


def _relative(value: str, field: str) -> str:
    """A POSIX path relative to the data directory: not absolute, no ``..``, not empty."""
    p = PurePosixPath(value)
    if not value or p.is_absolute() or ".." in p.parts or "\\" in value:
        raise ValueError(f"{field} must be a path relative to the data directory without '..', "
                         f"got {value!r}")
    return value


class _Params(StrictModel):
    """Unknown fields are refused, and so is a control character in any string (names, paths):
    none is valid anywhere, and PostgreSQL refuses NUL in text."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        strings = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for item in strings:
            if isinstance(item, str):
                refuse_control_characters(item, info.field_name)
        return value


class PostprocessParams(_Params, ProcessRequest):
    """One scene through the pipeline (:class:`postprocess.requests.ProcessRequest`)."""


class ReprocessParams(_Params):
    """Every scene (or ``scenes``) through the pipeline with ``params``; one child job each."""

    params: dict[str, Any] | None = None
    scenes: list[str] | None = None

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return pipeline_params_dict(value)

    @field_validator("scenes")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one scene, or leave scenes out for every scene")
        return value


EXPORT_OUT_MAX_LEN = 255
EXPORT_OUT_MAX_PARTS = 4


def _export_out(value: str) -> str:
    """An export's ``out``: a plain relative POSIX path under the exports root — 1 to
    ``EXPORT_OUT_MAX_PARTS`` components separated by single ``/``, none empty, ``.``, ``..`` or
    hidden (``.name``: the export's staging folders), no backslash, no control or format
    character, at most ``EXPORT_OUT_MAX_LEN`` characters. (Symbolic links are the export's own
    check, :func:`postprocess.export.check_export_destination`, when the job runs.)"""
    import unicodedata

    def bad(why: str) -> ValueError:
        return ValueError(f"out must be a path relative to the exports root ({why}), "
                          f"e.g. 'relo-2024/v1'; got {value[:80]!r}")

    if not value:
        raise bad("empty")
    if len(value) > EXPORT_OUT_MAX_LEN:
        raise bad(f"longer than {EXPORT_OUT_MAX_LEN} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise bad("control characters are not allowed")
    if "\\" in value:
        raise bad("no backslash")
    if value.startswith("/"):
        raise bad("not absolute")
    parts = value.split("/")
    if ".." in parts:
        raise bad("no '..'")
    if any(p in ("", ".") for p in parts):
        raise bad("no empty or '.' component")
    if any(p.startswith(".") for p in parts):
        raise bad("no hidden component starting with '.'")
    if any(p != p.strip() for p in parts):
        raise bad("no component starting or ending with a space")
    if len(parts) > EXPORT_OUT_MAX_PARTS:
        raise bad(f"at most {EXPORT_OUT_MAX_PARTS} components")
    return value


class ExportParams(_Params, ExportRequest):
    """An export (:class:`postprocess.requests.ExportRequest`) under ``<exports root>/out`` (the
    settings' ``resolved_exports_dir``, default ``<data_dir>/exports``); ``out`` is a plain
    relative path (see :func:`_export_out`)."""

    @field_validator("out")
    @classmethod
    def _out_relative(cls, value: str) -> str:
        return _export_out(value)


class DeblurParams(_Params, DeblurRequest):
    """Inference (:class:`deblur.requests.DeblurRequest`) on image files (``inputs``, relative to
    the data directory: PNG, TIFF, or DNG developed with a plain ISP) and/or products
    (``product_ids``); ``checkpoint`` relative to the data directory (default: the settings'
    checkpoint); ``out`` relative to the data directory (default ``deblur/job-<id>``)."""

    product_ids: list[ProductId] | None = Field(None, max_length=1000)

    @field_validator("inputs")
    @classmethod
    def _inputs_relative(cls, value: list[str]) -> list[str]:
        return [_relative(v, "inputs") for v in value]

    @field_validator("checkpoint", "out")
    @classmethod
    def _path_relative(cls, value: str | None, info) -> str | None:
        return None if value is None else _relative(value, info.field_name)

    @model_validator(mode="after")
    def _something(self) -> DeblurParams:
        if not self.inputs and not self.product_ids:
            raise ValueError("give inputs (image paths) or product_ids: there is nothing to deblur")
        return self


class CaptureParams(_Params, SceneCaptureRequest):
    """A scene session (:class:`acquisition.services.SceneCaptureRequest`: whiteboard, reference
    and ``pairs`` pairs, at most 200 per job) on the rig ``rig`` (``<settings.rigs_dir>/<rig>.yaml``)."""

    rig: str = Field(pattern=NAME_PATTERN, max_length=128)
    pairs: int = Field(ge=1, le=200)


class LightboxParams(_Params, LightboxRequest):
    """One lightbox flat field per camera (:class:`acquisition.LightboxRequest`) of the
    rig ``rig``."""

    rig: str = Field(pattern=NAME_PATTERN, max_length=128)


JOB_PARAMS: dict[JobKind, type[BaseModel]] = {
    JobKind.CAPTURE: CaptureParams,
    JobKind.LIGHTBOX: LightboxParams,
    JobKind.POSTPROCESS: PostprocessParams,
    JobKind.REPROCESS: ReprocessParams,
    JobKind.EXPORT: ExportParams,
    JobKind.DEBLUR: DeblurParams,
}


def validate_params(kind: JobKind | str, params: dict[str, Any] | None,
                    settings: Settings) -> tuple[JobKind, BaseModel]:
    """The kind and its validated parameter model; JobParamsError names the bad field.

    ``settings``: the app's (or worker's) settings; a capture's (or lightbox's) rig must exist as
    ``<settings.rigs_dir>/<rig>.yaml``.
    """
    try:
        kind = JobKind(kind)
    except ValueError:
        raise JobParamsError(f"kind: unknown job kind {kind!r}; one of "
                             f"{', '.join(k.value for k in JobKind)}") from None
    if params is not None and not isinstance(params, dict):
        raise JobParamsError(f"params: expected an object, got {type(params).__name__}")
    try:
        model = JOB_PARAMS[kind].model_validate(params or {})
    except ValidationError as exc:  # the first problem, in the words of every config file
        problem = validation_problems(exc, root="params", unknown=f"unknown field for a {kind.value} job")[0]
        raise JobParamsError(problem) from None
    check = CHECKS.get(kind)
    if check is not None:
        check(model, settings)
    return kind, model


def _check_export_out(model: ExportParams, settings: Settings) -> None:
    """The export destination under the exports root (checked again when the job runs: links
    may change)."""
    from postprocess.export import check_export_destination

    root = settings.resolved_exports_dir
    try:
        check_export_destination(root / model.out, settings.data_dir, root,
                                 overwrite=model.overwrite, confine=True)
    except ValueError as exc:
        raise JobParamsError(f"out: {exc}") from None


def _check_rig_file(model: CaptureParams | LightboxParams, settings: Settings) -> None:
    """The rig's file ``<settings.rigs_dir>/<rig>.yaml`` exists."""
    if not rig_file(settings.rigs_dir, model.rig).is_file():
        raise JobParamsError(f"rig: no rig file {rig_file(settings.rigs_dir, model.rig).name} in the rigs folder "
                             f"(GET /api/v1/rigs lists the rigs)")


CHECKS: dict[JobKind, Callable[[Any, Settings], None]] = {
    JobKind.EXPORT: _check_export_out,
    JobKind.CAPTURE: _check_rig_file,
    JobKind.LIGHTBOX: _check_rig_file,
}
"""What a kind's parameters are checked against beyond their model (the settings' folders)."""
