"""API tokens: creation (the secret is shown once), verification by hash, revocation.

A secret is ``secrets.token_urlsafe(32)`` (32 random bytes); only its sha256 is stored. A
request presents it as ``Authorization: Bearer <secret>``. Verification hashes the presented
secret and looks the hash up (a unique index): no comparison of secrets ever happens, so the
time taken says nothing about how much of a guess was right.

Every endpoint needs at least a viewer token, except ``GET /api/v1/health`` and the OpenAPI
documents (``/api/v1/openapi.json``, ``/api/v1/docs``). Roles nest: viewer < operator < admin.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import UserError
from core.models import ApiToken, Role, utcnow

PREFIX_CHARS = 8
LAST_USED_RESOLUTION = timedelta(seconds=60)
"""``last_used_at`` is written at most this often per token (a read should not always write)."""

ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class TokenError(UserError, ValueError):
    """A token request that cannot be honoured (bad name, bad role)."""


class TokenNotFoundError(TokenError):
    """No token with that id."""

    http_status = 404


class AuthenticationError(Exception):
    """No token, or a token that is unknown, revoked or expired (HTTP 401)."""


class PermissionDeniedError(Exception):
    """A valid token whose role is below what the endpoint needs (HTTP 403)."""


def hash_secret(secret: str) -> str:
    """The sha256 hex digest of a token secret (what the database stores)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_role(role: str | Role) -> Role:
    """``role`` as a :class:`Role`, or TokenError listing the roles."""
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise TokenError(f"unknown role {role!r}; use one of {allowed}") from None


def create_token(
    session: Session, name: str, role: str | Role, *, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Add a token to ``session`` (the caller commits) → (row, secret). Show the secret once."""
    name = name.strip()
    if not name or len(name) > 64:
        raise TokenError("a token needs a name of 1 to 64 characters")
    secret = secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        role=parse_role(role),
        token_hash=hash_secret(secret),
        prefix=secret[:PREFIX_CHARS],
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, oldest first (revoked ones included)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Mark token ``token_id`` revoked (idempotent; the caller commits)."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise TokenNotFoundError(f"no API token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def is_active(row: ApiToken, now: datetime | None = None) -> bool:
    """Whether ``row`` authenticates: not revoked and not expired."""
    now = now or utcnow()
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


def require_secret(secret: str | None) -> str:
    """``secret`` when one was sent; AuthenticationError saying how to send one otherwise."""
    if not secret:
        raise AuthenticationError(
            "this endpoint needs an API token: send 'Authorization: Bearer <token>'"
        )
    return secret


def verify_secret(session: Session, secret: str | None) -> ApiToken:
    """The active token whose secret is ``secret``; AuthenticationError otherwise.

    Records ``last_used_at`` (at most once per ``LAST_USED_RESOLUTION``; the caller commits).
    """
    secret = require_secret(secret)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
    now = utcnow()
    if row is None:
        raise AuthenticationError("unknown API token")
    if row.revoked_at is not None:
        raise AuthenticationError("this API token has been revoked")
    if not is_active(row, now):
        raise AuthenticationError("this API token has expired")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row


class TokenCache:
    """Tokens verified in the last ``ttl_s`` seconds, by the sha256 of their secret.

    A hit skips the database; expiry is still checked on every use (the row's ``expires_at``).
    Past half of ``ttl_s`` the API verifies the token again in the background while the cached
    row still answers, so requests do not wait for the database in steady use.
    Only active tokens are cached, so an unknown or revoked secret always asks the database.
    ``forget(token_id)`` drops a token at once (revocation through this process); a revocation
    made elsewhere (the CLI, another API process) takes effect within ``ttl_s``. At most
    ``max_entries`` tokens are kept (the oldest go first). Safe to share between threads.
    """

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._rows: dict[str, tuple[float, ApiToken]] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> tuple[ApiToken, float] | None:
        """(the cached active token for ``token_hash``, seconds since it was verified), or None
        (absent, older than ``ttl_s`` or expired)."""
        entry = self._rows.get(token_hash)
        if entry is None:
            return None
        checked, row = entry
        age = time.monotonic() - checked
        if age > self.ttl_s or not is_active(row):
            with self._lock:
                self._rows.pop(token_hash, None)
            return None
        return row, age

    def put_verified_at(self, token_hash: str, row: ApiToken, checked: float) -> None:
        """Remember ``row`` as verified at ``checked`` (``time.monotonic()`` when the database
        was asked)."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._rows) >= self.max_entries:
                del self._rows[next(iter(self._rows))]
            self._rows[token_hash] = (checked, row)

    def drop(self, token_hash: str) -> None:
        """Forget the token with this hash (its check failed)."""
        with self._lock:
            self._rows.pop(token_hash, None)

    def forget(self, token_id: int) -> None:
        """Drop token ``token_id`` (after revoking it)."""
        with self._lock:
            for key in [k for k, (_, row) in self._rows.items() if row.id == token_id]:
                del self._rows[key]


def check_role(token: ApiToken, needed: Role) -> None:
    """PermissionDeniedError unless ``token``'s role includes ``needed``."""
    if ROLE_RANK[Role(token.role)] < ROLE_RANK[needed]:
        raise PermissionDeniedError(
            f"this needs the {needed.value} role; token {token.name!r} is a "
            f"{Role(token.role).value}"
        )
