"""What every command module shares: the error exit and the database check."""

from __future__ import annotations

import typer


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


def request_from_options(model, names: dict[str, str] | None = None, **values):
    """A package's request model (``acquisition.requests``, ``postprocess.requests``,
    ``deblur.requests``) built from a command's options; a bad value exits with
    ``--option: problem`` (``names`` maps a field to its option where the spelling differs
    from ``--field-name``)."""
    from pydantic import ValidationError

    from core.config import validation_problems

    try:
        return model(**values)
    except ValidationError as exc:
        field, _, message = validation_problems(exc)[0].partition(": ")
        top = field.split(".")[0]
        raise fail(f"{(names or {}).get(top, '--' + top.replace('_', '-'))}: {message}") from None
