"""The SQL the PostgreSQL sink runs.

Identifiers, the positions table, upserts from staging tables, table DDL, and the
classification of the errors a row's data causes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

#: The sink's modes (``mode:``; see :mod:`cdcflow.io.postgres`).
Mode = Literal["upsert", "append", "timescaledb"]

#: Metadata columns of append / timescaledb tables, with their types.
HISTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_cdc_op", "text NOT NULL"),
    ("_cdc_stream", "text NOT NULL"),
    ("_cdc_partition", "text NOT NULL"),
    ("_cdc_offset", "bigint NOT NULL"),
    ("_cdc_source_ts", "timestamptz"),
)

HISTORY_NAMES = tuple(name for name, _ in HISTORY_COLUMNS)


def quote(identifier: str) -> str:
    """Quote an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``."""
    return f"{quote(schema)}.{quote(table)}"


#: The type of ``cdcflow_offsets."offset"``: exact integers of any size up to 1000 digits
#: (Kinesis sequence numbers have up to 129), compared numerically by the server.
OFFSET_TYPE = "numeric(1000,0)"


def offsets_ddl(schema: str) -> str:
    """The DDL of the positions table in ``schema``."""
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(schema, 'cdcflow_offsets')} ("
        "pipeline text NOT NULL, sink text NOT NULL, stream text NOT NULL, "
        f'partition text NOT NULL, "offset" {OFFSET_TYPE} NOT NULL, '
        "updated_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (pipeline, sink, stream, partition))"
    )


def offset_type_sql() -> str:
    """The query of ``"offset"``'s type in a positions table (param: the table's name)."""
    return (
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = 'offset' AND NOT attisdropped"
    )


def migrate_offsets_sql(table: str) -> str:
    """Widen the ``bigint`` offsets of an earlier version's positions table, in place.

    Every stored value converts exactly; the table is rewritten under an exclusive lock (it
    holds one row per partition).
    """
    return f'ALTER TABLE {table} ALTER COLUMN "offset" TYPE {OFFSET_TYPE}'


def upsert_sql(target: str, stage: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT ... SELECT`` from a staging table, updating the non-key ``columns`` on conflict."""
    column_sql = ", ".join(quote(c) for c in columns)
    updates = [c for c in columns if c not in key]
    conflict = ", ".join(quote(c) for c in key)
    if updates:
        action = "DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
    else:
        action = "DO NOTHING"
    return (
        f"INSERT INTO {target} ({column_sql}) SELECT {column_sql} FROM {stage} "
        f"ON CONFLICT ({conflict}) {action}"
    )


def delete_sql(target: str, stage: str, key: Sequence[str]) -> str:
    """``DELETE`` the rows whose keys are in a staging table."""
    match = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in key)
    return f"DELETE FROM {target} AS t USING {stage} AS s WHERE {match}"


def create_table_sql(
    target: str, columns: Sequence[tuple[str, str]], key: Sequence[str] | None
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the given ``(name, type)`` columns and primary key."""
    parts = [f"{quote(name)} {sql_type}" for name, sql_type in columns]
    if key:
        parts.append("PRIMARY KEY (" + ", ".join(quote(c) for c in key) + ")")
    return f"CREATE TABLE IF NOT EXISTS {target} (" + ", ".join(parts) + ")"


def hypertable_sql() -> str:
    """The call that makes a history table a TimescaleDB hypertable (params: table, column)."""
    return "SELECT create_hypertable(%s::regclass, %s::name, if_not_exists => TRUE)"


def text_param(value: Any) -> Any:
    """A per-row statement parameter as text: the server parses it as ``COPY`` would."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def is_row_error(exc: BaseException) -> bool:
    """True for errors caused by a row's data (SQLSTATE classes 22, 23; datatype mismatch).

    Such rows go to the dead letters instead of being retried.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    if not isinstance(sqlstate, str):
        return False
    return sqlstate[:2] in ("22", "23") or sqlstate in ("42804", "2200N", "54000")

