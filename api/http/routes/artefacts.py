"""Artefact downloads: products (images, masks), frames (DNG), a scene's flow as a PNG, and
files of jobs' outputs. Every file is served from inside the data directory, nowhere else."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import anyio
import cv2
import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.http.deps import (
    DbDep,
    IdPath,
    IdQuery,
    Limit,
    Offset,
    SessionDep,
    SettingsDep,
    ViewerToken,
    get_scene,
)
from api.http.schemas import ErrorOut, ProductOut
from core import previews
from core.models import Frame, Product, ProductKind, Scene
from core.text import has_control_characters

router = APIRouter(tags=["artefacts"])

MEDIA_TYPES = {
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".dng": "image/x-adobe-dng",
    ".json": "application/json",
    ".npy": "application/octet-stream",
}
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such record or file."}}


def _allowed(rel: PurePosixPath) -> bool:
    """A relative path this service may serve: no absolute path, no ``.``/``..`` or hidden
    (``.name``) part, a known file type."""
    return (
        not rel.is_absolute()
        and bool(rel.parts)
        and not any(part in ("..", ".") or part.startswith(".") for part in rel.parts)
        and rel.suffix.lower() in MEDIA_TYPES
    )


def data_file(data_dir: Path, rel: str) -> Path:
    """The file ``rel`` inside ``data_dir``; 404 for anything else (absolute paths, ``..``,
    hidden or temporary names, other file types, missing files).

    Symlinks are resolved first and every rule is applied again to the resolved path: a link
    may only lead to a servable file inside the data directory (never to the database, a
    hidden file or anything outside)."""
    missing = HTTPException(404, f"no file {rel!r} in the data store")
    if not rel or "\\" in rel or has_control_characters(rel) or not _allowed(PurePosixPath(rel)):
        raise missing
    root = Path(data_dir).resolve()
    full = (root / rel).resolve()
    if not full.is_relative_to(root) or not full.is_file():
        raise missing
    if not _allowed(PurePosixPath(full.relative_to(root).as_posix())):
        raise missing
    return full


def _file_response(data_dir: Path, rel: str) -> FileResponse:
    path = data_file(data_dir, rel)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()], filename=path.name)


@router.get("/products", response_model=list[ProductOut], summary="List post-processing products")
async def list_products(
    request: Request,
    db: DbDep,
    _: ViewerToken,
    scene: str | None = None,
    kind: ProductKind | None = None,
    capture_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ProductOut]:
    return await db.read(request, _list_products, scene, kind, capture_id, limit, offset)


def _list_products(session: Session, scene: str | None, kind: ProductKind | None,
                   capture_id: int | None, limit: int, offset: int) -> list[ProductOut]:
    q = select(Product).order_by(Product.id)
    if scene is not None:
        q = q.join(Scene, Product.scene_id == Scene.id).where(Scene.name == scene)
    if kind is not None:
        q = q.where(Product.kind == kind)
    if capture_id is not None:
        q = q.where(Product.capture_id == capture_id)
    return [ProductOut.model_validate(p) for p in session.scalars(q.limit(limit).offset(offset))]


def _product(session: Session, product_id: int) -> Product:
    row = session.get(Product, product_id)
    if row is None:
        raise HTTPException(404, f"no product with id {product_id}")
    return row


@router.get(
    "/products/{product_id:int}", response_model=ProductOut, responses=NOT_FOUND, summary="One product"
)
async def get_product(
    product_id: IdPath, request: Request, db: DbDep, _: ViewerToken
) -> ProductOut:
    return await db.read(
        request, lambda session: ProductOut.model_validate(_product(session, product_id))
    )


@router.get(
    "/products/{product_id:int}/file",
    response_class=FileResponse,
    responses={**NOT_FOUND, 304: {"description": "The preview named by If-None-Match is current."}},
    summary="Download a product's file (image, mask, flow .npy, colour .json)",
)
async def product_file(
    product_id: IdPath,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    _: ViewerToken,
    max_side: Annotated[int | None, Query(ge=previews.MIN_SIDE, le=previews.MAX_SIDE, description=(
        "Answer a preview (JPEG for colour, PNG for masks) with its longer side at most this many px (cached; ETag)"))] = None,
):
    """The file itself, or with ``max_side`` a downscaled preview of an image product
    (``ETag``; ``If-None-Match`` → 304; kept an hour by the browser). Async; the row's path and
    hash are reused while the database is unchanged (:meth:`Database.facts`): a gallery asks
    for 150 of these at once."""
    path, sha256, kind = await db.facts(("product-file", product_id), _product_file_facts, product_id)
    if max_side is None:
        return _file_response(settings.data_dir, path)
    if PurePosixPath(path).suffix.lower() not in (".png", ".tif", ".tiff"):
        raise HTTPException(422, f"product {product_id} ({kind}) is not an image: no preview")
    return await _preview_response(request, settings.data_dir, path, sha256, max_side)


def _product_file_facts(session: Session, product_id: int) -> tuple[str, str, str]:
    row = _product(session, product_id)
    return row.path, row.sha256, str(row.kind)


async def _preview_response(request: Request, data_dir: Path, path: str, sha256: str, max_side: int) -> Response:
    """A cached preview (JPEG for colour, PNG otherwise) of the data store's file ``path`` (ETag from its hash; 304 when
    If-None-Match names it). A cached preview is read at once; a new one is made in a worker
    thread."""
    tag = previews.etag(sha256, max_side)
    headers = {"ETag": tag, "Cache-Control": "private, max-age=3600"}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    hit = previews.cached(data_dir, sha256, max_side)
    if hit is None:
        hit = await anyio.to_thread.run_sync(
            previews.preview, data_dir, data_file(data_dir, path), sha256, max_side)
    data, media_type = hit
    return Response(data, media_type=media_type, headers=headers)


@router.get(
    "/captures/{capture_id:int}/mask",
    response_class=FileResponse,
    responses=NOT_FOUND,
    summary="Download a pair's newest blur mask (PNG, 0 / 255)",
)
def capture_mask(capture_id: IdPath, session: SessionDep, settings: SettingsDep, _: ViewerToken):
    row = session.scalar(
        select(Product)
        .where(Product.capture_id == capture_id, Product.kind == ProductKind.MASK)
        .order_by(Product.id.desc())
        .limit(1)
    )
    if row is None:
        raise HTTPException(404, f"capture {capture_id} has no mask: process its scene first")
    return _file_response(settings.data_dir, row.path)


@router.get(
    "/frames/{frame_id:int}/file",
    response_class=FileResponse,
    responses=NOT_FOUND,
    summary="Download a raw frame (DNG)",
)
async def frame_file(
    frame_id: IdPath,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    _: ViewerToken,
    max_side: Annotated[int | None, Query(ge=previews.MIN_SIDE, le=previews.MAX_SIDE, description=(
        "Answer a JPEG preview (plainly developed, half size at most) with its longer side at most "
        "this many px (cached; ETag)"))] = None,
):
    """The DNG itself, or with ``max_side`` a JPEG preview of it (see :mod:`core.previews`)."""
    path, sha256 = await db.facts(("frame-file", frame_id), _frame_file_facts, frame_id)
    if max_side is None:
        return _file_response(settings.data_dir, path)
    return await _preview_response(request, settings.data_dir, path, sha256, max_side)


def _frame_file_facts(session: Session, frame_id: int) -> tuple[str, str]:
    row = session.get(Frame, frame_id)
    if row is None:
        raise HTTPException(404, f"no frame with id {frame_id}")
    return row.path, row.sha256


@router.get(
    "/scenes/{name}/flow.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
    summary="The scene's newest B→S flow as a picture (hue: direction, value: magnitude)",
)
def scene_flow_png(
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    _: ViewerToken,
    max_magnitude: Annotated[
        float | None, Query(gt=0, le=1e6, description="px at full value")
    ] = None,
) -> Response:
    from postprocess.flow import flow_to_png

    scene = get_scene(session, name)
    row = session.scalar(
        select(Product)
        .where(Product.scene_id == scene.id, Product.kind == ProductKind.FLOW)
        .order_by(Product.id.desc())
        .limit(1)
    )
    if row is None:
        raise HTTPException(404, f"scene {name!r} has no flow yet: process it first")
    flow = np.load(data_file(settings.data_dir, row.path), allow_pickle=False)
    rgb = flow_to_png(flow, max_magnitude)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return Response(png.tobytes(), media_type="image/png")


@router.get(
    "/files/{path:path}",
    response_class=FileResponse,
    responses=NOT_FOUND,
    summary="Download a file of the data store (jobs' outputs: deblurred images, exports)",
)
def data_store_file(path: str, settings: SettingsDep, _: ViewerToken):
    """Images (PNG, TIFF, DNG), ``.json`` and ``.npy`` only; never the database, never outside."""
    return _file_response(settings.data_dir, path)
