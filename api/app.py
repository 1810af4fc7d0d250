"""The FastAPI service: ``create_app(settings)``, its lifespan, limits and error mapping.

- Everything lives under ``/api/v1``; the OpenAPI schema is ``/api/v1/openapi.json`` and the
  interactive docs ``/api/v1/docs``.
- Auth: every endpoint needs a Bearer token of at least the viewer role, except
  ``GET /api/v1/health`` and the OpenAPI documents (see :mod:`api.auth`).
- The lifespan opens the database engine, loads the deblurring model once when
  ``settings.checkpoint`` is set (device: ``settings.device``, auto = CUDA else CPU) and starts
  the job runner; inference runs in a worker thread, never on the event loop.
- Named errors of the packages become 4xx with their message (``{"detail": "..."}``).
- Read endpoints answer from a cache kept exact by the database's change version
  (:mod:`api.readcache`; ``settings.read_cache``); a request that may write invalidates it.
- Request bodies above ``settings.max_upload_mb`` are refused with 413 while they stream in.
- CORS is closed unless ``settings.cors_origins`` lists origins.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pydantic
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api import auth, uploads
from api.deps import Database, LoadedModel
from api.errors import ModelUnavailableError, PayloadTooLargeError
from api.readcache import ReadCache, change_watch
from api.routes import ROUTERS
from api.routes.health import router as health_router
from api.schemas import ErrorOut
from core import __version__
from core.db import make_engine, session_factory
from core.settings import Settings, get_settings
from core.text import has_control_characters, printable

log = logging.getLogger(__name__)
audit = logging.getLogger("reloblur.audit")

API_PREFIX = "/api/v1"


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413, counting while they stream.

    A declared Content-Length above the limit is refused before anything is read; otherwise
    the body is counted as it arrives and the request is cut off at the first byte over.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> bytes:
        mib = self.max_bytes / (1 << 20)
        return json.dumps({"detail": f"request body too large: the limit is {mib:g} MiB"}).encode()

    async def _send_413(self, send: Any) -> None:
        body = self._message()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in WriteRequestsMiddleware.SAFE:
            await self.app(scope, receive, send)  # no route of those methods reads a body
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._send_413(send)
                return
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["over"] = True
                    raise PayloadTooLargeError
            return message

        async def guarded_send(message: dict) -> None:
            if state["over"]:  # the app answered the cut-off body (400...): answer 413 instead
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await self._send_413(send)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLargeError:
            if not state["started"]:
                await self._send_413(send)


class ControlCharactersMiddleware:
    """Refuse, with 422, a request whose decoded path or query string holds a control character
    (NUL, newline, ...). No name, id or path of this service contains one; refusing them at the
    edge keeps them out of the databases (PostgreSQL rejects NUL in text), the file store and
    the logs. The body follows FastAPI's validation-error shape (a list of problems)."""

    def __init__(self, app: Any):
        self.app = app

    @staticmethod
    def _problem(scope: dict) -> tuple[str, str] | None:
        if has_control_characters(scope["path"]):
            return "path", "the path holds a control character"
        query = scope.get("query_string", b"")
        if query:
            from urllib.parse import parse_qsl

            decoded = query.decode("latin-1")
            for key, value in parse_qsl(decoded, keep_blank_values=True):
                if has_control_characters(key) or has_control_characters(value):
                    return "query", f"query parameter {printable(key)!r} holds a control character"
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope)
            if problem is not None:
                where, message = problem
                await JSONResponse(
                    {"detail": [{"loc": [where], "msg": message, "type": "value_error"}]},
                    status_code=422,
                )(scope, receive, send)
                return
        await self.app(scope, receive, send)


class WriteRequestsMiddleware:
    """Every request other than GET, HEAD or OPTIONS may write. When its answer starts (the
    route has committed by then) the app's read cache is told (``ReadCache.bump``); when it
    ends, one line goes to the ``reloblur.audit`` log: method, path, status, the caller's
    token (name, id and role) and the time taken. Reads are not logged unless the access log
    is on (``reloblur serve --access-log``)."""

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: Any, state: Any):
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in self.SAFE:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def bumping_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                cache = getattr(self.state, "read_cache", None)
                if cache is not None:
                    cache.bump()
            await send(message)

        try:
            await self.app(scope, receive, bumping_send)
        finally:
            caller = scope.get("state", {}).get("caller", "no valid token")
            audit.info("%s %s -> %d by %s in %.0f ms", printable(scope["method"]),
                       printable(scope["path"]), status[0], printable(caller),
                       (time.perf_counter() - started) * 1000)


class CachedReadMiddleware:
    """Answers a GET from the read cache before routing, when the caller's token is in the
    token cache (verified less than half its ``token_cache_s`` ago) and the URL's answer is
    current (:mod:`api.readcache`). Everything else (a miss, no or unknown token, an answer
    past its max age) goes on to the routes as usual, which authenticate, refresh and fill
    the cache.

    Only viewer endpoints put answers in the cache, and every token is at least a viewer, so
    any active token may read them. Skipping dependency resolution and routing makes a cached
    read several times cheaper.
    """

    JSON_HEADERS = (b"content-type", b"application/json")

    def __init__(self, app: Any, state: Any):
        self.app, self.state = app, state

    def _cached_answer(self, scope: dict) -> bytes | None:
        cache = getattr(self.state, "read_cache", None)
        tokens: auth.TokenCache | None = getattr(self.state, "token_cache", None)
        if cache is None or tokens is None:
            return None
        secret = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    secret = credentials.strip()
                break
        if not secret:
            return None
        token = tokens.get(auth.hash_secret(secret))
        if token is None or token[1] > tokens.ttl_s / 2:
            return None
        key = scope["path"] + "?" + scope["query_string"].decode("latin-1")
        hit = cache.get(key, cache.version())
        if hit is None or hit[1]:
            return None
        return hit[0]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = self._cached_answer(scope)
            if body is not None:
                headers = [self.JSON_HEADERS, (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


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


def _status_for(exc: Exception) -> int:
    """The HTTP status of a named error from the packages (first match along the MRO)."""
    from acquisition.capture import CaptureError, RigBusyError, SceneExistsError
    from acquisition.rig import RigConfigError
    from deblur.infer import CheckpointError, InferenceError
    from postprocess.pipeline import SceneNotFoundError

    table: list[tuple[type[BaseException], int]] = [
        (auth.TokenNotFoundError, 404),
        (SceneNotFoundError, 404),
        (uploads.UnsupportedImageError, 415),
        (uploads.ImageTooLargeError, 413),
        (RigBusyError, 409),
        (SceneExistsError, 409),
        (RigConfigError, 422),
        (CheckpointError, 422),
        (CaptureError, 409),
        (InferenceError, 422),
    ]
    from core.jobs import JobNotFoundError, JobParamsError, JobStateError

    table[:0] = [(JobNotFoundError, 404), (JobStateError, 409), (JobParamsError, 422)]
    for cls, status in table:
        if isinstance(exc, cls):
            return status
    return 422


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
        return _error(_status_for(exc), redact_paths(str(exc), request.app.state.settings))

    app.add_exception_handler(auth.AuthenticationError, unauthenticated)
    app.add_exception_handler(auth.PermissionDeniedError, forbidden)
    app.add_exception_handler(PayloadTooLargeError, too_large)
    app.add_exception_handler(ModelUnavailableError, unavailable)
    # Errors a user can cause are ValueError subclasses (and the capture errors).
    from acquisition.capture import CaptureError
    from deblur.infer import InferenceError

    for cls in (ValueError, CaptureError, InferenceError):
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

    ``runner``: a started ``api.jobrunner.JobRunner`` to submit jobs to (the caller closes it).
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
            # the error table imports the packages' error classes: once, off the event loop
            await anyio.to_thread.run_sync(_status_for, ValueError())
            app.state.model = await anyio.to_thread.run_sync(_load_model, settings)
            if runner is None and start_runner:
                from api.jobrunner import JobRunner

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
    app.add_middleware(CachedReadMiddleware, state=app.state)
    app.add_middleware(WriteRequestsMiddleware, state=app.state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.max_upload_mb * (1 << 20)))
    app.add_middleware(ControlCharactersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
