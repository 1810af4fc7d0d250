"""One router per resource; ``ROUTERS`` is what ``api.http.app.create_app`` mounts under /api/v1."""

from __future__ import annotations

from api.http.routes import (
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

ROUTERS = [  # the most-read first: a request's path is matched router by router, in this order
    scenes.router,
    captures.router,
    jobs.router,
    artefacts.router,
    rigs.router,
    calibrations.router,
    tokens.router,
    plans.router,
    deblur.router,
    checkpoints.router,
]
