"""The SQL of the ClickHouse sink.

Identifiers, the ReplacingMergeTree DDL and its view of current rows, the positions table, and
the server version.
"""

from __future__ import annotations

from collections.abc import Sequence

VERSION_COLUMN = "_version"

DELETED_COLUMN = "_deleted"

#: The metadata columns every table gets.
META = (VERSION_COLUMN, DELETED_COLUMN)



def quote(identifier: str) -> str:
    """Quote a ClickHouse identifier with backticks."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified(database: str, table: str) -> str:
    """```db`.`table```."""
    return f"{quote(database)}.{quote(table)}"


def create_table_sql(target: str, columns: Sequence[tuple[str, str]], key: Sequence[str]) -> str:
    """The ReplacingMergeTree DDL: ``columns`` are ``(name, type)``, key columns not Nullable."""
    parts = [f"{quote(name)} {sql_type}" for name, sql_type in columns]
    parts += [f"{quote(VERSION_COLUMN)} UInt64", f"{quote(DELETED_COLUMN)} UInt8"]
    order = ", ".join(quote(c) for c in key)
    return (
        f"CREATE TABLE IF NOT EXISTS {target} (" + ", ".join(parts) + ") "
        f"ENGINE = ReplacingMergeTree({quote(VERSION_COLUMN)}) ORDER BY ({order})"
    )


def view_sql(view: str, target: str, columns: Sequence[str]) -> str:
    """The view of current rows: ``FINAL`` and not deleted."""
    selected = ", ".join(quote(c) for c in (*columns, VERSION_COLUMN))
    return (
        f"CREATE VIEW IF NOT EXISTS {view} AS SELECT {selected} FROM {target} FINAL "
        f"WHERE {quote(DELETED_COLUMN)} = 0"
    )


def offsets_ddl(database: str, table: str = "cdcflow_offsets") -> str:
    """The positions table: one row per write; the numerically highest offset is the position.

    Offsets are exact decimal text (``String``: no ClickHouse number type holds the 129 digits
    of a Kinesis sequence number, and ``Decimal`` stops at 76). The engine keeps the last row
    written per partition when parts merge (a writer only ever stores a higher offset than the
    one it read); readers take the numeric maximum of the rows not yet merged, in Python
    (:func:`positions_sql`), never the lexicographic one (``"9" > "10"``).
    """
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(database, table)} ("
        "pipeline String, sink String, stream String, partition String, "
        "offset String, updated_at DateTime) "
        "ENGINE = ReplacingMergeTree ORDER BY (pipeline, sink, stream, partition)"
    )


def positions_sql(database: str) -> str:
    """The distinct stored offsets per partition of one pipeline's sink (params: pipeline, sink).

    The position is the numeric maximum of each row's offsets (:func:`max_offset`): works on
    this version's ``String`` offsets and on an earlier version's ``UInt64`` ones.
    """
    return (
        "SELECT stream, partition, groupUniqArray(toString(offset)) FROM "
        f"{qualified(database, 'cdcflow_offsets')} "
        "WHERE pipeline = %(pipeline)s AND sink = %(sink)s GROUP BY stream, partition"
    )


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` -> ``(18, 16, 1)`` (non-numeric parts end the tuple)."""
    parts: list[int] = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)

