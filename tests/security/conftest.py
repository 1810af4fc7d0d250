"""The security suite's fixtures: the API suite's live servers (``live``, ``shared_live``,
``start_server``: real uvicorn on loopback, SQLite and PostgreSQL, tokens per role, a seeded
data store), loaded from ``tests/api/conftest.py`` so both suites test the same server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_api_fixtures", Path(__file__).resolve().parents[1] / "api" / "conftest.py"
)
api_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = api_fixtures  # dataclasses look their module up while it loads
_spec.loader.exec_module(api_fixtures)

Live = api_fixtures.Live
live = api_fixtures.live
shared_live = api_fixtures.shared_live
start_server = api_fixtures.start_server
seed = api_fixtures.seed
add_tokens = api_fixtures.add_tokens
make_settings = api_fixtures.make_settings
start_live = api_fixtures.start_live
RIGS_DIR = api_fixtures.RIGS_DIR
