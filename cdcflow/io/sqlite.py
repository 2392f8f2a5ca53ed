"""SQLite: a transactional mirror sink (the embedded default).

Semantics (``mode`` is always a mirror):

* ``c``/``u``/``r`` upsert the row by primary key; ``d`` deletes it; ``t`` deletes every row of
  the table (``truncate: apply``, the default) or is ignored (``truncate: ignore``).
* Columns named in :attr:`ChangeEvent.unavailable` keep their stored value: they are left out
  of the update (and inserted as NULL for a row the sink has never seen).
* A table is created from the first event seen for it: columns from the event's schema when the
  message carried one, otherwise from its values; the primary key from the message key. A
  column that appears later is added with ``ALTER TABLE ... ADD COLUMN``.
* Each batch's rows and the batch's position are written in one transaction, in the
  ``cdcflow_offsets`` table (pipeline, sink, stream, partition). Events at or below the stored
  position are skipped, so replaying a batch changes nothing.
* Rows the database rejects, and events without a usable key, go to the dead letters.

Values are stored as SQLite-native types: integers, reals, text, blobs; ``Decimal``, dates and
times as their canonical text, ``bool`` as 0/1, lists and dicts as canonical JSON.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cdcflow.core.components import BuildContext
from cdcflow.core.source import PartitionKey
from cdcflow.errors import RowRejectedError, SinkError
from cdcflow.io.sink_common import (
    TransactionalTableWriter,
    key_columns,
    log,
    no_key_reason,
    row_count_line,
    stored_offset,
)
from cdcflow.io.table_sink import TableSinkConfig
from cdcflow.schemas.canonical import dumps
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch, Op, TableId

_INT64 = (-(2**63), 2**63 - 1)
#: Errors that mean "SQLite refuses this row" (the row becomes a dead letter).
_REJECTED = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, OverflowError)
#: The positions table. ``"offset"`` has no declared type (no affinity), so SQLite keeps each
#: value as given: offsets that fit 64 bits as INTEGER (as earlier versions stored them),
#: larger ones (Kinesis sequence numbers) as their exact decimal TEXT. (A column with INTEGER
#: or NUMERIC affinity would turn such text into a lossy REAL.) Offsets are compared in Python.
_OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS cdcflow_offsets (
    pipeline TEXT NOT NULL,
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    partition TEXT NOT NULL,
    "offset" NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, sink, stream, partition)
)
"""
_OFFSETS_COLUMNS = 'pipeline, sink, stream, partition, "offset", updated_at'

#: Connect/Avro base types and logical names to SQLite column types.
_TYPE_BY_LOGICAL = {
    "org.apache.kafka.connect.data.Decimal": "NUMERIC_TEXT",
    "io.debezium.data.VariableScaleDecimal": "NUMERIC_TEXT",
}
_TYPE_BY_BASE = {
    "int8": "INTEGER",
    "int16": "INTEGER",
    "int32": "INTEGER",
    "int64": "INTEGER",
    "boolean": "INTEGER",
    "float": "REAL",
    "float32": "REAL",
    "float64": "REAL",
    "double": "REAL",
    "bytes": "BLOB",
}


def quote(identifier: str) -> str:
    """Quote an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def sqlite_value(value: Any) -> Any:
    """Convert a decoded value into what SQLite stores (see the module docstring)."""
    if value is None or isinstance(value, (str, float, bytes)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return dumps(value).decode().strip('"')
    if isinstance(value, (dict, list, tuple)):
        return dumps(value).decode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cannot store a {type(value).__name__} value in SQLite")


def offsets_affinity(conn: sqlite3.Connection) -> str | None:
    """The declared type of ``cdcflow_offsets."offset"`` (None when there is no such table)."""
    for row in conn.execute("PRAGMA table_info(cdcflow_offsets)").fetchall():
        if row[1] == "offset":
            return str(row[2] or "")
    return None


def migrate_offsets(conn: sqlite3.Connection) -> bool:
    """Rebuild a positions table of an earlier version (``"offset" INTEGER``) in place.

    Its INTEGER affinity would store an offset beyond 64 bits as a lossy REAL, and SQLite
    cannot change a column's type: the table is renamed, re-created with
    :data:`_OFFSETS_DDL`, its rows copied (every value exact: they were 64-bit integers) and
    the old table dropped, in one ``BEGIN IMMEDIATE`` transaction (a concurrent writer waits;
    a crash leaves the old table). ``conn`` is in autocommit mode. True when it migrated.
    """
    if not offsets_affinity(conn):
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        if offsets_affinity(conn):  # another process may have migrated it meanwhile
            conn.execute("ALTER TABLE cdcflow_offsets RENAME TO cdcflow_offsets_v1")
            conn.execute(_OFFSETS_DDL)
            conn.execute(
                f"INSERT INTO cdcflow_offsets ({_OFFSETS_COLUMNS}) "
                f"SELECT {_OFFSETS_COLUMNS} FROM cdcflow_offsets_v1"
            )
            conn.execute("DROP TABLE cdcflow_offsets_v1")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def _column_type(event: ChangeEvent, column: str, value: Any) -> str:
    """The SQLite declared type for a new column."""
    if event.schema is not None:
        spec = event.schema.column(column)
        if spec is not None:
            if spec.logical in _TYPE_BY_LOGICAL:
                return "TEXT"
            if spec.logical is None and spec.type in _TYPE_BY_BASE:
                return _TYPE_BY_BASE[spec.type]
            if spec.logical is not None and spec.logical.startswith("io.debezium.time."):
                return "TEXT"
            if spec.type == "string":
                return "TEXT"
    if isinstance(value, bool) or isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, bytes):
        return "BLOB"
    return "TEXT"


class _Table:
    """What the writer knows about one target table."""

    def __init__(self, name: str, columns: list[str], key: tuple[str, ...]) -> None:
        self.name = name
        self.columns = columns
        self.column_set = set(columns)
        self.key = key


class SqliteWriter(TransactionalTableWriter):
    """Mirror change events into a SQLite database, exactly once (see the module docstring)."""

    def __init__(
        self,
        name: str,
        path: Path,
        pipeline: str,
        tables: str | Sequence[str] = "*",
        naming: Literal["table", "qualified"] = "table",
        table_map: dict[str, str] | None = None,
        truncate: Literal["apply", "ignore"] = "apply",
    ) -> None:
        super().__init__(name, pipeline, tables, table_map, truncate)
        self.path = path
        self.naming = naming
        self._conn: sqlite3.Connection | None = None
        self._tables: dict[str, _Table] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open (creating if needed) the database and read the stored positions."""
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if migrate_offsets(conn):
                log.info("sink %r: migrated cdcflow_offsets in %s to exact offsets",
                         self.name, self.path)
            conn.execute(_OFFSETS_DDL)
        except sqlite3.Error as exc:
            raise SinkError(
                f"sink {self.name!r}: cannot open SQLite database {self.path}: {exc}"
            ) from exc
        self._conn = conn
        rows = conn.execute(
            'SELECT stream, partition, "offset" FROM cdcflow_offsets WHERE pipeline=? AND sink=?',
            (self.pipeline, self.name),
        ).fetchall()
        where = f"sink {self.name!r}: {self.path}"
        self._positions = {
            (str(stream), str(part)): stored_offset(offset, where) for stream, part, offset in rows
        }

    def stored_positions(self) -> dict[PartitionKey, int]:
        """The stored positions, read-only: a missing database or table means none."""
        if not self.path.exists():
            return {}
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
            try:
                exists = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='cdcflow_offsets'"
                ).fetchone()
                rows = conn.execute(
                    'SELECT stream, partition, "offset" FROM cdcflow_offsets '
                    "WHERE pipeline=? AND sink=?",
                    (self.pipeline, self.name),
                ).fetchall() if exists else []
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise SinkError(
                f"sink {self.name!r}: cannot read SQLite database {self.path}: {exc}"
            ) from exc
        where = f"sink {self.name!r}: {self.path}"
        return {
            (str(stream), str(part)): stored_offset(offset, where) for stream, part, offset in rows
        }

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._tables.clear()

    def check(self) -> list[str]:
        """The database's directory must be writable."""
        directory = self.path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not os.access(directory, os.W_OK):
            return [f"sink {self.name!r}: cannot write to {directory}"]
        return []

    def describe(self) -> list[str]:
        """Row counts per table."""
        conn = self._require()
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name != 'cdcflow_offsets' "
                "ORDER BY name"
            )
        ]
        lines = [f"sink {self.name!r}: SQLite database {self.path}"]
        for name in names:
            (count,) = conn.execute(f"SELECT COUNT(*) FROM {quote(name)}").fetchone()
            lines.append(row_count_line(name, count))
        return lines

    # -- writing ----------------------------------------------------------------------------

    # Hooks of the transactional template (TransactionalTableWriter.write).

    def _attempt(self, operation: Callable[[], Any], what: str) -> Any:
        """Run the batch's transaction once; SQLite errors become a :class:`SinkError`."""
        try:
            return operation()
        except sqlite3.Error as exc:
            raise SinkError(f"sink {self.name!r}: SQLite write failed: {exc}") from exc

    def _begin(self) -> None:
        self._require().execute("BEGIN IMMEDIATE")

    def _apply_batch(self, batch: EventBatch, committed: int) -> tuple[int, list[DeadLetter]]:
        events = self._new_events(batch, committed)
        return len(events), self._apply(self._require(), events)

    def _store_position(self, key: PartitionKey, offset: int) -> None:
        self._require().execute(
            'INSERT INTO cdcflow_offsets (pipeline, sink, stream, partition, "offset", '
            "updated_at) VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now')) "
            'ON CONFLICT (pipeline, sink, stream, partition) DO UPDATE SET "offset"='
            "excluded.\"offset\", updated_at=excluded.updated_at",
            (self.pipeline, self.name, key[0], key[1], sqlite_value(offset)),
        )

    def _commit(self) -> None:
        self._require().execute("COMMIT")

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            conn.execute("ROLLBACK")

    def _reset_caches(self) -> None:
        self._tables.clear()

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    def target_name(self, table: TableId) -> str:
        """The SQLite table a source table lands in."""
        mapped = self.table_map.get(str(table))
        if mapped:
            return mapped
        if self.naming == "qualified":
            return "_".join(p for p in (table.database, table.schema, table.table) if p)
        return table.table

    def _apply(self, conn: sqlite3.Connection, events: Iterable[ChangeEvent]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        pending: list[tuple[str, tuple[Any, ...], ChangeEvent]] = []

        def flush() -> None:
            self._execute(conn, pending, dead)
            pending.clear()

        for event in events:
            try:
                statement = self._statement(conn, event, flush)
            except (RowRejectedError, ValueError, TypeError, sqlite3.Error) as exc:
                dead.append(self._dead(event, exc))
                continue
            if statement is not None:
                pending.append((*statement, event))
        flush()
        return dead

    def _execute(
        self,
        conn: sqlite3.Connection,
        pending: list[tuple[str, tuple[Any, ...], ChangeEvent]],
        dead: list[DeadLetter],
    ) -> None:
        """Run statements, grouping runs of identical SQL into ``executemany``.

        A group that fails is rolled back to a savepoint and replayed row by row, so only the
        rows SQLite rejects become dead letters.
        """
        start = 0
        while start < len(pending):
            sql = pending[start][0]
            end = start
            while end < len(pending) and pending[end][0] == sql:
                end += 1
            group = pending[start:end]
            conn.execute("SAVEPOINT cdcflow_group")
            try:
                conn.executemany(sql, [params for _, params, _ in group])
                conn.execute("RELEASE cdcflow_group")
            except _REJECTED:
                conn.execute("ROLLBACK TO cdcflow_group")
                conn.execute("RELEASE cdcflow_group")
                for _, params, event in group:
                    try:
                        conn.execute(sql, params)
                    except _REJECTED as exc:
                        dead.append(self._dead(event, exc))
            start = end

    def _statement(
        self, conn: sqlite3.Connection, event: ChangeEvent, flush: Callable[[], None]
    ) -> tuple[str, tuple[Any, ...]] | None:
        name = self.target_name(event.table)
        if event.op is Op.TRUNCATE:
            if self.truncate == "ignore" or self._known(conn, name) is None:
                return None
            return (f"DELETE FROM {quote(name)}", ())
        row = event.row
        if event.op is Op.DELETE:
            # A delete needs only the key (MongoDB and unwrapped deletes carry no row image);
            # a table the sink has never created holds nothing to delete.
            known = self._known(conn, name)
            if known is None:
                return None
            if row is None and not event.key:
                raise RowRejectedError(
                    f"delete event for {event.table} has neither a key nor a row"
                )
            self._require_key(known)
            key_values = self._key_values(event, known, row or {})
            where = " AND ".join(f"{quote(c)} = ?" for c in known.key)
            return (f"DELETE FROM {quote(name)} WHERE {where}", key_values)
        if row is None:
            raise RowRejectedError(f"{event.op.value!r} event for {event.table} has no row image")
        table = self._ensure_table(conn, name, event, row, flush)
        self._require_key(table)
        key_values = self._key_values(event, table, row)
        columns = list(row)
        for column in table.key:
            if column not in row:
                columns.append(column)
        values = tuple(
            sqlite_value(row[c]) if c in row else key_values[table.key.index(c)] for c in columns
        )
        updates = [c for c in columns if c not in table.key]
        column_sql = ", ".join(quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        conflict = ", ".join(quote(c) for c in table.key)
        if updates:
            assignments = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in updates)
            action = f"DO UPDATE SET {assignments}"
        else:
            action = "DO NOTHING"
        sql = (
            f"INSERT INTO {quote(name)} ({column_sql}) VALUES ({marks}) "
            f"ON CONFLICT ({conflict}) {action}"
        )
        return (sql, values)

    @staticmethod
    def _require_key(table: _Table) -> None:
        if not table.key:
            raise RowRejectedError(
                f"table {table.name} exists without a primary key; the sink upserts by key, "
                "so give the table a PRIMARY KEY or map the source table elsewhere (table_map)"
            )

    @staticmethod
    def _key_values(event: ChangeEvent, table: _Table, row: dict[str, Any]) -> tuple[Any, ...]:
        source = event.key or {}
        values = []
        for column in table.key:
            if column in source:
                values.append(sqlite_value(source[column]))
            elif column in row:
                values.append(sqlite_value(row[column]))
            else:
                raise RowRejectedError(
                    f"key column {column!r} of {table.name} is missing from the event's key and row"
                )
        return tuple(values)

    def _known(self, conn: sqlite3.Connection, name: str) -> _Table | None:
        table = self._tables.get(name)
        if table is not None:
            return table
        info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
        if not info:
            return None
        columns = [row[1] for row in info]
        key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        table = _Table(name, columns, key)
        self._tables[name] = table
        return table

    def _ensure_table(
        self,
        conn: sqlite3.Connection,
        name: str,
        event: ChangeEvent,
        row: dict[str, Any],
        flush: Callable[[], None],
    ) -> _Table:
        table = self._known(conn, name)
        if table is None:
            key = key_columns([event])
            if not key:
                raise RowRejectedError(no_key_reason(event.table))
            columns: list[str] = []
            if event.schema is not None:
                columns = [c.name for c in event.schema.columns]
            columns += [c for c in row if c not in columns]
            columns += [c for c in key if c not in columns]
            definitions = ", ".join(
                f"{quote(c)} {_column_type(event, c, row.get(c, (event.key or {}).get(c)))}"
                for c in columns
            )
            primary = ", ".join(quote(c) for c in key)
            flush()
            conn.execute(f"CREATE TABLE {quote(name)} ({definitions}, PRIMARY KEY ({primary}))")
            table = _Table(name, columns, key)
            self._tables[name] = table
            return table
        new_columns = [c for c in row if c not in table.column_set]
        if new_columns:
            flush()
            for column in new_columns:
                conn.execute(
                    f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} "
                    f"{_column_type(event, column, row[column])}"
                )
                table.columns.append(column)
                table.column_set.add(column)
        return table


class SqliteSinkConfig(TableSinkConfig):
    """``type: sqlite`` — mirror tables into a SQLite database file."""

    type: Literal["sqlite"]
    path: str = Field(min_length=1)
    naming: Literal["table", "qualified"] = "table"

    def build(self, context: BuildContext) -> SqliteWriter:
        """Build the writer (the path is relative to the pipeline file)."""
        return SqliteWriter(
            **self.writer_options(context), path=context.resolve(self.path), naming=self.naming
        )

