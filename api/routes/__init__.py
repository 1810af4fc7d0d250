"""One router per resource; ``ROUTERS`` is what ``api.app.create_app`` mounts under /api/v1."""

from __future__ import annotations

from api.routes import (
    artefacts,
    calibrations,
    captures,
    checkpoints,
    deblur,
    jobs,
    plans,
    rigs,
    scenes,
    tokens,
)

ROUTERS = [
    tokens.router,
    rigs.router,
    plans.router,
    scenes.router,
    captures.router,
    calibrations.router,
    jobs.router,
    deblur.router,
    checkpoints.router,
    artefacts.router,
]
