"""Deblurring: an uploaded PNG/TIFF/DNG as a job (202), or a synchronous preview (PNG back)."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
import cv2
import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from api import uploads
from api.deps import ModelDep, OperatorToken, SettingsDep
from api.routes.jobs import ACCEPTED, SubmitDep
from api.schemas import ErrorOut, JobAccepted
from core.models import JobKind

router = APIRouter(tags=["deblur"])

UPLOAD_ERRORS = {
    413: {"model": ErrorOut, "description": "Larger than max_upload_mb."},
    415: {"model": ErrorOut, "description": "Not a PNG, TIFF or DNG image."},
    422: {"model": ErrorOut, "description": "A corrupt image or bad parameters."},
}
ImageFile = Annotated[UploadFile, File(description="A PNG, TIFF or DNG image.")]


@router.post(
    "/deblur/uploads",
    summary="Upload an image to deblur as a job (its result: the job's result paths)",
    **{**ACCEPTED, "responses": UPLOAD_ERRORS},
)
def deblur_upload(
    file: ImageFile,
    settings: SettingsDep,
    submit: SubmitDep,
    tile: Annotated[int | None, Form(ge=16, le=8192, multiple_of=4)] = None,
    dtype: Annotated[Literal["fp32", "bf16"], Form()] = "fp32",
) -> JobAccepted:
    """The file is checked by content and decoded before it is kept, under
    ``uploads/<uuid>.<ext>``; on any failure nothing is stored."""
    rel, _ = uploads.store_upload(file.file, settings.data_dir)
    try:
        params = {"inputs": [rel], "tile": tile, "dtype": dtype}
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
    file: ImageFile,
    request: Request,
    settings: SettingsDep,
    model: ModelDep,
    _: OperatorToken,
    output: Annotated[
        Literal["image", "mask"], Query(description="image, or the blur mask")
    ] = "image",
) -> Response:
    """For images of at most ``preview_max_pixels`` pixels (413 above: use ``/deblur/uploads``).
    Nothing is stored. Runs in a worker thread, one preview at a time."""
    from api.app import ModelUnavailableError

    if model is None:
        raise ModelUnavailableError(
            "no deblurring model is loaded: start the server with RELOBLUR_CHECKPOINT set"
        )
    scratch = settings.data_dir / ".scratch"
    image = await anyio.to_thread.run_sync(uploads.check_upload, file.file, scratch)
    if image.width * image.height > settings.preview_max_pixels:
        raise uploads.ImageTooLargeError(
            f"image is {image.width}×{image.height} = {image.width * image.height} px; "
            "previews take "
            f"at most {settings.preview_max_pixels} px: submit it with POST /api/v1/deblur/uploads"
        )
    async with request.app.state.infer_lock:
        png = await anyio.to_thread.run_sync(_preview, model, image, output)
    return Response(png, media_type="image/png")
