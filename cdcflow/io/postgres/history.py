"""The append and timescaledb modes: every event one row of a history table.

Each row holds the row image (``after``, or ``before``/the key for deletes) and the metadata
columns of :data:`~cdcflow.io.postgres.sql.HISTORY_COLUMNS`; rows are ``COPY``'d, and replayed
one ``INSERT`` each when PostgreSQL rejects one, so only the rejected rows become dead letters.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from cdcflow.errors import RowRejectedError
from cdcflow.io.postgres.catalog import CatalogWriter
from cdcflow.io.postgres.sql import is_row_error, quote, text_param
from cdcflow.io.postgres.types import copy_value
from cdcflow.io.sink_common import Target
from cdcflow.schemas.model import ChangeEvent, DeadLetter, Op

if TYPE_CHECKING:
    import psycopg

_UTC = dt.UTC



class HistoryMode(CatalogWriter):
    """``mode: append`` and ``mode: timescaledb`` (see the module docstring)."""

    def _history_row(self, event: ChangeEvent) -> dict[str, Any]:
        source = event.row if event.op is not Op.TRUNCATE else None
        if source is None and event.op is Op.DELETE:
            source = event.key
        row = {column: copy_value(value) for column, value in (source or {}).items()}
        ts_ms = event.source.ts_ms if event.source.ts_ms is not None else event.ts_ms
        if ts_ms is None and self.mode == "timescaledb":
            raise RowRejectedError(
                "the event has no source timestamp (source.ts_ms or ts_ms), which the "
                "timescaledb mode partitions on"
            )
        row["_cdc_op"] = event.op.value
        row["_cdc_stream"] = event.position.stream
        row["_cdc_partition"] = str(event.position.partition)
        row["_cdc_offset"] = event.position.offset
        row["_cdc_source_ts"] = (
            dt.datetime.fromtimestamp(ts_ms / 1000, _UTC) if ts_ms is not None else None
        )
        return row

    def _apply_append(
        self, conn: psycopg.Connection[Any], target: Target, events: list[ChangeEvent]
    ) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        prepared: list[tuple[ChangeEvent, dict[str, Any]]] = []
        for event in events:
            if event.op is Op.TRUNCATE and self.truncate == "ignore":
                continue
            try:
                prepared.append((event, self._history_row(event)))
            except (RowRejectedError, TypeError, ValueError) as exc:
                dead.append(self._dead(event, exc))
        if not prepared:
            return dead
        try:
            table = self._ensure_table(conn, target, [e for e, _ in prepared])
        except RowRejectedError as exc:
            return dead + [self._dead(e, exc) for e, _ in prepared]
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for _, row in prepared:
            columns = tuple(c for c in table.columns if c in row)
            by_columns.setdefault(columns, []).append(tuple(row[c] for c in columns))
        try:
            with conn.transaction():
                for columns, values in by_columns.items():
                    self._copy(
                        conn, table.sql_name, columns, values, [table.columns[c] for c in columns]
                    )
        except Exception as exc:
            if not is_row_error(exc):
                raise
            for event, row in prepared:
                columns = tuple(c for c in table.columns if c in row)
                try:
                    with conn.transaction():
                        conn.execute(
                            f"INSERT INTO {table.sql_name} ("
                            + ", ".join(quote(c) for c in columns)
                            + ") VALUES ("
                            + ", ".join("%s" for _ in columns)
                            + ")",
                            [text_param(row[c]) for c in columns],
                        )
                except Exception as row_exc:
                    if not is_row_error(row_exc):
                        raise
                    dead.append(self._dead(event, row_exc))
        return dead

