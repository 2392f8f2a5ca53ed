"""The PostgreSQL writer's position guard and one-column deletes, against a real server.

The position is written by the first statement of a batch's transaction, on condition that
the stored one is the one the writer cached (``cdcflow.io.postgres``); these tests pin that a
second writer of the same partition, a commit whose acknowledgement was lost and a reset of
the positions table still apply every event exactly once.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import msgspec
import psycopg
import pytest

from cdcflow.io.postgres import PostgresWriter
from cdcflow.schemas.model import TableId
from tests.integration.sinks.events import FAST_RETRY, batch, event, order_row

pytestmark = pytest.mark.integration


def writer(dsn: str, **options: Any) -> PostgresWriter:
    options.setdefault("retry", FAST_RETRY)
    w = PostgresWriter(name="wh", dsn=dsn, pipeline="p1", **options)
    w.open()
    return w


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


HISTORY = {"shop.public.orders": "orders_history"}


def test_a_second_writer_moving_the_position_is_not_applied_twice(pg_database: str) -> None:
    events = [event("c", n, n + 1, after=order_row(n + 1)) for n in range(4)]
    first = writer(pg_database, mode="append", table_map=HISTORY)
    second = writer(pg_database, mode="append", table_map=HISTORY)
    try:
        assert first.committed_positions() == {}
        second.write(batch(events[:2]))  # first's cached position (none) is now stale
        first.write(batch(events))
        first.write(batch(events))  # a plain replay
    finally:
        first.close()
        second.close()
    got = rows(pg_database, "SELECT _cdc_offset FROM orders_history ORDER BY _cdc_offset")
    assert got == [(0,), (1,), (2,), (3,)]
    assert rows(pg_database, 'SELECT "offset" FROM cdcflow_offsets') == [(3,)]


def test_a_writer_waits_for_a_concurrent_commit_of_the_position(pg_database: str) -> None:
    events = [event("c", n, n + 1, after=order_row(n + 1)) for n in range(3)]
    w = writer(pg_database, mode="append", table_map=HISTORY)
    w.write(batch(events[:1]))
    failures: list[BaseException] = []

    def write_all() -> None:
        try:
            w.write(batch(events))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    # Another session moves the position to 1 (with its row) in an open transaction, as a
    # second writer does: the writer must wait for it, then apply only offset 2.
    with psycopg.connect(pg_database) as other, psycopg.connect(pg_database) as watch:
        watch.autocommit = True
        other.execute('UPDATE cdcflow_offsets SET "offset" = 1')
        other.execute(
            "INSERT INTO orders_history (_cdc_op, _cdc_stream, _cdc_partition, _cdc_offset, id) "
            "VALUES ('c', 'orders.jsonl', '0', 1, 2)"
        )
        thread = threading.Thread(target=write_all)
        thread.start()
        waiting: list[Any] = []
        for _ in range(1000):
            waiting = watch.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'cdcflow:p1:wh' "
                "AND wait_event_type = 'Lock'"
            ).fetchall()
            if waiting:
                break
            threading.Event().wait(0.01)
        assert waiting, "the writer did not wait for the position row's lock"
        other.commit()
    thread.join(30)
    w.close()
    assert failures == []
    got = rows(pg_database, "SELECT _cdc_offset FROM orders_history ORDER BY _cdc_offset")
    assert got == [(0,), (1,), (2,)]
    assert rows(pg_database, 'SELECT "offset" FROM cdcflow_offsets') == [(2,)]


def test_a_lost_commit_acknowledgement_is_not_applied_twice(pg_database: str) -> None:
    events = [event("c", n, n + 1, after=order_row(n + 1)) for n in range(3)]
    w = writer(pg_database, mode="append", table_map=HISTORY)
    try:
        w.write(batch(events))
        w._positions.clear()  # as if the commit went through but the writer never heard
        w.write(batch(events))
        assert w.committed_positions() == {("orders.jsonl", "0"): 2}
    finally:
        w.close()
    got = rows(pg_database, "SELECT _cdc_offset FROM orders_history ORDER BY _cdc_offset")
    assert got == [(0,), (1,), (2,)]


def test_a_reset_positions_table_applies_the_batch_again(pg_database: str) -> None:
    w = writer(pg_database)
    try:
        w.write(batch([event("c", 0, 1, after=order_row(1, qty=1))]))
        with psycopg.connect(pg_database) as admin:
            admin.execute("DELETE FROM cdcflow_offsets")
            admin.execute("DELETE FROM orders")
        w.write(
            batch(
                [event("c", 0, 1, after=order_row(1, qty=1)), event("c", 1, 2, after=order_row(2))]
            )
        )
    finally:
        w.close()
    assert rows(pg_database, "SELECT id, qty FROM orders ORDER BY id") == [(1, 1), (2, 2)]
    assert rows(pg_database, 'SELECT "offset" FROM cdcflow_offsets') == [(1,)]


@pytest.mark.parametrize(
    ("sql_type", "keys"),
    [
        ("integer", [1, 2, 3]),
        ("text", ["a", "b'c", 'd"e']),
        ("uuid", [str(uuid.UUID(int=n)) for n in (1, 2, 3)]),  # as Debezium sends them
        ("character varying(8)", ["x", "y", "z"]),
    ],
)
def test_one_column_deletes(pg_database: str, sql_type: str, keys: list[Any]) -> None:
    table = TableId("shop", "public", "things")
    with psycopg.connect(pg_database) as admin:
        admin.execute(f"CREATE TABLE things (k {sql_type} PRIMARY KEY, v text)")

    def change(op: str, offset: int, key: Any, **kw: Any) -> Any:
        e = event(op, offset, None, table=table, schema=None, **kw)
        return msgspec.structs.replace(e, key={"k": key})

    w = writer(pg_database)
    try:
        creates = [change("c", n, k, after={"k": k, "v": str(n)}) for n, k in enumerate(keys)]
        assert w.write(batch(creates)).rejected == []
        deleted = w.write(
            batch(
                [
                    change("d", 10, keys[0], before={"k": keys[0], "v": "0"}),
                    change("d", 11, keys[2], before={"k": keys[2]}),
                    change("d", 12, keys[2], before={"k": keys[2]}),  # twice in one batch
                ]
            )
        ).rejected
        assert deleted == []
    finally:
        w.close()
    assert rows(pg_database, "SELECT k::text, v FROM things") == [(str(keys[1]), "1")]
