"""``GET /health``: the one endpoint that needs no token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from api.deps import ModelDep, RunnerDep
from api.schemas import HealthOut
from core import __version__

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness, database and model state")
def health(request: Request, model: ModelDep, runner: RunnerDep) -> HealthOut:
    """No token needed. ``database`` is ``ok`` when a ``SELECT 1`` answers."""
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        database = f"error: {type(exc).__name__}"
    return HealthOut(
        status="ok" if database == "ok" else "degraded",
        version=__version__,
        database=database,
        device=str(model.device) if model else None,
        model_loaded=model is not None,
        runner=runner is not None,
    )
