"""A durable state store in a SQLite file, for stateful steps (joins, deduplication).

The contract is :class:`cdcflow.core.state.StateStore`: keyed values per namespace, buffered
until :meth:`~cdcflow.core.state.StateStore.commit` writes them and the input positions they
cover in **one** SQLite transaction (WAL, ``synchronous=FULL``). After a crash the file holds
the state of the last commit and exactly the positions that state includes.

Storage, one file for any number of ``(pipeline, step)`` pairs:

* ``cdcflow_state (pipeline, step, namespace, key, value)``: ``key`` keeps its type (TEXT for
  ``str``, BLOB for ``bytes``), ``value`` is msgpack bytes
  (:func:`cdcflow.core.state.encode_value`);
* ``cdcflow_state_positions (pipeline, step, stream, partition, "offset", updated_at)``: offsets
  as exact decimal ``TEXT``, compared as Python integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cdcflow.core.positions import PartitionKey
from cdcflow.core.state import StateKey, StateStore
from cdcflow.io.sqlite_store import (
    SqliteFile,
    positions_ddl,
    select_positions,
    table_exists,
    upsert_positions,
)

VALUES_TABLE = "cdcflow_state"
POSITIONS_TABLE = "cdcflow_state_positions"
_VALUES_DDL = f"""
CREATE TABLE IF NOT EXISTS {VALUES_TABLE} (
    pipeline TEXT NOT NULL,
    step TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (pipeline, step, namespace, key)
)
"""


class SqliteStateStore(StateStore):
    """The state of step ``step`` of ``pipeline`` in the SQLite file at ``path``.

    ``timeout``: seconds a commit waits for another process's lock on the file before it fails
    with :class:`~cdcflow.errors.TransientSinkError` (the buffered changes are kept: retry it).
    """

    def __init__(self, path: str | Path, pipeline: str, step: str, timeout: float = 30.0) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.step = step
        self.file = SqliteFile(
            path,
            "state store",
            [_VALUES_DDL, positions_ddl(POSITIONS_TABLE, "step")],
            timeout=timeout,
        )

    @property
    def path(self) -> Path:
        """The database file."""
        return self.file.path

    def open(self) -> None:
        """Create the file and its tables if needed."""
        self.file.connection()

    def _load(self, namespace: str, key: StateKey) -> bytes | None:
        row = (
            self.file.connection()
            .execute(
                f"SELECT value FROM {VALUES_TABLE} "
                "WHERE pipeline=? AND step=? AND namespace=? AND key=?",
                (self.pipeline, self.step, namespace, key),
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def _load_all(self, namespace: str) -> dict[StateKey, bytes]:
        rows = (
            self.file.connection()
            .execute(
                f"SELECT key, value FROM {VALUES_TABLE} "
                "WHERE pipeline=? AND step=? AND namespace=?",
                (self.pipeline, self.step, namespace),
            )
            .fetchall()
        )
        return {key: bytes(value) for key, value in rows}

    def _load_positions(self) -> dict[PartitionKey, int]:
        with self.file.reading() as conn:
            if conn is None or not table_exists(conn, POSITIONS_TABLE):
                return {}
            return select_positions(conn, POSITIONS_TABLE, "step", self.pipeline, self.step)

    def _persist(
        self,
        changes: Mapping[tuple[str, StateKey], bytes | None],
        positions: Mapping[PartitionKey, int],
    ) -> dict[PartitionKey, int]:
        scope = (self.pipeline, self.step)
        with self.file.transaction() as conn:
            conn.executemany(
                f"DELETE FROM {VALUES_TABLE} WHERE pipeline=? AND step=? AND namespace=? AND key=?",
                [(*scope, ns, key) for (ns, key), data in changes.items() if data is None],
            )
            conn.executemany(
                f"INSERT INTO {VALUES_TABLE} (pipeline, step, namespace, key, value) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (pipeline, step, namespace, key) "
                "DO UPDATE SET value=excluded.value",
                [
                    (*scope, ns, key, data)
                    for (ns, key), data in changes.items()
                    if data is not None
                ],
            )
            upsert_positions(conn, POSITIONS_TABLE, "step", *scope, positions)
            return select_positions(conn, POSITIONS_TABLE, "step", *scope)

    def close(self) -> None:
        """Drop uncommitted changes and close the database."""
        self.rollback()
        self._positions = None
        self.file.close()
