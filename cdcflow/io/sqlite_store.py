"""What the SQLite position store and state store share: one database file, opened lazily.

* The connection is in autocommit mode (``isolation_level=None``); every write goes through
  :meth:`SqliteFile.transaction`, an explicit ``BEGIN IMMEDIATE`` ... ``COMMIT`` that rolls
  back on any error, so a write is all or nothing. WAL journal with ``synchronous=FULL``: a
  committed transaction survives a power loss, an interrupted one leaves nothing.
* Offsets are stored as exact decimal ``TEXT`` (never ``INTEGER``, which overflows at 2**63,
  nor ``REAL``, which rounds) and compared as Python integers after reading
  (:func:`upsert_positions`).
* Stores are picklable before and after opening: the connection and lock are not pickled and
  are recreated on first use.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cdcflow.core.positions import merge_positions, offset_to_text, stored_offset
from cdcflow.core.source import PartitionKey
from cdcflow.errors import SinkError, TransientSinkError


def positions_ddl(table: str, owner: str) -> str:
    """DDL of a positions table keyed by ``(pipeline, <owner>, stream, partition)``."""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n"
        "    pipeline TEXT NOT NULL,\n"
        f"    {owner} TEXT NOT NULL,\n"
        "    stream TEXT NOT NULL,\n"
        "    partition TEXT NOT NULL,\n"
        '    "offset" TEXT NOT NULL,\n'
        "    updated_at TEXT NOT NULL,\n"
        f"    PRIMARY KEY (pipeline, {owner}, stream, partition)\n"
        ")"
    )


class SqliteFile:
    """A lazily opened SQLite database file shared by the stores of this package.

    ``what`` names the store in error messages (``"position store"``). ``ddl`` is run once
    when the file is opened for writing. ``timeout``: seconds to wait for another
    connection's lock before a write fails (as :class:`TransientSinkError`).
    """

    def __init__(
        self, path: str | Path, what: str, ddl: Sequence[str], timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.what = what
        self._ddl = tuple(ddl)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def connection(self) -> sqlite3.Connection:
        """The open connection, creating the file and its tables on first use."""
        with self._lock:
            if self._conn is None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    conn = sqlite3.connect(
                        self.path,
                        isolation_level=None,
                        check_same_thread=False,
                        timeout=self.timeout,
                    )
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=FULL")
                    for statement in self._ddl:
                        conn.execute(statement)
                except (OSError, sqlite3.Error) as exc:
                    raise SinkError(f"{self.what} {self.path}: cannot open: {exc}") from exc
                self._conn = conn
            return self._conn

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection | None]:
        """A connection for reading that creates nothing; None when the file does not exist.

        The open connection when there is one; otherwise a read-only one, closed afterwards.
        """
        with self._lock:
            if self._conn is not None:
                yield self._conn
                return
        if not self.path.exists():
            yield None
            return
        try:
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise SinkError(f"{self.what} {self.path}: cannot read: {exc}") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise SinkError(f"{self.what} {self.path}: cannot read: {exc}") from exc
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception rolls back and propagates.

        A busy or locked database (``SQLITE_BUSY``/``SQLITE_LOCKED`` after ``timeout``)
        becomes :class:`TransientSinkError`, other SQLite errors :class:`SinkError`.
        """
        with self._lock:
            conn = self.connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _busy(exc):
                    raise TransientSinkError(f"{self.what} {self.path}: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise SinkError(f"{self.what} {self.path}: {exc}") from exc
                raise

    def close(self) -> None:
        """Close the connection (the next call opens it again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


#: SQLite's primary result codes for "another connection holds the lock".
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _busy(exc: BaseException) -> bool:
    """True for a busy or locked database (worth retrying)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or not isinstance(code, int):
        return False
    return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    """True when ``table`` exists in the database."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)
    ).fetchone()
    return row is not None


def select_positions(
    conn: sqlite3.Connection, table: str, owner: str, pipeline: str, name: str
) -> dict[PartitionKey, int]:
    """The positions of ``(pipeline, name)`` in ``table``, offsets parsed back to ``int``."""
    rows = conn.execute(
        f'SELECT stream, partition, "offset" FROM {table} WHERE pipeline=? AND {owner}=?',
        (pipeline, name),
    ).fetchall()
    where = f"{table} of pipeline {pipeline!r}, {owner} {name!r}"
    return {(str(stream), str(part)): stored_offset(offset, where) for stream, part, offset in rows}


def upsert_positions(
    conn: sqlite3.Connection,
    table: str,
    owner: str,
    pipeline: str,
    name: str,
    positions: Mapping[PartitionKey, int],
) -> None:
    """Move the given partitions forward, inside the caller's transaction.

    The stored offsets are read and compared with the new ones as Python integers (text
    comparison would order ``"9"`` above ``"10"``); only partitions that move forward are
    written.
    """
    stored = select_positions(conn, table, owner, pipeline, name)
    changed = merge_positions(stored, positions)
    now = dt.datetime.now(dt.UTC).isoformat()
    conn.executemany(
        f'INSERT INTO {table} (pipeline, {owner}, stream, partition, "offset", updated_at) '
        "VALUES (?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (pipeline, {owner}, stream, partition) DO UPDATE SET "
        '"offset"=excluded."offset", updated_at=excluded.updated_at',
        [
            (pipeline, name, stream, part, offset_to_text(offset), now)
            for (stream, part), offset in changed.items()
        ],
    )
