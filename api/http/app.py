"""The FastAPI service: ``create_app(settings)``, its lifespan, limits and error mapping.

- Everything lives under ``/api/v1``; the OpenAPI schema is ``/api/v1/openapi.json`` and the
  interactive docs ``/api/v1/docs``.
- Auth: every endpoint needs a Bearer token of at least the viewer role, except
  ``GET /api/v1/health`` and the OpenAPI documents (see :mod:`api.http.auth`).
- The lifespan opens the database engine, loads the deblurring model once when
  ``settings.checkpoint`` is set (device: ``settings.device``, auto = CUDA else CPU) and starts
  the job runner; inference runs in a worker thread, never on the event loop.
- Errors the caller caused (a :class:`core.errors.UserError`, or a ``ValueError``) become the
  status their class names (:func:`core.errors.http_status_of`, 422 by default) with their
  message (``{"detail": "..."}``).
- Read endpoints answer from a cache kept exact by the database's change version
  (:mod:`api.http.readcache`; ``settings.read_cache``); a request that may write invalidates it.
- Request bodies above ``settings.max_upload_mb`` are refused with 413 while they stream in
  (the middleware: :mod:`api.http.middleware`).
- CORS is closed unless ``settings.cors_origins`` lists origins.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pydantic
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.console.pages import mount_console
from api.console.session import CsrfError
from api.http import auth
from api.http.deps import Database, LoadedModel
from api.http.errors import ModelUnavailableError, PayloadTooLargeError
from api.http.middleware import (
    BodyLimitMiddleware,
    CachedReadMiddleware,
    ControlCharactersMiddleware,
    WriteRequestsMiddleware,
)
from api.http.readcache import ReadCache, change_watch
from api.http.routes import ROUTERS
from api.http.routes.health import router as health_router
from api.http.schemas import ErrorOut
from api.http.security_headers import SecurityHeadersMiddleware
from core import __version__
from core.db import make_engine, session_factory
from core.errors import UserError, http_status_of
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def redact_paths(message: str, settings: Settings) -> str:
    """``message`` without the server's filesystem layout: the data directory's absolute path is
    dropped (paths become relative to it), the rigs folder becomes ``rigs/`` and the temporary
    folder ``tmp/``. A safety net under messages that already avoid paths."""
    import tempfile

    roots = [
        (settings.rigs_dir, "rigs"),
        (settings.data_dir, ""),
        (Path(tempfile.gettempdir()), "tmp"),
    ]
    for root, name in roots:
        for form in sorted({str(root.resolve()), str(root.absolute())}, key=len, reverse=True):
            if form != "/":
                message = message.replace(form + "/", f"{name}/" if name else "")
                message = message.replace(form, name or ".")
    return message


EDGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "A malformed request (e.g. a body that is not JSON)."},
    422: {"model": ErrorOut, "description": "Parameters that are not valid (a list of problems "
          "for a malformed field, a message for a named error)."},
}
"""Answers any endpoint may give, documented on every operation."""

COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    **EDGE_RESPONSES,
    401: {"model": ErrorOut, "description": "No token, or a token that is unknown, revoked or "
          "expired (`WWW-Authenticate: Bearer`)."},
    403: {"model": ErrorOut, "description": "The token's role may not do this."},
    404: {"model": ErrorOut, "description": "No such record, rig or file."},
}
"""Answers of every authenticated endpoint, documented on each operation."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def unauthenticated(request: Request, exc: Exception) -> JSONResponse:
        return _error(401, str(exc), {"WWW-Authenticate": "Bearer"})

    async def forbidden(request: Request, exc: Exception) -> JSONResponse:
        return _error(403, str(exc))

    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        return _error(413, "request body too large")

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc))

    async def named(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, pydantic.ValidationError):  # a bug of ours, not the caller's input
            log.error("unhandled validation error", exc_info=exc)
            return _error(500, "internal error")
        return _error(http_status_of(exc), redact_paths(str(exc), request.app.state.settings))

    app.add_exception_handler(auth.AuthenticationError, unauthenticated)
    app.add_exception_handler(auth.PermissionDeniedError, forbidden)
    app.add_exception_handler(CsrfError, forbidden)
    app.add_exception_handler(PayloadTooLargeError, too_large)
    app.add_exception_handler(ModelUnavailableError, unavailable)
    # Errors a user can cause: a UserError (its class names the status) or a plain ValueError.
    for cls in (UserError, ValueError):
        app.add_exception_handler(cls, named)


def _load_model(settings: Settings) -> LoadedModel | None:
    if settings.checkpoint is None:
        return None
    from deblur.infer import load_checkpoint, resolve_device

    device = resolve_device(settings.device)
    model, meta = load_checkpoint(settings.checkpoint, device)
    log.info("loaded %s from %s on %s", meta["model_name"], settings.checkpoint, device)
    return LoadedModel(model, device, meta)


def create_app(
    settings: Settings | None = None, *, runner: Any = None, start_runner: bool = True
) -> FastAPI:
    """The API app for ``settings`` (default: the process settings).

    ``runner``: a started ``api.jobs.runner.JobRunner`` to submit jobs to (the caller closes it).
    Without one, the lifespan starts its own when ``start_runner`` (and closes it at shutdown);
    with ``start_runner=False`` and no runner, jobs are recorded and stay ``queued`` until a
    runner elsewhere picks them up.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.resolved_database_url)
        app.state.engine = engine
        app.state.session_factory = session_factory(engine)
        read_cache = None
        if settings.read_cache:
            read_cache = ReadCache(change_watch(settings.resolved_database_url))
        app.state.read_cache = read_cache
        app.state.database = Database(app.state.session_factory, read_cache)
        app.state.token_cache = auth.TokenCache(settings.token_cache_s)
        app.state.infer_lock = anyio.Lock()
        own_runner = None
        try:
            app.state.model = await anyio.to_thread.run_sync(_load_model, settings)
            if runner is None and start_runner:
                from api.jobs.runner import JobRunner

                own_runner = JobRunner(settings)
                await anyio.to_thread.run_sync(own_runner.start)
            app.state.runner = runner if runner is not None else own_runner
            yield
        finally:
            if own_runner is not None:
                await anyio.to_thread.run_sync(own_runner.close)
            app.state.model = None
            if read_cache is not None:
                read_cache.close()
            engine.dispose()

    app = FastAPI(
        title="ReLoBlur Lab API",
        version=__version__,
        description=(
            "Capture rig, post-processing and LBAG deblurring. Every endpoint needs "
            "`Authorization: Bearer <token>` (roles: viewer reads; operator captures and runs "
            "jobs; admin manages tokens), except `GET /api/v1/health` and these docs."
        ),
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runner = runner
    app.state.model = None
    _install_error_handlers(app)
    app.include_router(health_router, prefix=API_PREFIX, responses=EDGE_RESPONSES)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX, responses=COMMON_RESPONSES)
    mount_console(app)
    app.add_middleware(CachedReadMiddleware, state=app.state)
    app.add_middleware(WriteRequestsMiddleware, state=app.state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.max_upload_mb * (1 << 20)))
    app.add_middleware(ControlCharactersMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, docs_path=f"{API_PREFIX}/docs")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
