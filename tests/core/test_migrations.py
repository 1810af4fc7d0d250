"""Migrations: every revision up and down, models == migrations, and the ``reloblur db`` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from typer.testing import CliRunner

from api.cli import app
from core import migrate
from core.db import make_engine
from core.models import Base
from core.settings import get_settings

MODEL_TABLES = {
    table.name: {c.name for c in table.columns} for table in Base.metadata.sorted_tables
}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> dict[str, set[str]]:
    """Application tables (not ``alembic_version``) and their column names."""
    inspector = inspect(engine)
    return {
        name: {column["name"] for column in inspector.get_columns(name)}
        for name in inspector.get_table_names()
        if name != "alembic_version"
    }


def schema_snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """Everything reflection sees of the application tables, in comparable form."""
    inspector = inspect(engine)
    snapshot: dict[str, dict[str, Any]] = {}
    for name in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        snapshot[name] = {
            "columns": [
                (c["name"], c["type"].compile(dialect=engine.dialect), c["nullable"])
                for c in inspector.get_columns(name)
            ],
            "primary_key": inspector.get_pk_constraint(name),
            "foreign_keys": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    fk["options"].get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            "uniques": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(name)
            ),
            "checks": sorted(
                (c["name"], " ".join(c["sqltext"].split()))
                for c in inspector.get_check_constraints(name)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
            ),
        }
    return snapshot


def revisions_base_to_head() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def test_revision_history_is_linear_and_starts_at_0001() -> None:
    revisions = revisions_base_to_head()
    assert revisions[0] == "0001"
    assert revisions[-1] == migrate.head()
    assert len(set(revisions)) == len(revisions)


def test_every_revision_up_and_down_and_up_again(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the migrations are found from any working directory
    revisions = revisions_base_to_head()
    assert migrate.current(db_url) == ()

    for revision in revisions:
        migrate.upgrade(db_url, revision)
        assert migrate.current(db_url) == (revision,)
    assert tables(engine) == MODEL_TABLES

    for below in [*reversed(revisions[:-1]), None]:
        migrate.downgrade(db_url)  # one step
        assert migrate.current(db_url) == ((below,) if below else ())
    assert tables(engine) == {}
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    migrate.upgrade(db_url)
    assert migrate.current(db_url) == (migrate.head(),)
    assert tables(engine) == MODEL_TABLES


def test_autogenerate_finds_no_difference_between_models_and_head(
    db_url: str, engine: Engine
) -> None:
    migrate.upgrade(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrated_schema_equals_the_models_schema(db_url: str, engine: Engine) -> None:
    """Also what autogenerate does not compare: CHECK constraints, ON DELETE, constraint names."""
    migrate.upgrade(db_url)
    migrated = schema_snapshot(engine)
    migrate.downgrade(db_url, "base")

    Base.metadata.create_all(engine)
    try:
        from_models = schema_snapshot(engine)
    finally:
        Base.metadata.drop_all(engine)

    assert migrated == from_models
    checks = {name for table in migrated.values() for name, _ in table["checks"]}
    assert {
        "ck_rigs_cfa_pattern",
        "ck_cameras_camera_role",
        "ck_captures_capture_kind",
        "ck_captures_capture_status",
        "ck_captures_trigger_index_non_negative",
        "ck_frames_camera_role",
        "ck_frames_exposure_s_positive",
        "ck_frames_white_above_black",
    } <= checks
    assert ("fk_frames_capture_id_captures", ("capture_id",), "captures", ("id",), "CASCADE") in (
        migrated["frames"]["foreign_keys"]
    )


def test_alembic_config_needs_no_ini_file() -> None:
    config = migrate.alembic_config("postgresql+psycopg://u:p%40ss@h/db?options=-csearch_path%3Dx")
    assert config.config_file_name is None
    assert Path(config.get_main_option("script_location") or "") == migrate.script_location()
    assert (migrate.script_location() / "env.py").is_file()
    # '%' survives ConfigParser interpolation.
    assert config.get_main_option("sqlalchemy.url") == (
        "postgresql+psycopg://u:p%40ss@h/db?options=-csearch_path%3Dx"
    )


@pytest.fixture
def cli_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing at a fresh data directory with the default (SQLite) database."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("RELOBLUR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", "")
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def test_cli_upgrade_current_downgrade(cli_data_dir: Path) -> None:
    runner = CliRunner()
    db_file = (cli_data_dir / "reloblur.db").resolve()
    url = f"sqlite:///{db_file}"
    head = migrate.head()
    assert head is not None

    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert db_file.is_file()
    assert migrate.current(url) == (head,)
    engine = make_engine(url)
    try:
        assert tables(engine) == MODEL_TABLES
        assert str(db_file) in result.output and f"-> {head}" in result.output

        result = runner.invoke(app, ["db", "current"])
        assert result.exit_code == 0, result.output
        assert f"{head} (at head)" in result.output

        result = runner.invoke(app, ["db", "downgrade", "base"])
        assert result.exit_code == 0, result.output
        assert tables(engine) == {}
        assert migrate.current(url) == ()

        result = runner.invoke(app, ["db", "current"])
        assert result.exit_code == 0, result.output
        assert "base (empty)" in result.output and f"head is {head}" in result.output

        # Nothing left to undo: a clear error, not a traceback.
        result = runner.invoke(app, ["db", "downgrade"])
        assert result.exit_code == 1
        assert "error: downgrade to '-1' failed" in result.output
    finally:
        engine.dispose()


def test_cli_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1: nothing listens, so the command fails fast after printing the URL.
    monkeypatch.setenv("RELOBLUR_DATABASE_URL", "postgresql+psycopg://lab:s3cret@127.0.0.1:1/x")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "current"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "lab:***@127.0.0.1:1/x" in result.output
    assert "s3cret" not in result.output


@pytest.mark.postgres
def test_every_table_notifies_the_read_cache_on_postgresql(postgres_url: str) -> None:
    """Each application table has the statement trigger of migration 0005 (a table added later
    without it would let the API's read cache serve answers its changes made stale)."""
    from sqlalchemy import text

    from api.http.readcache import CHANNEL

    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as c:
            triggered = set(c.execute(text(
                "SELECT event_object_table FROM information_schema.triggers "
                "WHERE trigger_schema = current_schema() AND trigger_name LIKE '%_notify_change'"
            )).scalars())
            source = c.execute(text(
                "SELECT prosrc FROM pg_proc WHERE proname = 'reloblur_notify_change'"
            )).scalar()
        assert triggered == set(MODEL_TABLES)
        assert CHANNEL in source
    finally:
        engine.dispose()
