"""Upsert mode: a batch collapsed to the net change per key, applied in a few statements.

The fast path stages the final rows with ``COPY`` and runs one ``DELETE`` and one ``INSERT ...
ON CONFLICT DO UPDATE`` per distinct column set; when PostgreSQL rejects a row, the table's
events are replayed one statement each, in savepoints, so only the rejected rows become dead
letters.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cdcflow.errors import RowRejectedError
from cdcflow.io.postgres.catalog import CatalogWriter, Table
from cdcflow.io.postgres.sql import delete_sql, is_row_error, quote, text_param, upsert_sql
from cdcflow.io.postgres.types import copy_value
from cdcflow.io.sink_common import Target
from cdcflow.schemas.model import ChangeEvent, DeadLetter, Op

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("cdcflow.io.postgres")

#: Value types COPY sends as they are (anything else goes through :func:`copy_value`).
_PLAIN = frozenset(
    {str, int, float, bool, type(None), Decimal, dt.datetime, dt.date, dt.time, bytes}
)

_EMPTY: dict[str, Any] = {}

_MISSING: Any = object()



class UpsertMode(CatalogWriter):
    """``mode: upsert``: the target mirrors the source (see the module docstring)."""

    def _apply_upsert(
        self, conn: psycopg.Connection[Any], target: Target, events: list[ChangeEvent]
    ) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        rows = [e for e in events if e.op is not Op.TRUNCATE]
        table = self._known(conn, target)
        if rows:
            try:
                table = self._ensure_table(conn, target, rows)
            except RowRejectedError as exc:
                return [self._dead(e, exc) for e in events]
        if table is None:
            return []  # only truncates of a table that does not exist
        if not table.key:
            problem = RowRejectedError(
                f"target table {table.schema}.{table.name} has no primary key; upsert mode "
                "needs one (add it, or use mode: append)"
            )
            return [self._dead(e, problem) for e in events]
        truncate_first = False
        # The net change per key, in one pass: key -> final row (None: ends deleted). Keys of a
        # single-column primary key are the bare value, else tuples in table-key order.
        # ``resets``: keys deleted and then written again (delete the stored row first).
        states: dict[Any, dict[str, Any] | None] = {}
        resets: set[Any] = set()
        unusable: list[ChangeEvent] = []
        single = table.key[0] if len(table.key) == 1 else None
        plain = _PLAIN.issuperset
        delete, truncate = Op.DELETE, Op.TRUNCATE
        get = states.get
        missing = _MISSING
        apply_truncate = self.truncate == "apply"
        for event in events:
            op = event.op
            if op is truncate:
                if apply_truncate:
                    truncate_first = True
                    states.clear()
                    resets.clear()
                continue
            row = event.after
            key: Any = None
            if single is not None and op is not delete and row is not None:
                key = row.get(single)
                if key is not None and not plain(map(type, row.values())):
                    key = None
            if key is None:  # the general path: deletes, composite keys, conversions
                try:
                    key_values, row = self._prepare(event, table)
                except (RowRejectedError, TypeError, ValueError) as exc:
                    dead.append(self._dead(event, exc))
                    unusable.append(event)
                    continue
                key = key_values[0] if single is not None else key_values
            if op is delete:
                states[key] = None
                resets.discard(key)
                continue
            previous = get(key, missing)
            if previous is missing:
                states[key] = row
            elif previous is None:
                states[key] = row
                resets.add(key)
            elif row is not None:
                states[key] = {**previous, **row}
        try:
            with conn.transaction():
                self._upsert_fast(conn, table, states, resets, truncate_first)
        except Exception as exc:
            if not is_row_error(exc):
                raise
            self._stages.clear()
            log.info("sink %r: rows rejected in %s, row by row: %s", self.name, table.name, exc)
            rejected = {id(event) for event in unusable}
            remaining = [e for e in events if id(e) not in rejected]
            dead.extend(self._upsert_slow(conn, table, remaining))
        return dead

    def _prepare(self, event: ChangeEvent, table: Table) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The key tuple (in table-key order) and the COPY-ready row of an event.

        The returned row may be the event's own dict: callers must not modify it.
        """
        source = event.row
        if source is None:
            if event.op is not Op.DELETE or not event.key:
                raise RowRejectedError(
                    f"{event.op.value!r} event for {event.table} has no row image"
                )
            source = event.key
        event_key = event.key or _EMPTY
        key: list[Any] = []
        for column in table.key:
            value = event_key.get(column)
            if value is None:
                value = source.get(column)
            if value is None:
                raise RowRejectedError(
                    f"key column {column!r} of {table.schema}.{table.name} is missing or null "
                    "in the event's key and row"
                )
            key.append(value if type(value) in _PLAIN else copy_value(value))
        row = source
        for value in source.values():
            if type(value) not in _PLAIN:
                row = {c: v if type(v) in _PLAIN else copy_value(v) for c, v in source.items()}
                break
        if len(table.key) == 1:
            if table.key[0] not in row:
                row = {**row, table.key[0]: key[0]}
        elif any(c not in row for c in table.key):
            row = {**dict(zip(table.key, key, strict=True)), **row}
        return tuple(key), row

    def _upsert_fast(
        self,
        conn: psycopg.Connection[Any],
        table: Table,
        states: dict[Any, dict[str, Any] | None],
        resets: set[Any],
        truncate_first: bool,
    ) -> None:
        """Apply the net changes: ``TRUNCATE``, ``DELETE`` of ended/reset keys, upserts.

        ``states`` maps keys (bare values for a one-column key) to the final row or None.
        """
        if truncate_first:
            conn.execute(f"TRUNCATE {table.sql_name}")
        deletes: list[Any] = [k for k, row in states.items() if row is None]
        deletes.extend(resets)
        if deletes and len(table.key) == 1 and len({type(k) for k in deletes}) == 1:
            # One key column: one statement, no staging table. The cast makes PostgreSQL
            # parse the values as the key column's type, as COPY into the stage would.
            column = table.key[0]
            conn.execute(
                f"DELETE FROM {table.sql_name} WHERE {quote(column)} = "
                f"ANY(%s::{table.columns[column]}[])",
                (deletes,),
            )
        elif deletes:
            if len(table.key) == 1:
                deletes = [(k,) for k in deletes]
            stage = self._stage(conn, table, table.key)
            self._copy(conn, stage, table.key, deletes, [table.columns[c] for c in table.key])
            conn.execute(delete_sql(table.sql_name, stage, table.key))
        full = tuple(table.columns)
        width = len(full)
        take = operator.itemgetter(*full) if width > 1 else (lambda row: (row[full[0]],))
        rows = [row for row in states.values() if row is not None]
        # rows only carry table columns, so a row of the table's width has them all
        complete = [take(row) for row in rows if len(row) == width]
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {full: complete}
        if len(complete) < len(rows):
            for row in rows:
                if len(row) != width:
                    columns = tuple(c for c in full if c in row)
                    by_columns.setdefault(columns, []).append(tuple(row[c] for c in columns))
        for columns, values in by_columns.items():
            if not values:
                continue
            stage = self._stage(conn, table, columns)
            self._copy(conn, stage, columns, values, [table.columns[c] for c in columns])
            conn.execute(upsert_sql(table.sql_name, stage, columns, table.key))

    def _upsert_slow(
        self, conn: psycopg.Connection[Any], table: Table, events: list[ChangeEvent]
    ) -> list[DeadLetter]:
        """One statement per event, each in a savepoint: only rejected events are lost."""
        dead: list[DeadLetter] = []
        for event in events:
            try:
                with conn.transaction():
                    if event.op is Op.TRUNCATE:
                        if self.truncate == "apply":
                            conn.execute(f"TRUNCATE {table.sql_name}")
                        continue
                    key_values, row = self._prepare(event, table)
                    if event.op is Op.DELETE:
                        where = " AND ".join(f"{quote(c)} = %s" for c in table.key)
                        conn.execute(f"DELETE FROM {table.sql_name} WHERE {where}", key_values)
                        continue
                    columns = [c for c in table.columns if c in row]
                    column_sql = ", ".join(quote(c) for c in columns)
                    marks = ", ".join("%s" for _ in columns)
                    updates = [c for c in columns if c not in table.key]
                    action = (
                        "DO UPDATE SET "
                        + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
                        if updates
                        else "DO NOTHING"
                    )
                    conflict = ", ".join(quote(c) for c in table.key)
                    conn.execute(
                        f"INSERT INTO {table.sql_name} ({column_sql}) VALUES ({marks}) "
                        f"ON CONFLICT ({conflict}) {action}",
                        [text_param(row[c]) for c in columns],
                    )
            except Exception as exc:
                if not is_row_error(exc) and not isinstance(
                    exc, (RowRejectedError, TypeError, ValueError)
                ):
                    raise
                dead.append(self._dead(event, exc))
        return dead

