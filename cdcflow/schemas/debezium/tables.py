"""Which table a message belongs to, and which of its columns form the key.

:class:`TableNames` names the table from the message's source block (database, schema, table
or collection) or, when the block names none, from the topic. :class:`KeyColumns` takes the key
of a row from the configured ``key_columns`` (table globs, matched against ``str(TableId)``, to
column lists), for messages sent without a key. Both keep bounded caches and are not
thread-safe; failures are :class:`~cdcflow.errors.DecodeError` values.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from cdcflow.errors import DecodeError
from cdcflow.schemas.model import SourceInfo, TableId

_CACHE_LIMIT = 4096


class TableNames:
    """Resolves a message's :class:`TableId`, caching one per distinct name."""

    def __init__(self) -> None:
        self._table_ids: dict[tuple[str | None, str | None, str], TableId] = {}

    def resolve(self, source: SourceInfo, topic: str | None) -> TableId:
        """The table ``source`` names, else the one ``topic`` names.

        Raises :class:`DecodeError` when a name part is not text, or when neither names one.
        """
        if source.table:
            ident = (source.database, source.schema, source.table)
            try:
                found = self._table_ids.get(ident)
            except TypeError:  # a list or object where a name belongs
                found = None
            if found is None:
                for part, value in zip(("db", "schema", "table"), ident, strict=True):
                    if value is not None and type(value) is not str:
                        raise DecodeError(
                            f"the table's {part} name must be text, got {type(value).__name__}"
                        )
                if len(self._table_ids) >= _CACHE_LIMIT:
                    self._table_ids.clear()
                found = TableId(database=ident[0], schema=ident[1], table=ident[2])
                self._table_ids[ident] = found
            return found
        if topic:
            return TableId.parse(topic)
        raise DecodeError(
            "cannot tell which table this message belongs to: its source block names no table "
            "and there is no topic (add __table/__db via ExtractNewRecordState add.fields)"
        )


class KeyColumns:
    """The configured key columns of each table (the first matching glob wins)."""

    def __init__(self, key_columns: Mapping[str, Sequence[str]] | None = None) -> None:
        self._globs = {glob: tuple(cols) for glob, cols in (key_columns or {}).items()}
        self._by_table: dict[TableId, tuple[str, ...] | None] = {}

    def key_of(self, table: TableId, row: dict[str, Any]) -> dict[str, Any] | None:
        """The key of ``row`` in ``table``; None when no glob names key columns for it.

        Raises :class:`DecodeError` when the row lacks a configured key column.
        """
        if table not in self._by_table:
            name = str(table)
            found: tuple[str, ...] | None = None
            for glob, glob_columns in self._globs.items():
                if fnmatch.fnmatchcase(name, glob):
                    found = glob_columns
                    break
            self._by_table[table] = found
        columns = self._by_table[table]
        if not columns:
            return None
        missing = [c for c in columns if c not in row]
        if missing:
            raise DecodeError(f"key column(s) {missing} configured for {table} are not in the row")
        return {c: row[c] for c in columns}
