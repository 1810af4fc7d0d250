"""Change notifications for the API's read cache (PostgreSQL only).

Every table notifies the channel ``reloblur_changes`` after each INSERT, UPDATE or DELETE
statement (one notification per statement; PostgreSQL folds identical notifications of one
transaction into one, delivered at commit). ``api.http.readcache.PostgresChangeWatch`` listens.
SQLite needs nothing: its ``PRAGMA data_version`` already tells.

A table added by a later migration must get the trigger too (``tests/core/test_migrations``
checks that every table has it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "reloblur_changes"
TABLES = (
    "rigs",
    "cameras",
    "scenes",
    "captures",
    "frames",
    "capture_runs",
    "calibrations",
    "products",
    "processing_runs",
    "api_tokens",
    "jobs",
)
FUNCTION = "reloblur_notify_change"


def trigger_name(table: str) -> str:
    return f"{table}_notify_change"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {trigger_name(table)} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger_name(table)} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
