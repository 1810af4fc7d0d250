"""``reloblur db ...``: schema migrations of the configured database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from alembic.util import CommandError
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from core import migrate
from core.settings import get_settings

app = typer.Typer()

db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def _revisions(revs: tuple[str, ...]) -> str:
    return ", ".join(revs) if revs else "base (empty)"


def _migrate(action: str, step: Callable[[str, str], None], revision: str) -> None:
    """Run ``step(url, revision)`` on the configured database and report the revisions."""
    url = get_settings().resolved_database_url
    try:
        before = migrate.current(url)
        step(url, revision)
        after = migrate.current(url)
    except (CommandError, SQLAlchemyError) as exc:
        typer.echo(f"error: {action} to {revision!r} failed on {masked_url(url)}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{action}d {masked_url(url)}: {_revisions(before)} -> {_revisions(after)}")


@db_app.command("upgrade")
def upgrade_cmd(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    _migrate("upgrade", migrate.upgrade, revision)


@db_app.command("downgrade")
def downgrade_cmd(
    revision: Annotated[
        str, typer.Argument(help="Target revision; 'base' empties the schema.")
    ] = "-1",
) -> None:
    """Migrate the database down to REVISION (default: one step, -1)."""
    _migrate("downgrade", migrate.downgrade, revision)


@db_app.command("current")
def current_cmd() -> None:
    """Show the revision the database is at, and the newest one available."""
    url = get_settings().resolved_database_url
    try:
        revs = migrate.current(url)
    except SQLAlchemyError as exc:
        typer.echo(f"error: cannot read the revision of {masked_url(url)}: {exc}", err=True)
        raise typer.Exit(1) from exc
    head = migrate.head()
    state = "at head" if revs == ((head,) if head else ()) else f"head is {head}"
    typer.echo(f"{masked_url(url)}: {_revisions(revs)} ({state})")
