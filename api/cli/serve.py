"""``reloblur serve`` and ``reloblur token create | list | revoke``: the API service's commands."""

from __future__ import annotations

import typer

from api.cli.common import engine_at_head, fail

app = typer.Typer()

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@app.command()
def serve(
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default: RELOBLUR_API_HOST)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Port (default: RELOBLUR_API_PORT)."
    ),
    workers_dask: int | None = typer.Option(
        None,
        "--workers-dask",
        min=1,
        help="Dask LocalCluster workers (default: RELOBLUR_DASK_WORKERS).",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="HTTP worker processes (default: RELOBLUR_API_WORKERS)."
    ),
    access_log: bool | None = typer.Option(
        None,
        "--access-log/--no-access-log",
        help="Log one line per request, reads included (uvicorn's; default: "
        "RELOBLUR_ACCESS_LOG, off). Requests that may write are always logged.",
    ),
) -> None:
    """Serve the HTTP API (OpenAPI docs at /api/v1/docs) with its job runner."""
    from api.http.server import ServeError
    from api.http.server import serve as run_server
    from core.settings import get_settings

    engine_at_head().dispose()
    settings = get_settings()
    if workers_dask is not None:
        settings = settings.model_copy(update={"dask_workers": workers_dask})
    try:
        run_server(
            settings,
            host=host or settings.api_host,
            port=settings.api_port if port is None else port,
            workers=workers or settings.api_workers,
            access_log=settings.access_log if access_log is None else access_log,
        )
    except (ServeError, OSError) as exc:
        raise fail(f"cannot serve: {exc}") from None


@token_app.command("create")
def token_create(
    name: str = typer.Option(..., "--name", help="Who or what the token is for."),
    role: str = typer.Option("viewer", "--role", help="viewer, operator or admin."),
) -> None:
    """Create a token and print its secret (once: only its hash is stored)."""
    from api.http.auth import TokenError, create_token
    from core.db import session_scope

    engine = engine_at_head()
    try:
        with session_scope(engine) as session:
            row, secret = create_token(session, name, role)
            token_id, token_role = row.id, row.role
    except TokenError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    typer.echo(
        f"token {token_id} ({name}, {token_role}); keep this secret, it is not shown again:",
        err=True,
    )
    typer.echo(secret)


@token_app.command("list")
def token_list() -> None:
    """List tokens: id, name, role, prefix, state."""
    from api.http.auth import is_active, list_tokens
    from core.db import session_scope

    engine = engine_at_head()
    try:
        with session_scope(engine) as session:
            for t in list_tokens(session):
                state = "revoked" if t.revoked_at else ("active" if is_active(t) else "expired")
                used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
                typer.echo(
                    f"{t.id:>4}  {t.name:<24} {t.role.value:<9} {t.prefix}…  {state:<8} "
                    f"last used {used}"
                )
    finally:
        engine.dispose()


@token_app.command("revoke")
def token_revoke(
    token_id: int = typer.Argument(..., help="The token's id (see `token list`)."),
) -> None:
    """Revoke a token: it authenticates nothing from now on."""
    from api.http.auth import TokenNotFoundError, revoke_token
    from core.db import session_scope

    engine = engine_at_head()
    try:
        with session_scope(engine) as session:
            revoke_token(session, token_id)
    except TokenNotFoundError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    typer.echo(f"token {token_id} revoked")
