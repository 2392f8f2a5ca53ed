"""Rows of a ClickHouse batch.

The last row per key between truncates, unavailable columns filled from earlier events or the
stored row, and checked columnar inserts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdcflow.errors import RowRejectedError
from cdcflow.io.clickhouse.catalog import CatalogWriter, Table
from cdcflow.io.clickhouse.sql import DELETED_COLUMN, META, VERSION_COLUMN, quote
from cdcflow.io.sink_common import Target, key_columns, no_key_reason
from cdcflow.schemas.model import ChangeEvent, DeadLetter, Op

_FILL = "\x00fill"  # marks a row whose missing columns are read from the stored row



class Pending:
    """Rows of one table between truncates: the last row per key, with its events."""

    def __init__(self, truncate_first: bool) -> None:
        self.truncate_first = truncate_first
        self.rows: dict[tuple[Any, ...], tuple[dict[str, Any], ChangeEvent]] = {}



class RowsWriter(CatalogWriter):
    """Turns a batch's events into ReplacingMergeTree rows (see the module docstring)."""

    def _apply(self, groups: dict[Target, list[ChangeEvent]]) -> list[DeadLetter]:
        """Insert the rows of each target's events (idempotent: safe to run again)."""
        dead: list[DeadLetter] = []
        for target, table_events in groups.items():
            dead.extend(self._apply_table(target, table_events))
        return dead

    def _apply_table(self, target: Target, events: list[ChangeEvent]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        rows = [e for e in events if e.op is not Op.TRUNCATE]
        keys = key_columns(rows)
        table = self._known(target)
        if rows:
            if table is None and not keys:
                problem = RowRejectedError(no_key_reason(rows[0].table))
                return [self._dead(e, problem) for e in rows]
            table = self._ensure_table(target, rows, keys)
        if table is None:
            return []
        segments = [Pending(False)]
        for event in events:
            if event.op is Op.TRUNCATE:
                if self.truncate == "apply":
                    segments.append(Pending(True))
                continue
            try:
                key, row = self._row(event, table, keys)
            except (RowRejectedError, TypeError, ValueError) as exc:
                dead.append(self._dead(event, exc))
                continue
            segment = segments[-1]
            previous = segment.rows.get(key)
            if previous is not None and not previous[0][DELETED_COLUMN]:
                earlier = previous[0]
                merged = {c: v for c, v in earlier.items() if c not in META}
                merged.update(row)
                row = merged
            elif previous is None and not segment.truncate_first and event.op is not Op.DELETE:
                # rows carry only table columns (ensured above): fewer means some are missing
                row[_FILL] = len(row) < len(table.columns)
            segment.rows[key] = (row, event)
        for segment in segments:
            if segment.truncate_first:
                self._execute(f"TRUNCATE TABLE {table.sql_name}")
            if segment.rows:
                self._fill_unavailable(table, keys, segment, events[0].position.offset)
                dead.extend(self._insert(table, segment))
        return dead

    def _row(
        self, event: ChangeEvent, table: Table, key_columns: tuple[str, ...]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        deleted = event.op is Op.DELETE
        source = event.before if deleted else event.after
        if source is None and deleted:
            source = event.key
        if source is None:
            raise RowRejectedError(f"{event.op.value!r} event for {event.table} has no row image")
        event_key = event.key or source
        key: list[Any] = []
        for column in key_columns:
            value = event_key.get(column)
            if value is None:
                value = source.get(column)
            if value is None:
                raise RowRejectedError(f"key column {column!r} is missing or null")
            key.append(value)
        row = {} if deleted else dict(source)
        row.update(zip(key_columns, key, strict=True))
        row[VERSION_COLUMN] = event.position.offset
        row[DELETED_COLUMN] = 1 if deleted else 0
        return tuple(key), row

    def _fill_unavailable(
        self, table: Table, key_columns: tuple[str, ...], segment: Pending, below: int
    ) -> None:
        """Fill unavailable columns from the stored rows (versions below this batch)."""
        wanted: dict[tuple[Any, ...], dict[str, Any]] = {}
        for key, (row, _event) in segment.rows.items():
            if row.pop(_FILL, False):
                wanted[key] = row
        if not wanted:
            return
        fill = [c for c in table.columns if c not in META and c not in key_columns]
        if not fill:
            return
        keys_sql = ", ".join(quote(c) for c in key_columns)
        keys_param: Any = tuple(k[0] for k in wanted) if len(key_columns) == 1 else tuple(wanted)
        selected = ", ".join(quote(c) for c in (*fill, DELETED_COLUMN))
        found = self._execute(
            f"SELECT {keys_sql}, argMax(tuple({selected}), {quote(VERSION_COLUMN)}) "
            f"FROM {table.sql_name} WHERE {quote(VERSION_COLUMN)} < %(below)s AND "
            f"({keys_sql}) IN %(keys)s GROUP BY {keys_sql}",
            {"below": below, "keys": keys_param},
        )
        for record in found:
            key = tuple(record[: len(key_columns)])
            values = record[len(key_columns)]
            target = wanted.get(key)
            if target is None or values[-1]:
                continue  # unknown key, or the stored row is deleted: stays NULL
            for column, value in zip(fill, values[:-1], strict=True):
                if column not in target:
                    target[column] = value

    def _insert(self, table: Table, segment: Pending) -> list[DeadLetter]:
        """Insert a segment's rows in one columnar block; rows that do not fit are dead letters."""
        columns = list(table.columns)
        column_sql = ", ".join(quote(c) for c in columns)
        sql = f"INSERT INTO {table.sql_name} ({column_sql}) VALUES"
        rows = list(segment.rows.values())
        try:
            data = [table.column_converters[c]([row.get(c) for row, _ in rows]) for c in columns]
        except (TypeError, ValueError, ArithmeticError):
            return self._insert_checked(table, rows, columns, sql)
        self._execute(sql, data, columnar=True)
        return []

    def _insert_checked(
        self,
        table: Table,
        rows: list[tuple[dict[str, Any], ChangeEvent]],
        columns: list[str],
        sql: str,
    ) -> list[DeadLetter]:
        """Convert row by row, dead-lettering the rows that do not fit; insert the rest."""
        dead: list[DeadLetter] = []
        values: list[tuple[Any, ...]] = []
        for row, event in rows:
            try:
                values.append(tuple(table.converters[c](row.get(c)) for c in columns))
            except (TypeError, ValueError, ArithmeticError) as exc:
                column = next((c for c in columns if _fails(table.converters[c], row.get(c))), None)
                reason = f"column {column!r}: {exc}" if column else str(exc)
                dead.append(self._dead(event, ValueError(reason)))
        if values:
            self._execute(sql, values)
        return dead


def _fails(convert: Callable[[Any], Any], value: Any) -> bool:
    try:
        convert(value)
    except (TypeError, ValueError, ArithmeticError):
        return True
    return False

