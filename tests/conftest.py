"""Shared fixtures: ``postgres_url`` (an isolated schema on the test PostgreSQL server) and
``db_url`` (an empty SQLite file or PostgreSQL schema, for tests that run on both)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@cache
def _no_server_answers(url: str) -> str | None:
    """Why nothing listens at the host and port of ``url``, or ``None`` when something does."""
    sa_url = make_url(url)
    try:
        with socket.create_connection((sa_url.host or "localhost", sa_url.port or 5432), timeout=3):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections work in a fresh schema, dropped after the test.

    The server is ``RELOBLUR_TEST_POSTGRES_URL`` (default ``DEFAULT_TEST_POSTGRES_URL``); the
    schema is selected with ``options=-csearch_path=<schema>`` in the URL, so it reaches every
    engine built from it (Alembic's included). The test is skipped only when no server answers;
    a server that answers but refuses the connection fails the test.
    """
    url = os.environ.get("RELOBLUR_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    shown = make_url(url).render_as_string(hide_password=True)
    admin = create_engine(url, poolclass=NullPool)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        why = _no_server_answers(url)
        if why is not None:
            said = str(exc.orig).splitlines()[0]
            pytest.skip(f"no PostgreSQL server answers at {shown} ({why}); connecting said: {said}")
        raise
    try:
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as connection:
            connection.execute(text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'reloblur.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str):
    """An engine on ``db_url`` (SQLite and PostgreSQL), migrated to the newest revision."""
    from core import migrate
    from core.db import make_engine

    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
