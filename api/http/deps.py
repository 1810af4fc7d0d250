"""Typed dependencies: settings, the database, the job runner, the model, the caller's token.

Every dependency is ``async def`` except ``SessionDep``: FastAPI runs a plain ``def``
dependency in its thread pool, one hand-over per dependency per request, which costs more than
the work itself. The read routes are ``async def`` and do all their database work in one
hand-over, ``await db.run(fn, ...)`` (``DbDep``); the caller's token comes from a short-lived
cache (:class:`api.http.auth.TokenCache`, ``settings.token_cache_s``) and asks the database only on a
miss. So a read costs one thread hand-over, not five. Routes that write keep ``SessionDep`` (a
session opened and closed in the pool) and run as plain functions.

Routes declare what they need with these aliases (``DbDep``, ``SessionDep``, ``SettingsDep``,
``ViewerToken``, ``OperatorToken``, ``AdminToken``...) and stay thin; :func:`get_scene` is the
lookup that more than one route shares.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic_core import to_json
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.console import session as console_session
from api.http import auth
from api.http.readcache import ReadCache
from api.jobs.params import MAX_DB_ID
from core.models import ApiToken, Role, Scene
from core.settings import Settings

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False, description="An API token: `reloblur token create`.")


async def get_settings_dep(request: Request) -> Settings:
    """The app's Settings (given to ``create_app``)."""
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A session on the app's engine; routes commit what they change; closed afterwards."""
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]

T = TypeVar("T")


class SingleFlight:
    """Concurrent calls with one key share one execution: the first caller runs it, the others
    await its result (or its exception). After a cache expires, fifty clients asking at once
    cost one database query, not fifty threads fighting for the interpreter.

    Lives on one event loop. A caller whose leader was cancelled (its client went away) runs
    the call itself.
    """

    def __init__(self) -> None:
        self._calls: dict[Any, asyncio.Future] = {}

    def __contains__(self, key: Any) -> bool:
        return key in self._calls

    async def run(self, key: Any, call: Callable[[], Awaitable[T]]) -> T:
        shared = self._calls.get(key)
        if shared is not None:
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                if not shared.cancelled() or _being_cancelled():
                    raise
            return await call()
        shared = asyncio.get_running_loop().create_future()
        shared.add_done_callback(_retrieve)
        self._calls[key] = shared
        try:
            result = await call()
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except BaseException as exc:
            shared.set_exception(exc)
            raise
        else:
            shared.set_result(result)
            return result
        finally:
            del self._calls[key]


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _retrieve(future: asyncio.Future) -> None:
    """Mark a shared exception as seen (nobody may have waited for it)."""
    if not future.cancelled():
        future.exception()


FACTS_MAX = 10_000
"""Entries of :meth:`Database.facts` kept at most (then it starts afresh)."""


class Database:
    """The app's sessions for ``async def`` routes: ``await db.run(fn, *args)`` runs
    ``fn(session, *args)`` in the thread pool with a new session (closed afterwards; ``fn``
    commits what it changes) and returns its result: one hand-over for all of a route's queries.
    ``await db.read(request, fn, *args)`` answers a GET with the JSON of that result, from the
    read cache (:mod:`api.http.readcache`) while the database has not changed.
    """

    def __init__(self, factory: sessionmaker[Session], cache: ReadCache | None = None) -> None:
        self.factory, self.cache = factory, cache
        self.single_flight = SingleFlight()
        self._values: dict[Any, tuple[float, Any]] = {}
        self._facts: dict[Any, tuple[int, Any]] = {}
        self._background: set[asyncio.Task] = set()

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.factory() as session:
            return fn(session, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(self._call, fn, args)

    async def read(self, request: Request, fn: Callable[..., Any], *args: Any,
                   max_age: float | None = None) -> Response:
        """The JSON answer (200) of ``fn(session, *args)`` (a pydantic model or a list of them).

        Served from the read cache when this URL was read at the current change version; an
        answer older than ``max_age`` seconds (answers that also depend on files) is served
        once more while a fresh one is read in the background. Concurrent misses of one URL
        share one query.
        """
        cache = self.cache
        key = request.scope["path"] + "?" + request.scope["query_string"].decode("latin-1")
        version = cache.version() if cache is not None else None

        async def query() -> bytes:
            encoded = to_json(await self.run(fn, *args))
            if cache is not None:
                cache.put(key, version, encoded, max_age)
            return encoded

        hit = cache.get(key, version) if cache is not None else None
        if hit is not None:
            body, past_max_age = hit
            if past_max_age:
                self.in_background(("read", key, version), query)
        else:
            body = await self.single_flight.run(("read", key, version), query)
        return Response(body, media_type="application/json")

    async def facts(self, key: Any, fn: Callable[..., T], *args: Any) -> T:
        """``await self.run(fn, *args)``, reused while the database's change version is the one
        it was read at (exact, as the read cache is; every call queries without a read cache).
        For the small facts a file route needs per request (a product's path and hash): a
        gallery asks for 150 previews at once, and a thread hop each costs more than the file."""
        cache = self.cache
        version = cache.version() if cache is not None else None
        if version is not None:
            hit = self._facts.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]
        value = await self.run(fn, *args)
        if version is not None:
            if len(self._facts) >= FACTS_MAX:
                self._facts.clear()
            self._facts[key] = (version, value)
        return value

    async def fresh(self, key: Any, call: Callable[[], Awaitable[T]], max_age: float) -> T:
        """``await call()``, reused for ``max_age`` seconds (from when the call began); past
        half that age it is called again in the background while the last value answers."""
        entry = self._values.get(key)

        async def store() -> T:
            began = time.monotonic()
            value = await call()
            self._values[key] = (began, value)
            return value

        if entry is not None:
            age = time.monotonic() - entry[0]
            if age > max_age / 2:
                self.in_background(key, store)
            if age <= max_age:
                return entry[1]
        return await self.single_flight.run(key, store)

    def in_background(self, key: Any, call: Callable[[], Awaitable[Any]]) -> None:
        """Run ``call`` as a task (one per ``key`` at a time); its errors are logged."""
        if key in self.single_flight:
            return

        async def quietly() -> None:
            try:
                await self.single_flight.run(key, call)
            except Exception as exc:  # noqa: BLE001 - the next request meets it again
                log.debug("background refresh %r failed: %s", key, exc)

        task = asyncio.get_running_loop().create_task(quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def get_database(request: Request) -> Database:
    """The app's :class:`Database` (made in the lifespan)."""
    return request.app.state.database


DbDep = Annotated[Database, Depends(get_database)]


async def get_runner(request: Request) -> Any | None:
    """The app's JobRunner, or None when the app runs without one (jobs then stay queued)."""
    return request.app.state.runner


RunnerDep = Annotated[Any | None, Depends(get_runner)]


class LoadedModel:
    """The model loaded in the lifespan: the module, its device and the checkpoint's meta."""

    def __init__(self, model: Any, device: Any, meta: dict[str, Any]):
        self.model, self.device, self.meta = model, device, meta


async def get_model(request: Request) -> LoadedModel | None:
    """The lifespan's model, or None when no checkpoint was configured."""
    return request.app.state.model


ModelDep = Annotated[LoadedModel | None, Depends(get_model)]


def _verify_and_record(session: Session, secret: str | None) -> ApiToken:
    token = auth.verify_secret(session, secret)
    if session.dirty:  # last_used_at
        session.commit()
    return token


async def current_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    """The caller's active token (401 otherwise): from the token cache, else the database.

    The token comes from ``Authorization: Bearer``, else from the console's session cookie; a
    state-changing request made with the cookie must pass the CSRF check
    (:func:`api.console.session.check_csrf`, 403 otherwise)."""
    secret = credentials.credentials if credentials else None
    if not secret:
        secret = console_session.cookie_secret(request)
        if secret:
            console_session.check_csrf(request, secret)
    secret = auth.require_secret(secret)
    cache: auth.TokenCache = request.app.state.token_cache
    key = auth.hash_secret(secret)
    db: Database = request.app.state.database

    async def verify() -> ApiToken:
        checked = time.monotonic()
        try:
            row = await db.run(_verify_and_record, secret)
        except auth.AuthenticationError:
            cache.drop(key)
            raise
        cache.put_verified_at(key, row, checked)
        return row

    hit = cache.get(key)
    if hit is None:
        token = await db.single_flight.run(("token", key), verify)
    else:
        token, age = hit
        if age > cache.ttl_s / 2:
            db.in_background(("token", key), verify)
    request.state.caller = f"token {token.id} {token.name!r} ({Role(token.role).value})"
    return token


def require_role(role: Role):
    """A dependency that yields the caller's token when its role includes ``role`` (403 if not)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiToken:
        token = await current_token(request, credentials)
        auth.check_role(token, role)
        return token

    dependency.__name__ = f"require_{role.value}"
    return dependency


ViewerToken = Annotated[ApiToken, Depends(require_role(Role.VIEWER))]
OperatorToken = Annotated[ApiToken, Depends(require_role(Role.OPERATOR))]
AdminToken = Annotated[ApiToken, Depends(require_role(Role.ADMIN))]


"""Largest id an INTEGER column holds (PostgreSQL would fail on a larger one, not answer 404)."""

IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="A database id.")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_DB_ID)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]


def get_scene(session: Session, name: str) -> Scene:
    """The scene called ``name``; 404 otherwise (the scenes and artefacts routes look it up)."""
    scene = session.scalar(select(Scene).where(Scene.name == name))
    if scene is None:
        raise HTTPException(404, f"no scene named {name!r}")
    return scene
