"""The console's session cookie and its CSRF token.

The cookie ``reloblur_session`` holds the API token the operator signed in with: HttpOnly (page
scripts cannot read it), SameSite=Strict (other sites' requests do not carry it), ``Path=/``,
``Secure`` whenever the page was served over HTTPS or to ``localhost``. Nothing is kept on the
server, so every HTTP worker process accepts it and revoking the token ends the session at once.

The CSRF token is HMAC-SHA256 of a fixed label keyed by that secret: the server derives it
again for every request, a page learns it only from the HTML it was served (a meta tag), and
it reveals nothing about the secret. A state-changing request authenticated by the cookie
must send it as ``X-CSRF-Token`` (or the ``csrf_token`` field of a form) and, when the browser
says where it comes from (``Origin``, else ``Referer``), come from the service's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request, Response

COOKIE_NAME = "reloblur_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_MAX_AGE_S = 12 * 3600
"""How long the browser keeps the cookie (s); the token's own expiry and revocation still apply."""


class CsrfError(Exception):
    """A cookie-authenticated state-changing request without a valid CSRF token or from another
    origin (HTTP 403)."""


def csrf_token(secret: str) -> str:
    """The CSRF token of a session whose API token is ``secret`` (64 hex characters)."""
    return hmac.new(secret.encode("utf-8"), b"reloblur-console-csrf-v1", hashlib.sha256).hexdigest()


def cookie_secret(request: Request) -> str | None:
    """The API token held by the request's session cookie, or None."""
    value = request.cookies.get(COOKIE_NAME)
    return value.strip() if value and value.strip() else None


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request) -> bool:
    """Whether the request says it comes from this service's origin. A request that names no
    origin (no ``Origin``, no ``Referer``: not sent by a browser page) passes; CSRF is then
    decided by the token alone."""
    own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}".lower()
    claimed = request.headers.get("origin")
    if claimed is None or claimed == "null":
        referer = request.headers.get("referer")
        if claimed is None and referer is None:
            return True
        claimed = _origin_of(referer) if referer else None
    return claimed is not None and claimed.lower() == own


def check_csrf(request: Request, secret: str, sent: str | None = None) -> None:
    """CsrfError unless a state-changing request carries ``secret``'s CSRF token (``sent``, else
    the ``X-CSRF-Token`` header) and comes from this origin. Safe methods always pass."""
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request):
        raise CsrfError("cross-site request refused: it does not come from this service's pages")
    sent = sent if sent is not None else request.headers.get(CSRF_HEADER)
    if not sent or not hmac.compare_digest(sent, csrf_token(secret)):
        raise CsrfError("missing or wrong CSRF token: reload the page and try again")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.url.hostname == "localhost"


def set_session(response: Response, request: Request, secret: str) -> None:
    """Put ``secret`` in the session cookie of ``response``."""
    response.set_cookie(COOKIE_NAME, secret, max_age=SESSION_MAX_AGE_S, path="/", httponly=True,
                        samesite="strict", secure=_secure(request))


def clear_session(response: Response, request: Request) -> None:
    """Expire the session cookie."""
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=_secure(request))
