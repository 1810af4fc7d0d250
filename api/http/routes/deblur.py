"""Deblurring: an uploaded PNG/TIFF/DNG as a job (202), or a synchronous preview (PNG back).

The caller is authenticated before a byte of the body is read: the routes declare no
``File``/``Form`` parameters (FastAPI would read and parse the whole multipart body before
resolving any dependency); the form is parsed by a dependency that itself depends on the
operator token (:func:`upload_form`), and the multipart schema is given to OpenAPI by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio
import cv2
import numpy as np
import pydantic
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from api.http import uploads
from api.http.deps import ModelDep, OperatorToken, SettingsDep
from api.http.errors import ModelUnavailableError, PayloadTooLargeError
from api.http.schemas import ErrorOut, JobAccepted
from api.http.submit import ACCEPTED, SubmitDep
from core.models import JobKind

router = APIRouter(tags=["deblur"])

UPLOAD_ERRORS = {
    413: {
        "model": ErrorOut,
        "description": "Larger than max_upload_mb, or an image over max_image_pixels.",
    },
    415: {"model": ErrorOut, "description": "Not a PNG, TIFF or DNG image."},
    422: {"model": ErrorOut, "description": "A corrupt image or bad parameters."},
}
FILE_DESCRIPTION = "A PNG, TIFF or DNG image."
MAX_FORM_FIELDS = 16
"""Most form fields (files included) an upload form may hold."""


class UploadFields(BaseModel):
    """The upload form's fields other than the file."""

    model_config = ConfigDict(extra="ignore")

    tile: Annotated[int | None, Field(ge=16, le=8192, multiple_of=4)] = None
    dtype: Literal["fp32", "bf16"] = "fp32"


@dataclass
class UploadForm:
    """A parsed upload form: the file (spooled by Starlette), the checked fields (None for a
    form of just a file) and the form itself (closed when the request is done)."""

    file: UploadFile
    fields: Any
    form: FormData


def _form_schema(fields: type[BaseModel] | None) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a multipart form: ``file`` plus the fields of ``fields``."""
    properties: dict[str, Any] = {
        "file": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "title": "File",
            "description": FILE_DESCRIPTION,
        }
    }
    if fields is not None:
        properties.update(fields.model_json_schema()["properties"])
    schema = {"type": "object", "properties": properties, "required": ["file"]}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


def _problem(loc: str, kind: str, msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": ("body", loc), "msg": msg, "input": None}


async def _parse_form(request: Request, fields: type[BaseModel] | None) -> UploadForm:
    """Read and check the multipart form (422 in FastAPI's shape for a missing file or a bad
    field; 400 for a body that is no valid form; 413 from the body limit)."""
    try:
        form: FormData = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except (StarletteHTTPException, PayloadTooLargeError, ClientDisconnect):
        raise
    except Exception:  # noqa: BLE001 - the multipart parser's errors: a malformed body
        raise HTTPException(
            400, "the request body is not a valid multipart/form-data form"
        ) from None
    problems: list[dict[str, Any]] = []
    file = form.get("file")
    if file is None:
        problems.append(_problem("file", "missing", "Field required"))
    elif not isinstance(file, UploadFile):
        problems.append(_problem("file", "value_error", "expected a file (a multipart file part)"))
    checked = None
    if fields is not None:
        values: dict[str, Any] = {}
        for name in fields.model_fields:
            value = form.get(name)
            if isinstance(value, UploadFile):
                problems.append(_problem(name, "value_error", "expected a value, not a file"))
            elif value not in (None, ""):
                values[name] = value
        try:
            checked = fields.model_validate(values)
        except pydantic.ValidationError as exc:
            for error in exc.errors(include_url=False):
                problems.append({**error, "loc": ("body", *error["loc"])})
    if problems:
        await form.close()
        raise RequestValidationError(problems)
    return UploadForm(file, checked, form)


def _form_dependency(fields, doc: str):
    """A dependency that reads the form (with ``fields`` checked, or just the image file when
    ``None``) only once the caller is an operator, and closes its files afterwards."""

    async def read_form(request: Request, _: OperatorToken) -> AsyncIterator[UploadForm]:
        parsed = await _parse_form(request, fields)
        try:
            yield parsed
        finally:
            await parsed.form.close()

    read_form.__doc__ = doc
    return read_form


upload_form = _form_dependency(UploadFields, "The upload form (file, tile, dtype), read only once "
                               "the caller is an operator.")
image_form = _form_dependency(None, "A form with just the image file, read only once the caller "
                              "is an operator.")


UploadFormDep = Annotated[UploadForm, Depends(upload_form)]
ImageFormDep = Annotated[UploadForm, Depends(image_form)]


@router.post(
    "/deblur/uploads",
    summary="Upload an image to deblur as a job (its result: the job's result paths)",
    openapi_extra=_form_schema(UploadFields),
    **{**ACCEPTED, "responses": UPLOAD_ERRORS},
)
def deblur_upload(form: UploadFormDep, settings: SettingsDep, submit: SubmitDep) -> JobAccepted:
    """The file is checked by content and decoded before it is kept, under
    ``uploads/<uuid>.<ext>``; on any failure nothing is stored. An image whose header declares
    more than ``max_image_pixels`` pixels is refused (413) before it is decoded."""
    rel, _ = uploads.store_upload(
        form.file.file, settings.data_dir, max_pixels=settings.max_image_pixels
    )
    try:
        params = {"inputs": [rel], "tile": form.fields.tile, "dtype": form.fields.dtype}
        return submit(JobKind.DEBLUR, params, upload=rel)
    except BaseException:
        submit.session.rollback()
        (settings.data_dir / rel).unlink(missing_ok=True)
        raise


def _preview(model, image: uploads.DecodedImage, output: str) -> bytes:
    from deblur.infer import deblur_image

    out, gate = deblur_image(model.model, uploads.to_rgb01(image))
    if output == "mask":
        if gate is None:
            raise uploads.UploadError("this model predicts no blur mask; ask for output=image")
        picture = np.rint(gate * 255.0).astype(np.uint8)
    else:
        picture = cv2.cvtColor(np.rint(out * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, png = cv2.imencode(".png", picture)
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


@router.post(
    "/deblur/preview",
    summary="Deblur a small image now and get the PNG back",
    response_class=Response,
    openapi_extra=_form_schema(None),
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "The deblurred image (or mask), 8-bit PNG.",
        },
        **UPLOAD_ERRORS,
        503: {"model": ErrorOut, "description": "No model loaded (settings.checkpoint unset)."},
    },
)
async def deblur_preview(
    request: Request,
    settings: SettingsDep,
    model: ModelDep,
    form: ImageFormDep,
    output: Annotated[
        Literal["image", "mask"], Query(description="image, or the blur mask")
    ] = "image",
) -> Response:
    """For images of at most ``preview_max_pixels`` pixels (413 above, from the header, before
    decoding: use ``/deblur/uploads``). Nothing is stored. Runs in a worker thread, one preview
    at a time."""
    if model is None:
        raise ModelUnavailableError(
            "no deblurring model is loaded: start the server with RELOBLUR_CHECKPOINT set"
        )
    scratch = settings.data_dir / ".scratch"
    if settings.preview_max_pixels <= settings.max_image_pixels:
        limit = settings.preview_max_pixels
        limit_text = (
            "previews take at most {max_pixels} px: submit it with POST /api/v1/deblur/uploads"
        )
    else:
        limit = settings.max_image_pixels
        limit_text = "uploads may have at most {max_pixels} px (max_image_pixels)"
    image = await anyio.to_thread.run_sync(
        lambda: uploads.check_upload(
            form.file.file, scratch, max_pixels=limit, limit_text=limit_text
        )
    )
    if image.width * image.height > settings.preview_max_pixels:
        raise uploads.ImageTooLargeError(
            f"image is {image.width}×{image.height} = {image.width * image.height} px; "
            "previews take "
            f"at most {settings.preview_max_pixels} px: submit it with POST /api/v1/deblur/uploads"
        )
    async with request.app.state.infer_lock:
        png = await anyio.to_thread.run_sync(_preview, model, image, output)
    return Response(png, media_type="image/png")
