"""What the ClickHouse writer knows about its target tables, and how it creates and extends them.

:class:`CatalogWriter` reads a table's columns from ``system.columns``, creates a missing
ReplacingMergeTree table and its view of current rows, or adds the columns a batch brings
(re-creating the view).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cdcflow.io.clickhouse.sql import META, create_table_sql, qualified, quote, view_sql
from cdcflow.io.clickhouse.types import (
    ConvertColumn,
    ch_type,
    ch_type_for_value,
    column_converter,
    converter,
    nullable,
)
from cdcflow.io.sink_common import NamespacedTableWriter, Target, columns_of, covers
from cdcflow.schemas.model import ChangeEvent

log = logging.getLogger("cdcflow.io.clickhouse")

_DUPLICATE_COLUMN = 15



class Table:
    """What the writer knows about one target table."""

    def __init__(self, database: str, name: str, columns: dict[str, str]) -> None:
        self.database = database
        self.name = name
        self.columns = columns  # name -> ClickHouse type, in table order
        self.sql_name = qualified(database, name)
        self.schemas: set[str] = set()  # schema fingerprints whose columns all exist
        self.converters: dict[str, Callable[[Any], Any]] = {
            c: converter(t) for c, t in columns.items()
        }
        self.column_converters: dict[str, ConvertColumn] = {
            c: column_converter(t) for c, t in columns.items()
        }



class CatalogWriter(NamespacedTableWriter):
    """The table catalog of the ClickHouse writer (see the module docstring)."""

    #: The server's version, known after ``open``.
    _version: tuple[int, ...]
    #: Suffix of the view of current rows.
    view_suffix: str
    #: Target -> what the writer knows of the table (cleared on a reconnect).
    _tables: dict[Target, Table]

    def _execute(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        """Run one statement (on the writer's client)."""
        raise NotImplementedError

    def _known(self, target: Target) -> Table | None:
        table = self._tables.get(target)
        if table is not None:
            return table
        database, name = target
        rows = self._execute(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": database, "t": name},
        )
        if not rows:
            return None
        table = Table(database, name, {str(n): str(t) for n, t in rows})
        self._tables[target] = table
        return table

    def _ensure_table(
        self, target: Target, events: list[ChangeEvent], key: tuple[str, ...]
    ) -> Table:
        table = self._known(target)
        if table is not None and covers(table, events, with_keys=True):
            return table
        wanted = columns_of(
            events,
            lambda column: ch_type(column, self._version),
            lambda value: ch_type_for_value(value, self._version),
            all_keys=True,
        )
        if table is not None and all(c in table.columns for c in wanted):
            return table
        database, name = target
        view = qualified(database, name + self.view_suffix)
        if table is None:
            for column in key:
                wanted.setdefault(column, "String")
            columns = [
                (c, t if c in key else nullable(t)) for c, t in wanted.items() if c not in META
            ]
            self._execute(f"CREATE DATABASE IF NOT EXISTS {quote(database)}")
            self._execute(create_table_sql(qualified(database, name), columns, key))
            log.info("sink %r: created table %s.%s", self.name, database, name)
        else:
            for column, sql_type in wanted.items():
                if column not in table.columns and column not in META:
                    try:
                        self._execute(
                            f"ALTER TABLE {table.sql_name} ADD COLUMN "
                            f"{quote(column)} {nullable(sql_type)}"
                        )
                    except Exception as exc:
                        # 18.16 has no ADD COLUMN IF NOT EXISTS: a concurrent writer won.
                        if getattr(exc, "code", None) != _DUPLICATE_COLUMN:
                            raise
                    log.info("sink %r: added column %s to %s.%s", self.name, column, database, name)
            self._execute(f"DROP TABLE IF EXISTS {view}")
        self._tables.pop(target, None)
        table = self._known(target)
        assert table is not None
        data_columns = [c for c in table.columns if c not in META]
        self._execute(view_sql(view, table.sql_name, data_columns))
        return table

