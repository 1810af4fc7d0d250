"""API tokens (admin): list, create (the secret is in the answer, once), revoke; ``/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.http import auth
from api.http.deps import AdminToken, DbDep, IdPath, SessionDep, ViewerToken
from api.http.schemas import TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["tokens"])


@router.get("/me", response_model=TokenOut, summary="The token making this request")
async def me(token: ViewerToken) -> TokenOut:
    return TokenOut.model_validate(token)


@router.get("/tokens", response_model=list[TokenOut], summary="List API tokens (admin)")
async def list_tokens(db: DbDep, _: AdminToken) -> list[TokenOut]:
    return await db.run(lambda session: [TokenOut.model_validate(t) for t in auth.list_tokens(session)])


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API token (admin); the secret is shown once",
)
def create_token(body: TokenCreate, session: SessionDep, _: AdminToken) -> TokenCreated:
    row, secret = auth.create_token(session, body.name, body.role, expires_at=body.expires_at)
    session.commit()
    return TokenCreated(**TokenOut.model_validate(row).model_dump(), secret=secret)


@router.delete("/tokens/{token_id:int}", response_model=TokenOut, summary="Revoke an API token (admin)")
def revoke_token(
    token_id: IdPath, session: SessionDep, request: Request, _: AdminToken
) -> TokenOut:
    """Takes effect at once in this process; in other API processes within
    ``settings.token_cache_s``."""
    row = auth.revoke_token(session, token_id)
    session.commit()
    request.app.state.token_cache.forget(token_id)
    return TokenOut.model_validate(row)
