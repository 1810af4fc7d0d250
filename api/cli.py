"""The ``reloblur`` command line. Commands are thin: they parse, call the packages, and print."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="reloblur",
    help="ReLoBlur Lab: capture, process and deblur real-world local motion blur.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` in red on stderr; return the Exit to raise (code 2: bad input)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


def engine_at_head():
    """The configured database's engine, refusing a schema that is not at the newest migration."""
    from core import migrate
    from core.db import make_engine

    if migrate.current() != (migrate.head(),):
        raise fail("the database schema is not up to date: run `reloblur db upgrade` first")
    return make_engine()


@app.callback()
def main() -> None:
    """ReLoBlur Lab command line."""


def _register_subcommands() -> None:
    # Each package's commands live in api/cli_<topic>.py and register themselves here.
    from api import (  # noqa: F401
        cli_acquisition,
        cli_backup,
        cli_db,
        cli_deblur,
        cli_demo,
        cli_import,
        cli_postprocess,
        cli_serve,
        cli_simulate,
    )


_register_subcommands()
