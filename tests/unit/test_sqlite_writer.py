"""The SQLite mirror sink: upserts, deletes, TOAST columns, schema handling, exactly-once."""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdcflow.core.components import BuildContext
from cdcflow.errors import SinkError
from cdcflow.io.sqlite import SqliteSinkConfig, SqliteWriter, sqlite_value
from cdcflow.schemas.model import (
    ChangeEvent,
    Column,
    DeadLetter,
    EventBatch,
    Op,
    Position,
    TableId,
    TableSchema,
)
from tests.console import sqlite_dump, sqlite_rows

ORDERS = TableId("shop", "public", "orders")
ARTICLES = TableId("shop", "public", "articles")


def ev(
    op: str,
    offset: int,
    *,
    table: TableId = ORDERS,
    key: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    unavailable: tuple[str, ...] = (),
    schema: TableSchema | None = None,
    stream: str = "topic",
) -> ChangeEvent:
    if key is None:
        row = after if after is not None else before
        key = {"id": row["id"]} if row is not None and "id" in row else None
    return ChangeEvent(
        op=Op(op),
        table=table,
        position=Position(stream, 0, offset),
        key=key,
        before=before,
        after=after,
        unavailable=unavailable,
        schema=schema,
    )


def batch(*events: ChangeEvent, last: int | None = None, stream: str = "topic") -> EventBatch:
    last_offset = last if last is not None else max(e.position.offset for e in events)
    return EventBatch(stream=stream, partition=0, last_offset=last_offset, events=list(events))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "out" / "mirror.sqlite"


@pytest.fixture
def writer(db: Path):
    w = SqliteWriter(name="mirror", path=db, pipeline="shop")
    w.open()
    yield w
    w.close()


def rows(db: Path, table: str, order: str = "id") -> list[dict[str, Any]]:
    return sqlite_rows(db, table, order)


def columns(db: Path, table: str) -> dict[str, tuple[str, int]]:
    """Column name -> (declared type, primary-key position)."""
    with closing(sqlite3.connect(db)) as conn:
        return {r[1]: (r[2], r[5]) for r in conn.execute(f'PRAGMA table_info("{table}")')}


# -- upserts and deletes ---------------------------------------------------------------------


def test_create_update_read_upsert(writer: SqliteWriter, db: Path) -> None:
    dead = writer.write(
        batch(
            ev("c", 0, after={"id": 1, "status": "placed", "total": Decimal("9.90")}),
            ev("r", 1, after={"id": 2, "status": "placed", "total": Decimal("5.00")}),
            ev("u", 2, after={"id": 1, "status": "shipped", "total": Decimal("9.90")}),
            ev("r", 3, after={"id": 2, "status": "cancelled", "total": Decimal("5.00")}),
            ev("c", 4, after={"id": 1, "status": "delivered", "total": Decimal("9.90")}),
        )
    ).rejected
    assert dead == []
    assert rows(db, "orders") == [
        {"id": 1, "status": "delivered", "total": "9.90"},
        {"id": 2, "status": "cancelled", "total": "5.00"},
    ]


def test_delete_removes_the_row(writer: SqliteWriter, db: Path) -> None:
    writer.write(
        batch(ev("c", 0, after={"id": 1, "s": "a"}), ev("c", 1, after={"id": 2, "s": "b"}))
    )
    writer.write(batch(ev("d", 2, before={"id": 1, "s": "a"})))
    assert rows(db, "orders") == [{"id": 2, "s": "b"}]


def test_delete_with_key_only(writer: SqliteWriter, db: Path) -> None:
    """MongoDB and unwrapped deletes carry the key but no row image."""
    writer.write(
        batch(ev("c", 0, after={"id": 1, "s": "a"}), ev("c", 1, after={"id": 2, "s": "b"}))
    )
    dead = writer.write(batch(ev("d", 2, key={"id": 2}, before=None))).rejected
    assert dead == []
    assert rows(db, "orders") == [{"id": 1, "s": "a"}]


def test_delete_of_unknown_table_creates_nothing(writer: SqliteWriter, db: Path) -> None:
    dead = writer.write(batch(ev("d", 0, before={"id": 1, "s": "a"}))).rejected
    assert dead == []
    assert columns(db, "orders") == {}
    assert writer.committed_positions() == {("topic", "0"): 0}


def test_delete_then_recreate(writer: SqliteWriter, db: Path) -> None:
    writer.write(
        batch(
            ev("c", 0, after={"id": 1, "s": "a"}),
            ev("d", 1, before={"id": 1, "s": "a"}),
            ev("c", 2, after={"id": 1, "s": "again"}),
        )
    )
    assert rows(db, "orders") == [{"id": 1, "s": "again"}]


def test_composite_key(writer: SqliteWriter, db: Path) -> None:
    lines = TableId("shop", "public", "order_lines")

    def line(op: str, offset: int, number: int, q: int) -> ChangeEvent:
        """An event of line ``number`` of order 1 (the row image in ``before`` for deletes)."""
        key = {"order_id": 1, "line": number}
        image = {**key, "q": q}
        if op == "d":
            return ev(op, offset, table=lines, key=key, before=image)
        return ev(op, offset, table=lines, key=key, after=image)

    writer.write(
        batch(
            line("c", 0, 1, q=2), line("c", 1, 2, q=1), line("u", 2, 1, q=5), line("d", 3, 2, q=1)
        )
    )
    assert columns(db, "order_lines")["order_id"][1] == 1
    assert columns(db, "order_lines")["line"][1] == 2
    assert rows(db, "order_lines", "order_id, line") == [{"order_id": 1, "line": 1, "q": 5}]


# -- unavailable (TOAST) columns -------------------------------------------------------------


def test_unavailable_columns_keep_the_stored_value(writer: SqliteWriter, db: Path) -> None:
    body = "long text " * 500
    writer.write(batch(ev("c", 0, table=ARTICLES, after={"id": 5, "title": "T", "body": body})))
    writer.write(
        batch(
            ev(
                "u",
                1,
                table=ARTICLES,
                after={"id": 5, "title": "T2", "published": True},
                unavailable=("body",),
            )
        )
    )
    assert rows(db, "articles") == [{"id": 5, "title": "T2", "body": body, "published": 1}]


def test_unavailable_column_of_a_new_row_is_null(writer: SqliteWriter, db: Path) -> None:
    writer.write(batch(ev("c", 0, table=ARTICLES, after={"id": 1, "title": "a", "body": "x"})))
    writer.write(
        batch(ev("u", 1, table=ARTICLES, after={"id": 2, "title": "b"}, unavailable=("body",)))
    )
    assert rows(db, "articles") == [
        {"id": 1, "title": "a", "body": "x"},
        {"id": 2, "title": "b", "body": None},
    ]


def test_key_only_upsert_does_nothing_on_conflict(writer: SqliteWriter, db: Path) -> None:
    lines = TableId(table="tags")
    writer.write(batch(ev("c", 0, table=lines, key={"id": 1}, after={"id": 1})))
    writer.write(batch(ev("r", 1, table=lines, key={"id": 1}, after={"id": 1})))
    assert rows(db, "tags") == [{"id": 1}]


# -- truncate --------------------------------------------------------------------------------


def test_truncate_apply_deletes_every_row(writer: SqliteWriter, db: Path) -> None:
    writer.write(batch(ev("c", 0, after={"id": 1}), ev("c", 1, after={"id": 2})))
    writer.write(batch(ev("c", 2, table=ARTICLES, after={"id": 9})))
    writer.write(batch(ChangeEvent(op=Op.TRUNCATE, table=ORDERS, position=Position("topic", 0, 3))))
    assert rows(db, "orders") == []
    assert rows(db, "articles") == [{"id": 9}], "only the truncated table is emptied"


def test_truncate_ignore_keeps_rows(db: Path) -> None:
    writer = SqliteWriter(name="mirror", path=db, pipeline="shop", truncate="ignore")
    writer.write(batch(ev("c", 0, after={"id": 1})))
    writer.write(batch(ChangeEvent(op=Op.TRUNCATE, table=ORDERS, position=Position("topic", 0, 1))))
    writer.close()
    assert rows(db, "orders") == [{"id": 1}]


def test_truncate_of_unknown_table_is_a_no_op(writer: SqliteWriter, db: Path) -> None:
    dead = writer.write(
        batch(ChangeEvent(op=Op.TRUNCATE, table=ORDERS, position=Position("topic", 0, 0)))
    ).rejected
    assert dead == []
    assert columns(db, "orders") == {}
    assert writer.committed_positions() == {("topic", "0"): 0}


# -- tables and columns ----------------------------------------------------------------------


def test_table_created_from_schema(writer: SqliteWriter, db: Path) -> None:
    schema = TableSchema(
        name="shop.public.orders.Value",
        fingerprint="f1",
        columns=(
            Column(name="id", type="int32", optional=False),
            Column(name="total", type="bytes", logical="org.apache.kafka.connect.data.Decimal"),
            Column(name="placed_at", type="int64", logical="io.debezium.time.MicroTimestamp"),
            Column(name="paid", type="boolean"),
            Column(name="weight", type="float64"),
            Column(name="blob", type="bytes"),
            Column(name="note", type="string"),
            Column(name="coupon", type="string"),
        ),
        key_columns=("id",),
    )
    writer.write(
        batch(
            ev(
                "c",
                0,
                key={"id": 1},
                after={
                    "id": 1,
                    "total": Decimal("10.20"),
                    "placed_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
                    "paid": False,
                    "weight": 1.5,
                    "blob": b"\x00\x01",
                    "note": "hi",
                },
                schema=schema,
            )
        )
    )
    assert columns(db, "orders") == {
        "id": ("INTEGER", 1),
        "total": ("TEXT", 0),
        "placed_at": ("TEXT", 0),
        "paid": ("INTEGER", 0),
        "weight": ("REAL", 0),
        "blob": ("BLOB", 0),
        "note": ("TEXT", 0),
        "coupon": ("TEXT", 0),
    }
    assert rows(db, "orders") == [
        {
            "id": 1,
            "total": "10.20",
            "placed_at": "2024-01-15T10:30:00.123456",
            "paid": 0,
            "weight": 1.5,
            "blob": b"\x00\x01",
            "note": "hi",
            "coupon": None,
        }
    ]


def test_table_created_from_values(writer: SqliteWriter, db: Path) -> None:
    writer.write(
        batch(
            ev(
                "c",
                0,
                after={
                    "id": 7,
                    "flag": True,
                    "ratio": 0.25,
                    "data": b"\xff",
                    "name": "x",
                    "price": Decimal("1.10"),
                    "day": dt.date(2024, 2, 29),
                    "at": dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC),
                    "tags": ["a", "b"],
                    "attrs": {"k": 1},
                    "missing": None,
                },
            )
        )
    )
    assert columns(db, "orders") == {
        "id": ("INTEGER", 1),
        "flag": ("INTEGER", 0),
        "ratio": ("REAL", 0),
        "data": ("BLOB", 0),
        "name": ("TEXT", 0),
        "price": ("TEXT", 0),
        "day": ("TEXT", 0),
        "at": ("TEXT", 0),
        "tags": ("TEXT", 0),
        "attrs": ("TEXT", 0),
        "missing": ("TEXT", 0),
    }
    assert rows(db, "orders") == [
        {
            "id": 7,
            "flag": 1,
            "ratio": 0.25,
            "data": b"\xff",
            "name": "x",
            "price": "1.10",
            "day": "2024-02-29",
            "at": "2024-01-01T12:00:00Z",
            "tags": '["a","b"]',
            "attrs": '{"k":1}',
            "missing": None,
        }
    ]


def test_primary_key_from_schema_key_columns_when_message_has_no_key(
    writer: SqliteWriter, db: Path
) -> None:
    schema = TableSchema(
        name=None,
        fingerprint="f",
        columns=(Column(name="code", type="string"), Column(name="v", type="int32")),
        key_columns=("code",),
    )
    event = ChangeEvent(
        op=Op.CREATE,
        table=ORDERS,
        position=Position("topic", 0, 0),
        key=None,
        after={"code": "A", "v": 1},
        schema=schema,
    )
    assert writer.write(batch(event)).rejected == []
    assert columns(db, "orders")["code"] == ("TEXT", 1)


def test_new_column_is_added(writer: SqliteWriter, db: Path) -> None:
    writer.write(batch(ev("c", 0, after={"id": 1, "s": "a"})))
    writer.write(batch(ev("c", 1, after={"id": 2, "s": "b", "note": "new", "qty": 3})))
    assert list(columns(db, "orders")) == ["id", "s", "note", "qty"]
    assert columns(db, "orders")["qty"] == ("INTEGER", 0)
    assert rows(db, "orders") == [
        {"id": 1, "s": "a", "note": None, "qty": None},
        {"id": 2, "s": "b", "note": "new", "qty": 3},
    ]


def test_new_column_in_the_middle_of_a_batch(writer: SqliteWriter, db: Path) -> None:
    writer.write(
        batch(
            ev("c", 0, after={"id": 1, "s": "a"}),
            ev("c", 1, after={"id": 2, "s": "b"}),
            ev("u", 2, after={"id": 1, "s": "a", "extra": 1.5}),
            ev("c", 3, after={"id": 3, "s": "c"}),
        )
    )
    assert rows(db, "orders") == [
        {"id": 1, "s": "a", "extra": 1.5},
        {"id": 2, "s": "b", "extra": None},
        {"id": 3, "s": "c", "extra": None},
    ]


def test_existing_table_is_reused_after_reopen(db: Path) -> None:
    first = SqliteWriter(name="mirror", path=db, pipeline="shop")
    first.write(batch(ev("c", 0, after={"id": 1, "s": "a"})))
    first.close()
    second = SqliteWriter(name="mirror", path=db, pipeline="shop")
    second.open()
    assert second.write(batch(ev("u", 1, after={"id": 1, "s": "b", "n": 2}))).rejected == []
    second.close()
    assert rows(db, "orders") == [{"id": 1, "s": "b", "n": 2}]


def test_table_map_and_naming(db: Path) -> None:
    writer = SqliteWriter(
        name="mirror",
        path=db,
        pipeline="shop",
        naming="qualified",
        table_map={"shop.public.articles": "posts"},
    )
    writer.write(
        batch(
            ev("c", 0, after={"id": 1}),
            ev("c", 1, table=ARTICLES, after={"id": 2}),
            ev("c", 2, table=TableId("inventory", None, "items"), after={"id": 3}),
        )
    )
    writer.close()
    assert writer.target_name(ORDERS) == "shop_public_orders"
    assert rows(db, "shop_public_orders") == [{"id": 1}]
    assert rows(db, "posts") == [{"id": 2}]
    assert rows(db, "inventory_items") == [{"id": 3}]
    assert SqliteWriter(name="m", path=db, pipeline="p").target_name(ORDERS) == "orders"


def test_tables_filter_skips_other_tables_but_stores_the_position(db: Path) -> None:
    writer = SqliteWriter(name="mirror", path=db, pipeline="shop", tables=["shop.public.ord*"])
    writer.write(batch(ev("c", 0, after={"id": 1}), ev("c", 1, table=ARTICLES, after={"id": 2})))
    assert writer.committed_positions() == {("topic", "0"): 1}
    writer.close()
    assert rows(db, "orders") == [{"id": 1}]
    assert columns(db, "articles") == {}


def test_odd_identifiers_are_quoted(writer: SqliteWriter, db: Path) -> None:
    odd = TableId(table='we"ird table')
    writer.write(batch(ev("c", 0, table=odd, after={"id": 1, "select": "x", 'a"b': 2})))
    assert rows(db, 'we""ird table') == [{"id": 1, "select": "x", 'a"b': 2}]


# -- exactly once ----------------------------------------------------------------------------


def test_replaying_a_batch_changes_nothing(writer: SqliteWriter, db: Path) -> None:
    first = batch(
        ev("c", 0, after={"id": 1, "s": "a"}),
        ev("u", 1, after={"id": 1, "s": "b"}),
        ev("c", 2, after={"id": 2, "s": "c"}),
    )
    second = batch(ev("d", 3, before={"id": 2, "s": "c"}), ev("u", 4, after={"id": 1, "s": "z"}))
    writer.write(first)
    writer.write(second)
    before = sqlite_dump(db)
    assert writer.write(first).rejected == []
    assert writer.write(second).rejected == []
    assert sqlite_dump(db) == before
    assert rows(db, "orders") == [{"id": 1, "s": "z"}]


def test_replay_after_reopen_changes_nothing(db: Path) -> None:
    the_batch = batch(ev("c", 0, after={"id": 1, "s": "a"}), ev("u", 1, after={"id": 1, "s": "b"}))
    writer = SqliteWriter(name="mirror", path=db, pipeline="shop")
    writer.write(the_batch)
    writer.write(batch(ev("u", 2, after={"id": 1, "s": "latest"})))
    writer.close()
    before = sqlite_dump(db)
    again = SqliteWriter(name="mirror", path=db, pipeline="shop")
    again.open()
    assert again.committed_positions() == {("topic", "0"): 2}
    assert again.write(the_batch).rejected == []
    again.close()
    assert sqlite_dump(db) == before


def test_overlapping_batch_applies_only_newer_events(writer: SqliteWriter, db: Path) -> None:
    writer.write(
        batch(ev("c", 0, after={"id": 1, "s": "a"}), ev("u", 1, after={"id": 1, "s": "b"}))
    )
    overlap = batch(
        ev("u", 0, after={"id": 1, "s": "OLD"}),
        ev("u", 1, after={"id": 1, "s": "OLD"}),
        ev("c", 2, after={"id": 2, "s": "new"}),
    )
    writer.write(overlap)
    assert rows(db, "orders") == [{"id": 1, "s": "b"}, {"id": 2, "s": "new"}]
    assert writer.committed_positions() == {("topic", "0"): 2}


def test_empty_batch_still_advances_the_position(writer: SqliteWriter) -> None:
    writer.write(EventBatch(stream="topic", partition=0, last_offset=41, events=[]))
    assert writer.committed_positions() == {("topic", "0"): 41}


def test_offsets_table_contents(db: Path) -> None:
    mirror = SqliteWriter(name="mirror", path=db, pipeline="shop")
    audit = SqliteWriter(name="audit", path=db, pipeline="shop", table_map={str(ORDERS): "o2"})
    mirror.write(
        batch(ev("c", 0, after={"id": 1}), ev("c", 5, after={"id": 2}, stream="other"), last=9)
    )
    mirror.write(batch(ev("c", 3, after={"id": 3}, stream="other"), stream="other"))
    audit.write(batch(ev("c", 0, after={"id": 1}), last=4))
    mirror.close()
    audit.close()
    conn = sqlite3.connect(db)
    stored = conn.execute(
        'SELECT pipeline, sink, stream, partition, "offset", updated_at FROM cdcflow_offsets '
        "ORDER BY sink, stream"
    ).fetchall()
    conn.close()
    assert [row[:5] for row in stored] == [
        ("shop", "audit", "topic", "0", 4),
        ("shop", "mirror", "other", "0", 3),
        ("shop", "mirror", "topic", "0", 9),
    ]
    for row in stored:
        stamp = dt.datetime.strptime(row[5], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    reopened = SqliteWriter(name="mirror", path=db, pipeline="shop")
    reopened.open()
    assert reopened.committed_positions() == {("topic", "0"): 9, ("other", "0"): 3}
    reopened.close()
    other_pipeline = SqliteWriter(name="mirror", path=db, pipeline="billing")
    other_pipeline.open()
    assert other_pipeline.committed_positions() == {}
    other_pipeline.close()


def test_failed_batch_rolls_back_rows_and_position(
    writer: SqliteWriter, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.write(batch(ev("c", 0, after={"id": 1, "s": "a"})))
    before = sqlite_dump(db)
    original = SqliteWriter._apply

    def apply_then_fail(self: SqliteWriter, conn: sqlite3.Connection, events: Any) -> Any:
        original(self, conn, events)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SqliteWriter, "_apply", apply_then_fail)
    with pytest.raises(SinkError, match="sink 'mirror': SQLite write failed: disk I/O error"):
        writer.write(
            batch(ev("u", 1, after={"id": 1, "s": "b", "new_col": 1}), ev("c", 2, after={"id": 2}))
        )
    assert sqlite_dump(db) == before
    assert writer.committed_positions() == {("topic", "0"): 0}
    monkeypatch.undo()
    writer.write(batch(ev("u", 1, after={"id": 1, "s": "b", "new_col": 1})))
    assert rows(db, "orders") == [{"id": 1, "s": "b", "new_col": 1}]


# -- rejected rows ---------------------------------------------------------------------------


def _bad_batch() -> EventBatch:
    return batch(
        ev("c", 0, after={"id": 1, "s": "ok"}),
        ev("c", 1, key={"id": "not-a-number"}, after={"id": "not-a-number", "s": "bad"}),
        ev("c", 2, after={"id": 2, "s": {1, 2}}),
        ev("c", 3, after={"id": 3, "s": "ok too"}),
    )


def test_rejected_rows_are_returned_as_dead_letters(writer: SqliteWriter, db: Path) -> None:
    dead = writer.write(_bad_batch()).rejected
    assert [(d.position.offset, d.step, d.error_type) for d in dead if d.position] == [
        (2, "sink:mirror", "TypeError"),
        (1, "sink:mirror", "IntegrityError"),
    ]
    by_offset = {d.position.offset: d for d in dead if d.position}
    assert "datatype mismatch" in by_offset[1].reason
    assert "cannot store a set value" in by_offset[2].reason
    assert by_offset[1].event is not None
    assert by_offset[1].event["after"] == {"id": "not-a-number", "s": "bad"}
    assert rows(db, "orders") == [{"id": 1, "s": "ok"}, {"id": 3, "s": "ok too"}]
    assert writer.committed_positions() == {("topic", "0"): 3}


def test_reject_is_called_before_the_commit(writer: SqliteWriter, db: Path) -> None:
    seen: list[tuple[list[DeadLetter], list[tuple[Any, ...]]]] = []

    def on_rejected(letters: list[DeadLetter]) -> None:
        probe = sqlite3.connect(db)
        try:
            stored = probe.execute('SELECT "offset" FROM cdcflow_offsets').fetchall()
        finally:
            probe.close()
        seen.append((letters, stored))

    result = writer.write(_bad_batch(), reject=on_rejected)
    assert len(seen) == 1
    letters, stored_during_callback = seen[0]
    assert result.rejected == letters  # the result lists what the sink was handed
    assert sorted(d.position.offset for d in letters if d.position) == [1, 2]
    assert stored_during_callback == [], "the batch's position was committed before the call"
    assert writer.committed_positions() == {("topic", "0"): 3}
    probe = sqlite3.connect(db)
    assert probe.execute('SELECT "offset" FROM cdcflow_offsets').fetchall() == [(3,)]
    probe.close()


def test_failing_reject_aborts_the_batch(writer: SqliteWriter, db: Path) -> None:
    def on_rejected(letters: list[DeadLetter]) -> None:
        raise SinkError("dead-letter sink is down")

    with pytest.raises(SinkError, match="dead-letter sink is down"):
        writer.write(_bad_batch(), reject=on_rejected)
    assert writer.committed_positions() == {}
    assert columns(db, "orders") == {}


def test_event_without_any_key_is_rejected(writer: SqliteWriter, db: Path) -> None:
    event = ChangeEvent(
        op=Op.CREATE, table=ORDERS, position=Position("topic", 0, 0), after={"v": 1}
    )
    dead = writer.write(batch(event)).rejected
    assert len(dead) == 1
    assert "no primary key known for shop.public.orders" in dead[0].reason
    assert "key_columns" in dead[0].reason


def test_existing_table_without_primary_key_is_rejected(writer: SqliteWriter, db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE orders (id INTEGER, s TEXT)")
    conn.commit()
    conn.close()
    both = batch(ev("c", 0, after={"id": 1, "s": "a"}), ev("d", 1, key={"id": 1}))
    dead = writer.write(both).rejected
    assert len(dead) == 2
    assert all("exists without a primary key" in d.reason for d in dead)


def test_upsert_without_row_image_is_rejected(writer: SqliteWriter) -> None:
    event = ChangeEvent(op=Op.UPDATE, table=ORDERS, position=Position("topic", 0, 0), key={"id": 1})
    dead = writer.write(batch(event)).rejected
    assert [d.reason for d in dead] == ["'u' event for shop.public.orders has no row image"]


# -- lifecycle, config, values -----------------------------------------------------------------


def test_describe_lists_row_counts(writer: SqliteWriter, db: Path) -> None:
    writer.write(batch(ev("c", 0, after={"id": 1}), ev("c", 1, table=ARTICLES, after={"id": 1})))
    assert writer.describe() == [
        f"sink 'mirror': SQLite database {db}",
        "  articles: 1 row",
        "  orders: 1 row",
    ]
    writer.write(batch(ev("c", 2, after={"id": 2})))
    assert writer.describe()[2] == "  orders: 2 rows"


def test_open_failure_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite").mkdir()
    writer = SqliteWriter(name="mirror", path=tmp_path / "db.sqlite", pipeline="shop")
    with pytest.raises(SinkError, match="sink 'mirror': cannot open SQLite database"):
        writer.open()


def test_check_passes_for_a_creatable_path(tmp_path: Path) -> None:
    writer = SqliteWriter(name="m", path=tmp_path / "a" / "b" / "x.sqlite", pipeline="p")
    assert writer.check() == []
    assert not (tmp_path / "a").exists()


def test_config_builds_a_writer(tmp_path: Path) -> None:
    config = SqliteSinkConfig(
        type="sqlite",
        name="mirror",
        path="out/m.sqlite",
        tables=["shop.*"],
        naming="qualified",
        table_map={"a.b": "c"},
        truncate="ignore",
    )
    writer = config.build(BuildContext(pipeline="shop", base_dir=tmp_path))
    assert isinstance(writer, SqliteWriter)
    assert writer.path == tmp_path / "out" / "m.sqlite"
    assert (writer.name, writer.pipeline, writer.naming, writer.truncate) == (
        "mirror",
        "shop",
        "qualified",
        "ignore",
    )
    assert writer.table_map == {"a.b": "c"}
    assert writer.keeps_positions is True


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (None, None),
        (True, 1),
        (False, 0),
        (2**63 - 1, 2**63 - 1),
        (2**63, str(2**63)),
        (-(2**63) - 1, str(-(2**63) - 1)),
        (1.5, 1.5),
        ("text", "text"),
        (b"\x00", b"\x00"),
        (bytearray(b"ab"), b"ab"),
        (Decimal("10.20"), "10.20"),
        (dt.date(2024, 1, 15), "2024-01-15"),
        (dt.datetime(2024, 1, 15, 10, 30, 0, 5), "2024-01-15T10:30:00.000005"),
        (dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.UTC), "2024-01-15T10:30:00Z"),
        (dt.time(10, 30, 1), "10:30:01"),
        ({"a": [1, Decimal("2.50")]}, '{"a":[1,"2.50"]}'),
        ([1, "x"], '[1,"x"]'),
    ],
)
def test_sqlite_value(value: Any, stored: Any) -> None:
    assert sqlite_value(value) == stored
    assert type(sqlite_value(value)) is type(stored)


def test_sqlite_value_rejects_unknown_types() -> None:
    with pytest.raises(TypeError, match="cannot store a object value in SQLite"):
        sqlite_value(object())


def test_applied_counts_only_new_events_of_kept_tables(db: Path) -> None:
    writer = SqliteWriter(name="mirror", path=db, pipeline="shop", tables="shop.public.orders")
    writer.open()
    try:
        first = writer.write(
            batch(ev("c", 0, after={"id": 1, "s": "a"}), ev("c", 1, after={"id": 2}))
        )
        assert first.applied == 2
        overlapping = batch(
            ev("u", 1, after={"id": 2, "s": "old"}),
            ev("u", 2, after={"id": 1, "s": "new"}),
            ev("c", 3, table=ARTICLES, after={"id": 9}),
        )
        assert writer.write(overlapping).applied == 1  # offset 1 stored, articles filtered out
        assert writer.write(overlapping).applied == 0  # a replay applies nothing
    finally:
        writer.close()


def test_beam_write_counts_what_the_sink_applied_after_a_partial_replay(db: Path) -> None:
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from cdcflow.beam.transforms import NAMESPACE, WriteTo

    first = batch(ev("c", 0, after={"id": 1}), ev("c", 1, after={"id": 2}))
    second = batch(ev("u", 1, after={"id": 2, "s": "x"}), ev("c", 2, after={"id": 3}))
    seed = SqliteWriter(name="mirror", path=db, pipeline="shop")
    seed.write(first)
    seed.close()

    pipeline = beam.Pipeline(runner="DirectRunner")
    rejected = (
        pipeline
        | beam.Create([first, second])
        | WriteTo(SqliteWriter(name="mirror", path=db, pipeline="shop"))
    )
    assert_that(rejected, equal_to([]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(NAMESPACE).with_name("events_written:mirror")
    )["counters"]
    assert sum(c.committed or c.attempted for c in counters) == 1
    assert [r["id"] for r in rows(db, "orders")] == [1, 2, 3]
