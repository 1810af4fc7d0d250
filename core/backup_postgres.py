"""PostgreSQL in a backup: the logical dump through SQLAlchemy and its load on restore.

Dump: every table of ours read in one ``REPEATABLE READ, READ ONLY`` transaction, one JSON
object per row in primary-key order (``db/postgresql/<table>.jsonl``); timestamps as ISO 8601
with their offset, binary as base64, numerics as strings, a JSON column as its JSON *text*.
Load: the schema made by the migrations up to the archive's revision, rows inserted in
dependency order (a self-referencing table's parents first) in batches of ``_INSERT_BATCH``,
serial sequences reset to their column's maximum. :mod:`core.backup` says why not ``pg_dump``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    Uuid,
    bindparam,
    cast,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from core import migrate
from core.backup_database import _our_tables, _single_revision, _Snapshot
from core.backup_format import POSTGRES_PREFIX, BackupError
from core.db import make_engine

_INSERT_BATCH = 500
"""Rows sent in one ``INSERT`` on restore."""


def _encoder(table: str, column: Any) -> Callable[[Any], Any] | None:
    """How a value of ``column`` becomes JSON (``None``: as it is)."""
    t = column.type
    if isinstance(t, JSON):
        return None  # selected as its JSON text
    if isinstance(t, DateTime | Date | Time):
        return lambda v: None if v is None else v.isoformat()
    if isinstance(t, LargeBinary):
        return lambda v: None if v is None else base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(t, Float):
        return None
    if isinstance(t, Numeric):
        return lambda v: None if v is None else str(v)
    if isinstance(t, Uuid):
        return lambda v: None if v is None else str(v)
    if isinstance(t, Integer | String | Boolean):  # Text and enums (VARCHAR + CHECK) included
        return None
    raise BackupError(f"column {table}.{column.name} has type {t!r}, which the PostgreSQL "
                      "dump does not know how to write")


def _decoder(column: Any) -> Callable[[Any], Any] | None:
    """How a JSON value of the dump becomes a bind value of ``column`` (``None``: as it is)."""
    t = column.type
    if isinstance(t, DateTime):
        return lambda v: None if v is None else datetime.fromisoformat(v)
    if isinstance(t, Date):
        return lambda v: None if v is None else date.fromisoformat(v)
    if isinstance(t, Time):
        return lambda v: None if v is None else time.fromisoformat(v)
    if isinstance(t, LargeBinary):
        return lambda v: None if v is None else base64.b64decode(v)
    if isinstance(t, Numeric) and not isinstance(t, Float):
        return lambda v: None if v is None else Decimal(v)
    return None


def _reflect(connection: Connection, names: Iterable[str]) -> list[Table]:
    present = set(inspect(connection).get_table_names())
    wanted = [n for n in names if n in present]
    metadata = MetaData()
    if wanted:
        metadata.reflect(connection, only=wanted)
    return [t for t in metadata.sorted_tables if t.name in wanted]


def _snapshot_postgres(url: str, workdir: Path) -> _Snapshot:
    """Every table of ours, read in one REPEATABLE READ, READ ONLY transaction, as JSON lines."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    members, tables, referenced = [], [], []
    try:
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            revision = _single_revision(
                MigrationContext.configure(connection).get_current_heads())
            for table in _reflect(connection, _our_tables()):
                columns = list(table.columns)
                encoders = [_encoder(table.name, c) for c in columns]
                select_columns = [cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c
                                  for c in columns]
                refs = "path" in table.c and "sha256" in table.c
                order = list(table.primary_key.columns) or columns
                stmt = select(*select_columns).order_by(*order)
                path = workdir / f"{table.name}.jsonl"
                n = 0
                with open(path, "w", encoding="utf-8", newline="\n") as out:
                    result = connection.execute(stmt.execution_options(yield_per=1000))
                    for row in result:
                        values = {c.name: (enc(v) if enc else v)
                                  for c, enc, v in zip(columns, encoders, row, strict=True)}
                        out.write(json.dumps(values, ensure_ascii=False, separators=(",", ":")))
                        out.write("\n")
                        if refs:
                            referenced.append((table.name, values["path"], values["sha256"]))
                        n += 1
                    out.flush()
                    os.fsync(out.fileno())
                members.append((f"{POSTGRES_PREFIX}{table.name}.jsonl", path))
                tables.append({"name": table.name, "rows": n, "columns": [c.name for c in columns]})
    finally:
        engine.dispose()
    return _Snapshot("postgresql", revision, members, tables, referenced)


def _postgres_state(url: str) -> tuple[list[str], int, str | None]:
    """Our tables present in the target schema, their rows in all, its revision."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            ours = [n for n in (*_our_tables(), "alembic_version") if n in present]
            rows = 0
            for name in ours:
                if name != "alembic_version":
                    table = Table(name, MetaData())
                    rows += connection.execute(select(func.count()).select_from(table)).scalar_one()
            revision = None
            if "alembic_version" in present:
                revision = _single_revision(MigrationContext.configure(connection).get_current_heads())
            return ours, rows, revision
    finally:
        engine.dispose()


def _load_postgres(url: str, staging: Path, manifest: dict[str, Any], create: bool,
                   publish: Callable[[], None], undo: list[Callable[[], None]]) -> None:
    """Create the schema (migrations to the archive's revision), insert every table's rows,
    reset the sequences, place the files, commit (the caller then migrates to head)."""
    revision = manifest["database"]["revision"]
    if create and revision is not None:
        undo.append(lambda: _drop_created_schema(url))
        migrate.upgrade(url, revision)
    dumped = {t["name"]: t for t in manifest["database"]["tables"]}
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            tables = _reflect(connection, dumped)
            missing = set(dumped) - {t.name for t in tables}
            if missing:
                raise BackupError(f"the target schema at revision {revision} lacks the tables "
                                  f"{sorted(missing)} of the archive")
            for table in tables:
                _insert_table(connection, table, dumped[table.name],
                              staging / f"{POSTGRES_PREFIX}{table.name}.jsonl")
            for table in tables:
                _reset_sequences(connection, table)
            publish()  # the files are in place before the rows that name them are committed
    finally:
        engine.dispose()


def _drop_created_schema(url: str) -> None:
    """Undo the migrations a failed restore ran on a database that had none of our tables."""
    migrate.downgrade(url, "base")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if "alembic_version" in inspect(connection).get_table_names():
                left = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
                if left == 0:
                    connection.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()


def _insert_table(connection: Connection, table: Table, dumped: dict[str, Any], path: Path) -> None:
    columns = {c.name: c for c in table.columns}
    if set(dumped["columns"]) != set(columns):
        raise BackupError(f"table {table.name}: the archive has columns {sorted(dumped['columns'])}, "
                          f"the target schema {sorted(columns)}")
    decoders = {name: _decoder(c) for name, c in columns.items()}
    values = {
        name: cast(bindparam(f"p_{name}", type_=Text), c.type) if isinstance(c.type, JSON)
        else bindparam(f"p_{name}", type_=c.type)
        for name, c in columns.items()
    }
    stmt = table.insert().values(values)
    self_refs = [(fk.parent.name, fk.column.name) for fk in table.foreign_keys
                 if fk.column.table is table]
    inserted: dict[str, set[Any]] = {ref: set() for _, ref in self_refs}
    batch: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    count = 0

    def ready(row: dict[str, Any]) -> bool:
        return all(row[f"p_{col}"] is None or row[f"p_{col}"] in inserted[ref]
                   for col, ref in self_refs)

    def take(row: dict[str, Any]) -> None:
        nonlocal count
        batch.append(row)
        for _, ref in self_refs:
            inserted[ref].add(row[f"p_{ref}"])
        count += 1
        if len(batch) >= _INSERT_BATCH:
            flush()

    def flush() -> None:
        if batch:
            connection.execute(stmt, batch)
            batch.clear()

    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BackupError(f"{path.name} line {line_no}: not JSON ({exc})") from exc
            row = {f"p_{k}": (decoders[k](v) if decoders[k] else v) for k, v in obj.items()}
            if ready(row):
                take(row)
            else:
                pending.append(row)
    while pending:  # rows whose parent (same table) came later in the dump
        still = [r for r in pending if not ready(r)]
        if len(still) == len(pending):
            raise BackupError(f"table {table.name}: {len(still)} rows reference rows that are "
                              "not in the archive")
        for r in pending:
            if ready(r):
                take(r)
        pending = still
    flush()
    if count != dumped["rows"]:
        raise BackupError(f"table {table.name}: the archive holds {count} rows, its manifest "
                          f"says {dumped['rows']}")


def _reset_sequences(connection: Connection, table: Table) -> None:
    quote = connection.dialect.identifier_preparer.quote
    for column in table.primary_key.columns:
        if not isinstance(column.type, Integer):
            continue
        sequence = connection.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                      {"t": quote(table.name), "c": column.name}).scalar()
        if sequence:
            qt, qc = quote(table.name), quote(column.name)
            connection.execute(text(
                f"SELECT setval(:s, COALESCE((SELECT MAX({qc}) FROM {qt}), 1), "
                f"(SELECT MAX({qc}) FROM {qt}) IS NOT NULL)"), {"s": sequence})
