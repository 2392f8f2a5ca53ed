"""ClickHouse writer semantics against a real server (Debian's 18.16), through the Writer API."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_driver import Client

from cdcflow.errors import TransientSinkError
from cdcflow.io.clickhouse import ClickHouseWriter
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
from tests.servers.clickhouse import ClickHouseServer

pytestmark = pytest.mark.integration


def _writer(dsn: str, **options: Any) -> ClickHouseWriter:
    options.setdefault("retry", FAST_RETRY)
    w = ClickHouseWriter(name=options.pop("name", "ch"), dsn=dsn, pipeline="p1", **options)
    w.open()
    return w


def _query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    client = Client.from_url(dsn)
    try:
        return list(client.execute(sql))
    finally:
        client.disconnect()


def test_replacing_merge_tree_mirror_with_view_unavailable_columns_and_replay(
    ch_database: str,
) -> None:
    db = ch_database.rsplit("/", 1)[1]
    w = _writer(ch_database)
    first = opening_orders()
    second = [
        note_unsent("u", 4, 1, qty=6),
        event("d", 5, 2, before=order_row(2)),
        event("d", 6, 3, before=order_row(3)),
        note_unsent("c", 7, 3, qty=33),
        note_unsent("u", 8, 3, qty=34),
    ]
    try:
        assert w.write(batch(first)).rejected == []
        assert w.write(batch(second)).rejected == []
        assert w.write(batch(first)).rejected == []  # skipped: at or below the stored position
    finally:
        w.close()
    # a fresh writer (a restart) replays the second batch: same versions, same result
    again = ClickHouseWriter(name="ch", dsn=ch_database, pipeline="p1")
    again.open()
    try:
        assert again.committed_positions() == {("orders.jsonl", "0"): 8}
        again._positions.clear()  # force the replay
        again.write(batch(second))
    finally:
        again.close()
    current = _query(
        ch_database, f"SELECT id, qty, note, amount, _version FROM {db}.orders_current ORDER BY id"
    )
    assert current == [(1, 6, "x", Decimal("10.50"), 4), (3, 34, None, Decimal("10.50"), 8)]
    deleted = _query(ch_database, f"SELECT id, _deleted FROM {db}.orders FINAL WHERE id = 2")
    assert deleted == [(2, 1)]
    types = dict(
        _query(
            ch_database,
            f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'orders'",
        )
    )
    assert types["id"] == "Int32"
    assert types["amount"] == "Nullable(Decimal(10, 2))"
    assert types["created_at"] in ("Nullable(DateTime('UTC'))", "Nullable(DateTime64(6, 'UTC'))")
    assert types["ship_date"] in ("Nullable(String)", "Nullable(Date32)")  # 18.16: ISO text
    assert types["_version"] == "UInt64" and types["_deleted"] == "UInt8"
    engine = _query(
        ch_database,
        f"SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = 'orders'",
    )
    assert "ReplacingMergeTree(_version)" in engine[0][0] and "ORDER BY id" in engine[0][0]
    stored = _query(
        ch_database, f"SELECT created_at, paid_at, ship_date FROM {db}.orders_current WHERE id = 1"
    )
    assert stored[0][0].replace(microsecond=0, tzinfo=None) == dt.datetime(2024, 1, 15, 10, 30)
    assert stored[0][2] in ("2024-02-01", dt.date(2024, 2, 1))
    offsets = _query(
        ch_database,
        f"SELECT sink, stream, partition, max(toUInt64(offset)) FROM {db}.cdcflow_offsets "
        "GROUP BY sink, stream, partition",
    )
    assert offsets == [("ch", "orders.jsonl", "0", 8)]


def test_truncate_new_columns_table_map_and_filter(ch_database: str) -> None:
    db = ch_database.rsplit("/", 1)[1]
    customers = TableId("shop", "public", "customers")
    w = _writer(
        ch_database,
        tables=["shop.public.orders", "shop.public.customers"],
        table_map={"shop.public.customers": "clients"},
    )
    try:
        w.write(
            batch(
                [
                    event("c", 0, 1, after=order_row(1)),
                    event("c", 1, 2, after=order_row(2)),
                    event(
                        "c", 2, 9, after={"id": 9}, table=TableId("x", "y", "secret"), schema=None
                    ),
                    event("c", 3, 1, after={"id": 1, "name": "Ann"}, table=customers, schema=None),
                    event("t", 4),
                    event("c", 5, 3, after=order_row(3)),
                ]
            )
        )
        w.write(
            batch(
                [
                    event(
                        "c",
                        6,
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
    assert _query(ch_database, f"SELECT id FROM {db}.orders_current") == [(3,)]
    assert _query(ch_database, f"SELECT id, name, vip FROM {db}.clients_current ORDER BY id") == [
        (1, "Ann", None),
        (2, "Bob", 1),
    ]
    assert _query(ch_database, f"EXISTS TABLE {db}.secret") == [(0,)]


def test_rows_that_do_not_fit_become_dead_letters(ch_database: str) -> None:
    db = ch_database.rsplit("/", 1)[1]
    w = _writer(ch_database)
    letters: list[DeadLetter] = []
    try:
        w.write(batch([event("c", 0, 1, after=order_row(1))]))
        w.write(
            batch(
                [
                    event("c", 1, 2, after=order_row(2, qty=2**40)),  # out of range for Int32
                    # too old for DateTime
                    event("c", 2, 3, after=order_row(3, paid_at=dt.datetime(1850, 1, 1))),
                    # more digits than Decimal(10, 2)
                    event("c", 3, 4, after=order_row(4, amount=Decimal("123456789.00"))),
                    event("c", 4, 5, after=order_row(5, qty="many")),  # type mismatch
                    event("u", 5, 1, after=order_row(1, qty=7)),
                ]
            ),
            reject=letters.extend,
        )
    finally:
        w.close()
    assert [letter.position.offset for letter in letters if letter.position] == [1, 2, 3, 4]
    reasons = [letter.reason for letter in letters]
    assert "column 'qty'" in reasons[0] and "out of range" in reasons[0]
    assert "column 'paid_at'" in reasons[1] and "out of range" in reasons[1]
    assert "column 'amount'" in reasons[2]
    assert "column 'qty'" in reasons[3] and "integer" in reasons[3]
    assert _query(ch_database, f"SELECT id, qty FROM {db}.orders_current ORDER BY id") == [(1, 7)]


def test_server_restart_is_retried_and_a_dead_server_gives_up(
    clickhouse_server: ClickHouseServer, ch_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = ch_database.rsplit("/", 1)[1]
    w = _writer(
        ch_database, retry=RetryPolicy(max_attempts=40, initial_backoff_s=0.1, max_backoff_s=0.5)
    )
    try:
        w.write(batch([event("c", 0, 1, after=order_row(1))]))
        clickhouse_server.kill()
        restart = threading.Timer(1.0, clickhouse_server.start)
        restart.start()  # the server is down for a second: the write retries until it is back
        with caplog.at_level(logging.WARNING, logger="cdcflow.io.retry"):
            w.write(batch([event("c", 1, 2, after=order_row(2))]))
        restart.join()
    finally:
        w.close()
    assert "transient failure (attempt 1 of 40)" in caplog.text
    assert _query(ch_database, f"SELECT id FROM {db}.orders_current ORDER BY id") == [(1,), (2,)]
    gone = ClickHouseWriter(
        name="ch",
        dsn="clickhouse://default@127.0.0.1:1/x",
        pipeline="p1",
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01),
    )
    with pytest.raises(TransientSinkError, match="giving up after 2 attempts"):
        gone.open()
    assert gone.check()[0].startswith("sink 'ch': cannot reach ClickHouse at 127.0.0.1:1/x")
    assert ORDERS.table == "orders"
