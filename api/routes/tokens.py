"""API tokens (admin): list, create (the secret is in the answer, once), revoke; ``/me``."""

from __future__ import annotations

from fastapi import APIRouter, status

from api import auth
from api.deps import AdminToken, IdPath, SessionDep, ViewerToken
from api.schemas import TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["tokens"])


@router.get("/me", response_model=TokenOut, summary="The token making this request")
def me(token: ViewerToken) -> TokenOut:
    return TokenOut.model_validate(token)


@router.get("/tokens", response_model=list[TokenOut], summary="List API tokens (admin)")
def list_tokens(session: SessionDep, _: AdminToken) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in auth.list_tokens(session)]


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


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token (admin)")
def revoke_token(token_id: IdPath, session: SessionDep, _: AdminToken) -> TokenOut:
    row = auth.revoke_token(session, token_id)
    session.commit()
    return TokenOut.model_validate(row)
