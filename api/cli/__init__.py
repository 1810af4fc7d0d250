"""The ``reloblur`` command line: the root Typer, and every topic's commands added to it.

Commands are thin: they parse, call the packages, and print. Topics: :mod:`api.cli.acquisition`
(rig, plan, capture), :mod:`~api.cli.backup`, :mod:`~api.cli.db`, :mod:`~api.cli.deblur` (train,
deblur, evaluate, export-model), :mod:`~api.cli.demo`, :mod:`~api.cli.imports`,
:mod:`~api.cli.postprocess`, :mod:`~api.cli.serve` (serve, token), :mod:`~api.cli.simulate`.
"""

from __future__ import annotations

import typer

from api.cli import acquisition, backup, db, deblur, demo, imports, postprocess, serve, simulate
from api.cli.common import engine_at_head, fail

__all__ = ["app", "engine_at_head", "fail"]

app = typer.Typer(
    name="reloblur",
    help="ReLoBlur Lab: capture, process and deblur real-world local motion blur.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """ReLoBlur Lab command line."""


# Each topic's commands live in api/cli/<topic>.py on a Typer of their own; they are added here,
# explicitly, at the top level (no command group: `reloblur capture`, not `reloblur acquisition capture`).
for _topic in (acquisition, backup, db, deblur, demo, imports, postprocess, serve, simulate):
    app.add_typer(_topic.app)
