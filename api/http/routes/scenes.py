"""Scenes: list, and one scene with its captures, products and processing runs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.http.deps import DbDep, Limit, Offset, ViewerToken, get_scene
from api.http.schemas import CaptureOut, ProcessingRunOut, ProductOut, SceneDetail, SceneOut
from core.models import Capture, CaptureKind, ProcessingRun, Product, Scene

router = APIRouter(tags=["scenes"])


def _counts(session: Session, scene_ids: list[int]) -> dict[int, tuple[int, int]]:
    rows = session.execute(
        select(Capture.scene_id, Capture.kind, func.count())
        .where(Capture.scene_id.in_(scene_ids))
        .group_by(Capture.scene_id, Capture.kind)
    ).all()
    out: dict[int, tuple[int, int]] = {}
    for scene_id, kind, n in rows:
        total, pairs = out.get(scene_id, (0, 0))
        out[scene_id] = (total + n, pairs + (n if kind == CaptureKind.PAIR else 0))
    return out


@router.get("/scenes", response_model=list[SceneOut], summary="List scenes")
async def list_scenes(
    request: Request,
    db: DbDep,
    _: ViewerToken,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SceneOut]:
    return await db.read(request, _list_scenes, limit, offset)


def _list_scenes(session: Session, limit: int, offset: int) -> list[SceneOut]:
    scenes = list(session.scalars(select(Scene).order_by(Scene.id).limit(limit).offset(offset)))
    counts = _counts(session, [s.id for s in scenes])
    return [
        SceneOut.model_validate(s, from_attributes=True).model_copy(
            update=dict(zip(("n_captures", "n_pairs"), counts.get(s.id, (0, 0)), strict=True))
        )
        for s in scenes
    ]


@router.get("/scenes/{name}", response_model=SceneDetail, summary="One scene in full")
async def scene_detail(name: str, request: Request, db: DbDep, _: ViewerToken) -> SceneDetail:
    return await db.read(request, _scene_detail, name)


def _scene_detail(session: Session, name: str) -> SceneDetail:
    scene = get_scene(session, name)
    total, pairs = _counts(session, [scene.id]).get(scene.id, (0, 0))
    captures = session.scalars(
        select(Capture)
        .where(Capture.scene_id == scene.id)
        .order_by(Capture.kind, Capture.trigger_index)
    )
    products = session.scalars(
        select(Product).where(Product.scene_id == scene.id).order_by(Product.id)
    )
    runs = session.scalars(
        select(ProcessingRun).where(ProcessingRun.scene_id == scene.id).order_by(ProcessingRun.id)
    )
    return SceneDetail(
        **SceneOut.model_validate(scene).model_dump(exclude={"n_captures", "n_pairs"}),
        n_captures=total,
        n_pairs=pairs,
        captures=[CaptureOut.model_validate(c) for c in captures],
        products=[ProductOut.model_validate(p) for p in products],
        processing_runs=[ProcessingRunOut.model_validate(r) for r in runs],
    )
