"""A durable position store in a SQLite file, for sinks that cannot keep positions themselves.

The contract and the write protocol (deliver the batch, *then* commit its position: at-least-
once unless the sink is idempotent) are in :mod:`cdcflow.core.positions`.

Storage: one table, ``cdcflow_positions (pipeline, sink, stream, partition, "offset",
updated_at)``, primary key ``(pipeline, sink, stream, partition)``. Offsets are exact decimal
``TEXT`` of any length (a 129-digit Kinesis sequence number round-trips), compared as Python
integers; partitions are text (``"0"``, ``"shardId-000000000001"``). Each :meth:`commit` is one
SQLite transaction (WAL, ``synchronous=FULL``): all its positions are stored or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cdcflow.core.positions import PartitionKey, PositionStore, check_positions
from cdcflow.io.sqlite_store import (
    SqliteFile,
    positions_ddl,
    select_positions,
    table_exists,
    upsert_positions,
)

TABLE = "cdcflow_positions"


class SqlitePositionStore(PositionStore):
    """Positions of any number of ``(pipeline, sink)`` pairs in one SQLite file at ``path``.

    ``timeout``: seconds a commit waits for another process's lock on the file before it fails
    with :class:`~cdcflow.errors.TransientSinkError` (retry it).
    """

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.file = SqliteFile(
            path, "position store", [positions_ddl(TABLE, "sink")], timeout=timeout
        )

    @property
    def path(self) -> Path:
        """The database file."""
        return self.file.path

    def open(self) -> None:
        """Create the file and its table if needed."""
        self.file.connection()

    def read(self, pipeline: str, sink: str) -> dict[PartitionKey, int]:
        """The committed positions; ``{}`` (creating nothing) when the file or table is absent."""
        with self.file.reading() as conn:
            if conn is None or not table_exists(conn, TABLE):
                return {}
            return select_positions(conn, TABLE, "sink", pipeline, sink)

    def commit(self, pipeline: str, sink: str, positions: Mapping[PartitionKey, int]) -> None:
        """Move the given partitions forward in one transaction (see :class:`PositionStore`)."""
        checked = check_positions(positions)
        if not checked:
            return
        with self.file.transaction() as conn:
            upsert_positions(conn, TABLE, "sink", pipeline, sink, checked)

    def reset(self, pipeline: str, sink: str, partitions: list[PartitionKey] | None = None) -> None:
        """Delete some or all of the sink's positions in one transaction."""
        with self.file.transaction() as conn:
            if partitions is None:
                conn.execute(f"DELETE FROM {TABLE} WHERE pipeline=? AND sink=?", (pipeline, sink))
            else:
                conn.executemany(
                    f"DELETE FROM {TABLE} WHERE pipeline=? AND sink=? AND stream=? AND partition=?",
                    [(pipeline, sink, stream, part) for stream, part in partitions],
                )

    def close(self) -> None:
        """Close the database (a later call opens it again)."""
        self.file.close()
