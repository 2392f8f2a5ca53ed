"""One fixture per sink for the writer contract suite.

A sink joins the suite by adding a ``_<name>`` factory below and its name to ``SINKS``: the
factory returns a :class:`SinkUnderTest` that builds opened writers on one fresh destination
and reads back its rows and stored positions through its own client (not the writer).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdcflow.core.writer import Writer
from cdcflow.schemas.model import ChangeEvent
from cdcflow.testing import MemoryWriter
from tests.integration.sinks.events import FAST_RETRY, event, order_row

State = dict[int, tuple[int, str | None]]
Positions = dict[tuple[str, str], int]

#: The positions tables of cdcflow 0.x (64-bit offsets), which a writer migrates on open.
LEGACY_SQLITE_OFFSETS = """
CREATE TABLE cdcflow_offsets (
    pipeline TEXT NOT NULL,
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    partition TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, sink, stream, partition)
)
"""
LEGACY_POSTGRES_OFFSETS = (
    "CREATE TABLE public.cdcflow_offsets (pipeline text NOT NULL, sink text NOT NULL, "
    'stream text NOT NULL, partition text NOT NULL, "offset" bigint NOT NULL, '
    "updated_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (pipeline, sink, stream, partition))"
)
LEGACY_CLICKHOUSE_OFFSETS = (
    "CREATE TABLE {db}.cdcflow_offsets (pipeline String, sink String, stream String, "
    "partition String, offset UInt64, updated_at DateTime) "
    "ENGINE = ReplacingMergeTree(offset) ORDER BY (pipeline, sink, stream, partition)"
)


@dataclass
class SinkUnderTest:
    """A sink and the means to inspect its destination independently of the writer."""

    name: str
    #: A new opened writer on the destination (a restart); the caller closes it.
    make: Callable[[], Writer]
    #: ``{id: (qty, note)}`` of the live rows of ``shop.public.orders``.
    state: Callable[[], State]
    #: The stored positions ``{(stream, partition): offset}`` read by another connection.
    positions: Callable[[], dict[tuple[str, str], int]]
    #: An event at ``offset`` for order ``ident`` that this sink rejects as a row.
    rejected: Callable[[int, int], ChangeEvent]
    #: True when rows and position commit in one transaction (no row of a failed batch stays).
    transactional: bool = True
    #: Creates the positions table of an earlier version holding these positions of pipeline
    #: ``p``, sink ``contract`` (None: the sink has no earlier table format).
    legacy_positions: Callable[[Positions], None] | None = None
    #: True when the rows themselves carry the offset in a 64-bit column (ClickHouse's
    #: ``_version``): a row at a larger offset is rejected, its position still stored exactly.
    row_offsets_64bit: bool = False


def _keyless(offset: int, ident: int) -> ChangeEvent:
    """No key and no key column in the row: nothing to upsert by."""
    row = {k: v for k, v in order_row(ident).items() if k != "id"}
    return event("c", offset, None, after=row)


def _too_big(offset: int, ident: int) -> ChangeEvent:
    return event("c", offset, ident, after=order_row(ident, qty=2**40))  # beyond int32


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> SinkUnderTest:
    shared = MemoryWriter(name="contract")

    def state() -> State:
        return {r["id"]: (r["qty"], r.get("note")) for r in shared.rows("shop.public.orders")}

    return SinkUnderTest("memory", lambda: shared, state, shared.committed_positions, _keyless)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> SinkUnderTest:
    from cdcflow.io.sqlite import SqliteWriter

    path = tmp_path / "contract.sqlite"

    def make() -> Writer:
        writer = SqliteWriter("contract", path, pipeline="p")
        writer.open()
        return writer

    def query(sql: str) -> list[tuple[Any, ...]]:
        if not path.exists():
            return []
        with closing(sqlite3.connect(path, timeout=5)) as conn:
            try:
                return conn.execute(sql).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise

    def positions() -> Positions:
        rows = query('SELECT stream, partition, "offset" FROM cdcflow_offsets')
        assert all(isinstance(o, (int, str)) for _, _, o in rows), rows  # never a lossy REAL
        return {(s, p): int(o) for s, p, o in rows}

    def legacy(stored: Positions) -> None:
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(LEGACY_SQLITE_OFFSETS)
            conn.executemany(
                "INSERT INTO cdcflow_offsets VALUES ('p', 'contract', ?, ?, ?, "
                "'2024-01-01T00:00:00Z')",
                [(s, p, o) for (s, p), o in stored.items()],
            )

    return SinkUnderTest(
        "sqlite",
        make,
        lambda: {i: (q, n) for i, q, n in query("SELECT id, qty, note FROM orders")},
        positions,
        _keyless,
        legacy_positions=legacy,
    )


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> SinkUnderTest:
    import psycopg

    from cdcflow.io.postgres import PostgresWriter

    dsn: str = request.getfixturevalue("pg_database")

    def make() -> Writer:
        writer = PostgresWriter(name="contract", dsn=dsn, pipeline="p", retry=FAST_RETRY)
        writer.open()
        return writer

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn) as conn:
            exists = conn.execute("SELECT to_regclass('public.orders')").fetchone()
            if "orders" in sql and (exists is None or exists[0] is None):
                return []
            return conn.execute(sql).fetchall()

    def legacy(stored: Positions) -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute(LEGACY_POSTGRES_OFFSETS)
            for (stream, partition), offset in stored.items():
                conn.execute(
                    "INSERT INTO public.cdcflow_offsets (pipeline, sink, stream, partition, "
                    "\"offset\") VALUES ('p', 'contract', %s, %s, %s)",
                    (stream, partition, offset),
                )

    def positions() -> Positions:
        rows = query('SELECT stream, partition, "offset" FROM cdcflow_offsets')
        return {(s, p): int(o) for s, p, o in rows}

    return SinkUnderTest(
        "postgres",
        make,
        lambda: {i: (q, n) for i, q, n in query("SELECT id, qty, note FROM orders")},
        positions,
        _too_big,
        legacy_positions=legacy,
    )


def _clickhouse(request: pytest.FixtureRequest, tmp_path: Path) -> SinkUnderTest:
    from clickhouse_driver import Client

    from cdcflow.io.clickhouse import ClickHouseWriter

    dsn: str = request.getfixturevalue("ch_database")
    db = dsn.rsplit("/", 1)[1]

    def make() -> Writer:
        writer = ClickHouseWriter(name="contract", dsn=dsn, pipeline="p", retry=FAST_RETRY)
        writer.open()
        return writer

    def query(sql: str) -> list[tuple[Any, ...]]:
        client = Client.from_url(dsn)
        try:
            tables = {r[0] for r in client.execute(f"SHOW TABLES FROM {db}")}
            if "orders_current" in sql and "orders_current" not in tables:
                return []
            return list(client.execute(sql))
        finally:
            client.disconnect()

    def positions() -> Positions:
        found: Positions = {}
        for stream, partition, offset in query(
            f"SELECT stream, partition, toString(offset) FROM {db}.cdcflow_offsets"
        ):
            key = (stream, partition)
            found[key] = max(found.get(key, int(offset)), int(offset))  # numeric, not text
        return found

    def legacy(stored: Positions) -> None:
        client = Client.from_url(dsn)
        try:
            client.execute(LEGACY_CLICKHOUSE_OFFSETS.format(db=db))
            client.execute(
                f"INSERT INTO {db}.cdcflow_offsets (pipeline, sink, stream, partition, offset, "
                "updated_at) VALUES",
                [
                    ("p", "contract", s, p, o, dt.datetime(2024, 1, 1))
                    for (s, p), o in stored.items()
                ],
            )
        finally:
            client.disconnect()

    return SinkUnderTest(
        "clickhouse",
        make,
        lambda: {i: (q, n) for i, q, n in query(
            f"SELECT id, qty, note FROM {db}.orders_current")},
        positions,
        _too_big,
        transactional=False,
        legacy_positions=legacy,
        row_offsets_64bit=True,
    )


SINKS = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres, "clickhouse": _clickhouse}
SERVER_SINKS = {"postgres", "clickhouse"}
#: The sinks that had a positions table in an earlier version (the memory double never had).
MIGRATING_SINKS = ("sqlite", "postgres", "clickhouse")


def _params(names: Iterable[str]) -> list[Any]:
    return [
        pytest.param(name, marks=[pytest.mark.integration] if name in SERVER_SINKS else [])
        for name in names
    ]


@pytest.fixture(params=_params(SINKS))
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkUnderTest]:
    """Each sink of the suite in turn."""
    yield SINKS[request.param](request, tmp_path)


@pytest.fixture(params=_params(MIGRATING_SINKS))
def migrating_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkUnderTest]:
    """Each sink whose earlier versions stored positions in a table of their own."""
    made = SINKS[request.param](request, tmp_path)
    assert made.legacy_positions is not None, f"{request.param} needs a legacy_positions hook"
    yield made
