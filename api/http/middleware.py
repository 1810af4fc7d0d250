"""The service's ASGI middleware: body limit (413 while streaming), control characters in the
path or query (422), the audit line and read-cache invalidation of requests that may write, and
answers from the read cache before routing. :func:`api.http.app.create_app` installs them."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi.responses import JSONResponse

from api.http import auth
from api.http.errors import PayloadTooLargeError
from core.text import has_control_characters, printable

audit = logging.getLogger("reloblur.audit")


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
    current (:mod:`api.http.readcache`). Everything else (a miss, no or unknown token, an answer
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
