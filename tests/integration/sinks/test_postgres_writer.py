"""PostgreSQL writer semantics against a real server, through the Writer API."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cdcflow.errors import SinkError, TransientSinkError
from cdcflow.io.postgres import PostgresWriter
from cdcflow.io.retry import RetryPolicy
from cdcflow.schemas.model import DeadLetter, TableId
from tests.integration.sinks.events import (
    FAST_RETRY,
    ORDERS,
    batch,
    event,
    note_unsent,
    opening_orders,
    order_row,
)

pytestmark = pytest.mark.integration

UTC = dt.UTC


def writer(dsn: str, **options: Any) -> PostgresWriter:
    options.setdefault("retry", FAST_RETRY)
    w = PostgresWriter(name=options.pop("name", "wh"), dsn=dsn, pipeline="p1", **options)
    w.open()
    return w


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def test_upsert_mirror_with_types_unavailable_columns_and_replay(pg_database: str) -> None:
    w = writer(pg_database)
    try:
        first = opening_orders()
        assert w.write(batch(first)).rejected == []
        second = [
            # note is a TOASTed column the source did not send: keep the stored value
            note_unsent("u", 4, 1, qty=6),
            event("d", 5, 2, before=order_row(2)),
            # delete then re-create inside one batch: the unavailable column starts empty
            event("d", 6, 3, before=order_row(3)),
            note_unsent("c", 7, 3, qty=33),
        ]
        assert w.write(batch(second)).rejected == []
        # replaying both batches (a restart from an older position) changes nothing
        assert w.write(batch(first)).rejected == []
        fresh = writer(pg_database)
        try:
            assert fresh.write(batch(second)).rejected == []
            assert fresh.committed_positions() == {("orders.jsonl", "0"): 7}
        finally:
            fresh.close()
    finally:
        w.close()
    got = rows(pg_database, "SELECT id, qty, note, amount FROM orders ORDER BY id")
    assert got == [(1, 6, "x", Decimal("10.50")), (3, 33, None, Decimal("10.50"))]
    types = dict(
        rows(
            pg_database,
            "SELECT column_name, data_type || coalesce('(' || numeric_precision || ',' || "
            "numeric_scale || ')', '') FROM information_schema.columns "
            "WHERE table_name = 'orders'",
        )
    )
    assert types["id"].startswith("integer")
    assert types["amount"] == "numeric(10,2)"
    assert types["created_at"] == "timestamp without time zone"
    assert types["paid_at"] == "timestamp with time zone"
    assert types["ship_date"] == "date"
    assert types["attrs"] == "jsonb"
    assert types["note"] == "text"
    pk = rows(
        pg_database,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'orders'::regclass AND i.indisprimary",
    )
    assert pk == [("id",)]
    offsets = rows(
        pg_database, 'SELECT pipeline, sink, stream, partition, "offset" FROM cdcflow_offsets'
    )
    assert offsets == [("p1", "wh", "orders.jsonl", "0", 7)]
    stored = rows(pg_database, "SELECT created_at, paid_at, attrs FROM orders WHERE id = 1")[0]
    assert stored[0] == dt.datetime(2024, 1, 15, 10, 30, 0, 123456)
    assert stored[1] == dt.datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
    assert stored[2] == {"gift": True}


def test_truncate_new_columns_table_map_schema_and_filter(pg_database: str) -> None:
    other = TableId("shop", "public", "secrets")
    customers = TableId("shop", "public", "customers")
    w = writer(
        pg_database,
        schema="mirror",
        tables=["shop.public.orders", "shop.public.customers"],
        table_map={"shop.public.customers": "clients"},
        truncate="apply",
    )
    try:
        w.write(
            batch(
                [
                    event("c", 0, 1, after=order_row(1)),
                    event("c", 1, 2, after=order_row(2)),
                    event("c", 2, 9, after={"id": 9, "pw": "x"}, table=other, schema=None),
                    event("c", 3, 1, after={"id": 1, "name": "Ann"}, table=customers, schema=None),
                    event("t", 4, table=ORDERS),
                    event("c", 5, 3, after=order_row(3)),
                ]
            )
        )
        # a column the table does not have yet is added
        w.write(
            batch(
                [
                    event(
                        "u", 6, 3, after={**order_row(3), "discount": Decimal("1.5")}, schema=None
                    ),
                    event(
                        "c",
                        7,
                        2,
                        after={"id": 2, "name": "Bob", "vip": True},
                        table=customers,
                        schema=None,
                    ),
                ]
            )
        )
    finally:
        w.close()
    assert rows(pg_database, "SELECT id, discount FROM mirror.orders") == [(3, Decimal("1.5"))]
    assert rows(pg_database, "SELECT id, name, vip FROM mirror.clients ORDER BY id") == [
        (1, "Ann", None),
        (2, "Bob", True),
    ]
    assert rows(pg_database, "SELECT to_regclass('mirror.secrets')") == [(None,)]
    ignoring = writer(pg_database, schema="mirror", truncate="ignore", name="other")
    try:
        ignoring.write(batch([event("t", 8)]))
    finally:
        ignoring.close()
    assert rows(pg_database, "SELECT count(*) FROM mirror.orders") == [(1,)]


def test_rejected_rows_go_to_dead_letters_and_the_rest_commits(pg_database: str) -> None:
    w = writer(pg_database)
    letters: list[DeadLetter] = []
    try:
        w.write(batch([event("c", 0, 1, after=order_row(1))]))
        result = w.write(
            batch(
                [
                    event("c", 1, 2, after=order_row(2)),
                    event("c", 2, 3, after=order_row(3, qty=2**40)),  # out of range for integer
                    event("c", 3, 4, after=order_row(4, ship_date="not a date")),  # type mismatch
                    event("u", 4, 1, after=order_row(1, qty=7)),
                    event("c", 5, 5, after=None),  # no row image
                ]
            ),
            reject=letters.extend,
        ).rejected
    finally:
        w.close()
    assert result == letters  # listed in the result and handed to reject
    assert sorted(letter.position.offset for letter in letters if letter.position) == [2, 3, 5]
    reasons = {letter.position.offset: letter.reason for letter in letters if letter.position}
    assert "out of range" in reasons[2]
    assert "date" in reasons[3]
    assert all(letter.step == "sink:wh" and letter.event is not None for letter in letters)
    assert rows(pg_database, "SELECT id, qty FROM orders ORDER BY id") == [(1, 7), (2, 2)]
    assert rows(pg_database, 'SELECT "offset" FROM cdcflow_offsets') == [(5,)]


def test_append_mode_keeps_every_event_once(pg_database: str) -> None:
    w = writer(pg_database, mode="append", table_map={"shop.public.orders": "orders_history"})
    events = [
        event("c", 0, 1, after=order_row(1)),
        event("u", 1, 1, after=order_row(1, qty=2)),
        event("d", 2, 1, before=order_row(1, qty=2)),
        event("t", 3),
    ]
    try:
        w.write(batch(events[:2]))
        w.write(batch(events))  # overlaps: the first two are skipped
        w.write(batch(events))
    finally:
        w.close()
    got = rows(
        pg_database,
        "SELECT _cdc_op, _cdc_offset, id, qty, _cdc_source_ts FROM orders_history "
        "ORDER BY _cdc_offset",
    )
    ts = dt.datetime.fromtimestamp(1_700_000_000, UTC)
    assert got == [
        ("c", 0, 1, 1, ts),
        ("u", 1, 1, 2, ts),
        ("d", 2, 1, 2, ts),
        ("t", 3, None, None, ts),
    ]


def test_timescaledb_mode_without_extension_is_a_clear_error(pg_database: str) -> None:
    w = PostgresWriter(name="ts", dsn=pg_database, pipeline="p1", mode="timescaledb")
    problems = w.check()
    assert len(problems) == 1
    assert "TimescaleDB extension" in problems[0] and "mode: append" in problems[0]
    with pytest.raises(SinkError, match="TimescaleDB extension"):
        w.open()
    w.close()


class _StubTimescale(PostgresWriter):
    """Pretends the extension is installed; the test database has a stand-in create_hypertable."""

    def _timescale_status(self, conn: Any) -> str:
        return "installed"


def test_timescaledb_mode_creates_a_hypertable_on_the_source_timestamp(pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE hypertables (relation text, time_column text)")
        conn.execute(
            "CREATE FUNCTION create_hypertable(relation regclass, time_column_name name, "
            "if_not_exists boolean DEFAULT false) RETURNS void LANGUAGE sql AS "
            "$$ INSERT INTO hypertables VALUES (relation::text, time_column_name::text) $$"
        )
    w = _StubTimescale(name="ts", dsn=pg_database, pipeline="p1", mode="timescaledb")
    letters: list[DeadLetter] = []
    try:
        w.open()
        w.write(
            batch(
                [
                    event("c", 0, 1, after=order_row(1)),
                    event("c", 1, 2, after=order_row(2), ts_ms=None),
                ]
            ),
            reject=letters.extend,
        )
    finally:
        w.close()
    assert rows(pg_database, "SELECT * FROM hypertables") == [("orders", "_cdc_source_ts")]
    assert rows(pg_database, "SELECT id FROM orders") == [(1,)]
    assert [letter.position.offset for letter in letters if letter.position] == [1]
    assert "source timestamp" in letters[0].reason
    nullable = rows(
        pg_database,
        "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'orders' "
        "AND column_name = '_cdc_source_ts'",
    )
    assert nullable == [("NO",)]


def test_lost_connection_is_retried(pg_database: str) -> None:
    w = writer(pg_database, retry=RetryPolicy(max_attempts=5, initial_backoff_s=0.05))
    try:
        w.write(batch([event("c", 0, 1, after=order_row(1))]))
        with psycopg.connect(pg_database, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'cdcflow:p1:wh%%'"
            ).fetchall()
        assert killed == [(True,)]
        w.write(batch([event("c", 1, 2, after=order_row(2))]))
    finally:
        w.close()
    assert rows(pg_database, "SELECT id FROM orders ORDER BY id") == [(1,), (2,)]
    assert rows(pg_database, 'SELECT "offset" FROM cdcflow_offsets') == [(1,)]


def test_persistent_transient_failure_gives_up_with_nothing_committed(pg_database: str) -> None:
    w = writer(
        pg_database + "?options=-c%20lock_timeout%3D200",
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01),
    )
    holding = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(pg_database) as conn:
            conn.execute("SELECT * FROM cdcflow_offsets FOR UPDATE")
            holding.set()
            release.wait(30)

    try:
        w.write(batch([event("c", 0, 1, after=order_row(1))]))
        locker = threading.Thread(target=hold_lock)
        locker.start()
        assert holding.wait(10)
        try:
            with pytest.raises(TransientSinkError, match="giving up after 3 attempts"):
                w.write(batch([event("c", 1, 2, after=order_row(2))]))
        finally:
            release.set()
            locker.join()
        assert rows(pg_database, "SELECT id FROM orders") == [(1,)]
        assert rows(pg_database, 'SELECT "offset" FROM cdcflow_offsets') == [(0,)]
        w.write(batch([event("c", 1, 2, after=order_row(2))]))  # works once the lock is gone
    finally:
        w.close()
    assert rows(pg_database, "SELECT id FROM orders ORDER BY id") == [(1,), (2,)]
