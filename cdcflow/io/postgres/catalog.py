"""What the PostgreSQL writer knows about its target tables, and how it creates and extends them.

:class:`CatalogWriter` is the base of the mode implementations (:mod:`.netchange`,
:mod:`.history`): it reads a table's columns and primary key from the catalog, creates a
missing table (or adds missing columns) for a batch's events, keeps session staging tables,
and ``COPY``s rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cdcflow.errors import RowRejectedError
from cdcflow.io.postgres.sql import (
    HISTORY_COLUMNS,
    HISTORY_NAMES,
    Mode,
    create_table_sql,
    hypertable_sql,
    qualified,
    quote,
)
from cdcflow.io.postgres.types import binary_copy_types, pg_type, pg_type_for_value
from cdcflow.io.sink_common import (
    NamespacedTableWriter,
    Target,
    TransactionalTableWriter,
    columns_of,
    covers,
    key_columns,
    no_key_reason,
)
from cdcflow.schemas.model import ChangeEvent

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("cdcflow.io.postgres")


class Table:
    """What the writer knows about one target table."""

    def __init__(self, schema: str, name: str, columns: dict[str, str], key: tuple[str, ...]):
        self.schema = schema
        self.name = name
        self.columns = columns  # name -> SQL type, in table order
        self.key = key
        self.sql_name = qualified(schema, name)
        self.schemas: set[str] = set()  # schema fingerprints whose columns all exist



class CatalogWriter(NamespacedTableWriter, TransactionalTableWriter):
    """The table catalog of the PostgreSQL writer (see the module docstring).

    Subclasses set ``mode`` and the caches in their constructor.
    """

    mode: Mode
    #: Target -> what the writer knows of the table (cleared when a transaction fails).
    _tables: dict[Target, Table]
    #: The session's staging tables (dropped with the connection).
    _stages: set[str]

    def _known(self, conn: psycopg.Connection[Any], target: Target) -> Table | None:
        table = self._tables.get(target)
        if table is not None:
            return table
        schema, name = target
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "COALESCE(array_position(i.indkey::int2[], a.attnum) "
            "- array_lower(i.indkey::int2[], 1) + 1, 0) "
            "FROM pg_attribute a "
            "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (qualified(schema, name),),
        ).fetchall()
        if not rows:
            return None
        columns = {str(r[0]): str(r[1]) for r in rows}
        key = tuple(str(r[0]) for r in sorted((r for r in rows if r[2]), key=lambda r: r[2]))
        table = Table(schema, name, columns, key)
        self._tables[target] = table
        return table

    def _ensure_table(
        self, conn: psycopg.Connection[Any], target: Target, events: list[ChangeEvent]
    ) -> Table:
        """Create the table, or add the columns it lacks, for the rows of ``events``."""
        table = self._known(conn, target)
        if table is not None and covers(table, events):
            return table
        wanted = columns_of(events, pg_type, pg_type_for_value, all_keys=False)
        if table is not None and all(c in table.columns for c in wanted):
            return table
        schema, name = target
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{name}",))
        self._tables.pop(target, None)
        table = self._known(conn, target)
        history = self.mode != "upsert"
        if table is None:
            key: tuple[str, ...] | None = None
            if not history:
                key = key_columns(events)
                if not key:
                    raise RowRejectedError(no_key_reason(events[0].table))
                for column in key:
                    wanted.setdefault(column, key_type(events, column))
            reserved = HISTORY_NAMES if history else ()
            columns = [(c, t) for c, t in wanted.items() if c not in reserved]
            if history:
                meta = list(HISTORY_COLUMNS)
                if self.mode == "timescaledb":
                    meta[-1] = ("_cdc_source_ts", "timestamptz NOT NULL")
                columns += meta
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            conn.execute(create_table_sql(qualified(schema, name), columns, key))
            if self.mode == "timescaledb":
                conn.execute(hypertable_sql(), (qualified(schema, name), "_cdc_source_ts"))
            log.info("sink %r: created table %s.%s", self.name, schema, name)
        else:
            for column, sql_type in wanted.items():
                if column not in table.columns and (not history or column not in HISTORY_NAMES):
                    conn.execute(
                        f"ALTER TABLE {table.sql_name} ADD COLUMN IF NOT EXISTS "
                        f"{quote(column)} {sql_type}"
                    )
                    log.info("sink %r: added column %s to %s.%s", self.name, column, schema, name)
        self._tables.pop(target, None)
        table = self._known(conn, target)
        assert table is not None
        return table

    def _stage(self, conn: psycopg.Connection[Any], table: Table, columns: Sequence[str]) -> str:
        """A session temporary table shaped like ``columns`` of ``table`` (emptied at commit)."""
        digest = hashlib.sha1(
            "\x00".join((table.schema, table.name, *columns)).encode(), usedforsecurity=False
        ).hexdigest()[:20]
        stage = f"_cdcflow_stage_{digest}"
        if stage not in self._stages:
            column_sql = ", ".join(quote(c) for c in columns)
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                f"SELECT {column_sql} FROM {table.sql_name} WITH NO DATA"
            )
            self._stages.add(stage)
        return stage

    @staticmethod
    def _copy(
        conn: psycopg.Connection[Any],
        target: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        sql_types: Sequence[str],
    ) -> None:
        """``COPY`` ``rows`` into ``columns`` of ``target`` (whose types are ``sql_types``).

        Binary when every column and value can be bound exactly (:func:`binary_copy_types`),
        else text (the server parses each value into the column's type).
        """
        column_sql = ", ".join(quote(c) for c in columns)
        binary = binary_copy_types(sql_types, rows)
        with conn.cursor() as cursor:
            if binary is None:
                statement = f"COPY {target} ({column_sql}) FROM STDIN"
            else:
                statement = f"COPY {target} ({column_sql}) FROM STDIN (FORMAT BINARY)"
            with cursor.copy(statement) as copy:
                if binary is not None:
                    copy.set_types(binary)
                write_row = copy.write_row
                for row in rows:
                    write_row(row)


def key_type(events: Iterable[ChangeEvent], column: str) -> str:
    """The type of a key column of a new table: of its first non-null key value, else text."""
    for event in events:
        if event.key and event.key.get(column) is not None:
            return pg_type_for_value(event.key[column])
    return "text"

