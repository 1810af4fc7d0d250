"""Security headers on every answer of the service (pure ASGI middleware).

- ``Content-Security-Policy``: scripts, styles, images and connections from this origin only
  (images also ``data:`` and ``blob:`` for previews the page makes); no inline script, no
  plug-ins, no framing, forms post only here. The interactive API docs (``/api/v1/docs``),
  which load Swagger UI's inline script, are the one exception.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin``,
  ``Cross-Origin-Opener-Policy: same-origin``.
"""

from __future__ import annotations

from typing import Any

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Adds the module's headers to every HTTP answer (``docs_path`` gets no CSP)."""

    def __init__(self, app: Any, docs_path: str):
        self.app, self.docs_path = app, docs_path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(HEADERS)
        if not scope["path"].startswith(self.docs_path):
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)
