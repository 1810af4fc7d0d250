"""``GET /health``: the one endpoint that needs no token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.http.deps import Database, DbDep, ModelDep, RunnerDep
from api.http.schemas import HealthOut
from core import __version__

router = APIRouter(tags=["health"])


PROBE_S = 2.0
"""Oldest database probe ``/health`` answers with (s)."""


def _select_one(session: Session) -> None:
    session.execute(text("SELECT 1"))


async def _probe(db: Database) -> str:
    try:
        await db.run(_select_one)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get("/health", response_model=HealthOut, summary="Liveness, database and model state")
async def health(request: Request, db: DbDep, model: ModelDep, runner: RunnerDep) -> HealthOut:
    """No token needed. ``database`` is ``ok`` when a ``SELECT 1`` answered; the probe runs
    at most every ``PROBE_S / 2`` seconds in the background, and a request waits for one only
    when the last answer is older than ``PROBE_S``."""
    database = await db.fresh("health", lambda: _probe(db), max_age=PROBE_S)
    return HealthOut(
        status="ok" if database == "ok" else "degraded",
        version=__version__,
        database=database,
        device=str(model.device) if model else None,
        model_loaded=model is not None,
        runner=runner is not None or getattr(request.app.state, "runner_elsewhere", False),
    )
