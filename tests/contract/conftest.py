"""One fixture per sink for the writer contract suite.

A sink joins the suite by adding a ``_<name>`` factory below and its name to ``SINKS``: the
factory returns a :class:`SinkUnderTest` that builds opened writers on one fresh destination
and reads back its rows and stored positions through its own client (not the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
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

    return SinkUnderTest(
        "sqlite",
        make,
        lambda: {i: (q, n) for i, q, n in query("SELECT id, qty, note FROM orders")},
        lambda: {(s, p): o for s, p, o in query(
            'SELECT stream, partition, "offset" FROM cdcflow_offsets')},
        _keyless,
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

    return SinkUnderTest(
        "postgres",
        make,
        lambda: {i: (q, n) for i, q, n in query("SELECT id, qty, note FROM orders")},
        lambda: {(s, p): o for s, p, o in query(
            'SELECT stream, partition, "offset" FROM cdcflow_offsets')},
        _too_big,
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

    return SinkUnderTest(
        "clickhouse",
        make,
        lambda: {i: (q, n) for i, q, n in query(
            f"SELECT id, qty, note FROM {db}.orders_current")},
        lambda: {(s, p): o for s, p, o in query(
            f"SELECT stream, partition, max(offset) FROM {db}.cdcflow_offsets "
            "GROUP BY stream, partition")},
        _too_big,
        transactional=False,
    )


SINKS = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres, "clickhouse": _clickhouse}
SERVER_SINKS = {"postgres", "clickhouse"}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.integration] if name in SERVER_SINKS else [])
        for name in SINKS
    ]
)
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SinkUnderTest]:
    """Each sink of the suite in turn."""
    yield SINKS[request.param](request, tmp_path)
