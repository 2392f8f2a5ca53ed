"""``Writer.stored_positions`` (what ``cdcflow status`` reads) against the real servers: it
reads the positions a writer stored and creates nothing where nothing was written."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from clickhouse_driver import Client

from cdcflow.io.clickhouse import ClickHouseWriter
from cdcflow.io.postgres import PostgresWriter
from cdcflow.io.sqlite import SqliteWriter
from tests.integration.sinks.events import FAST_RETRY, batch, opening_orders

pytestmark = pytest.mark.integration


def test_postgres_stored_positions(pg_database: str) -> None:
    def writer(name: str = "pg") -> PostgresWriter:
        return PostgresWriter(name=name, dsn=pg_database, pipeline="p1", schema="mirror",
                              retry=FAST_RETRY)

    assert writer().stored_positions() == {}
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT to_regnamespace('mirror')").fetchone() == (None,)
    w = writer()
    w.open()
    try:
        w.write(batch(opening_orders()))
    finally:
        w.close()
    assert writer().stored_positions() == {("orders.jsonl", "0"): 3}
    assert writer("other").stored_positions() == {}  # positions are per sink


def test_clickhouse_stored_positions(ch_database: str) -> None:
    database = ch_database.rsplit("/", 1)[1]

    def writer(name: str = "ch") -> ClickHouseWriter:
        return ClickHouseWriter(name=name, dsn=ch_database, pipeline="p1", retry=FAST_RETRY)

    def tables() -> list[str]:
        client = Client.from_url(ch_database)
        try:
            rows = client.execute(
                "SELECT name FROM system.tables WHERE database = %(db)s", {"db": database}
            )
            return [row[0] for row in rows]
        finally:
            client.disconnect()

    assert writer().stored_positions() == {}
    assert "cdcflow_offsets" not in tables()
    w = writer()
    w.open()
    try:
        w.write(batch(opening_orders()))
    finally:
        w.close()
    assert writer().stored_positions() == {("orders.jsonl", "0"): 3}
    assert writer("other").stored_positions() == {}


def test_sqlite_stored_positions(tmp_path: Path) -> None:
    path = tmp_path / "out" / "mirror.sqlite"
    assert SqliteWriter(name="m", path=path, pipeline="p1").stored_positions() == {}
    assert not path.parent.exists()
    w = SqliteWriter(name="m", path=path, pipeline="p1")
    w.open()
    try:
        w.write(batch(opening_orders()))
    finally:
        w.close()
    assert SqliteWriter(name="m", path=path, pipeline="p1").stored_positions() == {
        ("orders.jsonl", "0"): 3
    }
    assert SqliteWriter(name="m", path=path, pipeline="p2").stored_positions() == {}
