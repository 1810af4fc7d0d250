"""Typed dependencies: settings, a DB session, the job runner, the model, the caller's token.

Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in its
thread pool, one hand-over per dependency per request, which costs more than the work itself.
Those that touch the database stay plain functions and run in the pool.

Routes declare what they need with these aliases (``SessionDep``, ``SettingsDep``,
``ViewerToken``, ``OperatorToken``, ``AdminToken``...) and stay thin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api import auth
from core.models import ApiToken, Role
from core.settings import Settings

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


def current_token(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    """The caller's active token (401 otherwise)."""
    token = auth.verify_secret(session, credentials.credentials if credentials else None)
    if session.dirty:
        session.commit()
    return token


CurrentToken = Annotated[ApiToken, Depends(current_token)]


def require_role(role: Role):
    """A dependency that yields the caller's token when its role includes ``role`` (403 if not)."""

    async def dependency(token: CurrentToken) -> ApiToken:
        auth.check_role(token, role)
        return token

    dependency.__name__ = f"require_{role.value}"
    return dependency


ViewerToken = Annotated[ApiToken, Depends(require_role(Role.VIEWER))]
OperatorToken = Annotated[ApiToken, Depends(require_role(Role.OPERATOR))]
AdminToken = Annotated[ApiToken, Depends(require_role(Role.ADMIN))]


MAX_DB_ID = 2_147_483_647
"""Largest id an INTEGER column holds (PostgreSQL would fail on a larger one, not answer 404)."""

IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="A database id.")]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_DB_ID)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
