"""The per-batch helpers of the PostgreSQL writer: grouping new events, column coverage."""

from __future__ import annotations

from typing import Any

from cdcflow.io.postgres import PostgresWriter
from cdcflow.io.sink_common import covers
from cdcflow.schemas.model import ChangeEvent, EventBatch, Op, Position, TableId

ITEMS = TableId("shop", "public", "items")
ORDERS = TableId("shop", "public", "orders")
SKIPPED = TableId("shop", "audit", "log")


def _event(table: TableId, offset: int, op: Op = Op.CREATE, **row: Any) -> ChangeEvent:
    image = row or {"id": offset}
    if op is Op.DELETE:
        return ChangeEvent(op=op, table=table, position=Position("t", 0, offset), before=image)
    return ChangeEvent(op=op, table=table, position=Position("t", 0, offset), after=image)


class _Table:
    def __init__(self, *names: str) -> None:
        self.columns = {name: "text" for name in names}
        self.schemas: set[str] = set()


def test_new_by_target_skips_committed_and_filtered_events_keeping_order() -> None:
    writer = PostgresWriter(
        name="wh",
        dsn="postgresql://u@h/db",
        pipeline="p",
        tables="shop.public.*",
        table_map={"shop.public.orders": "crm.orders"},
    )
    events = [
        _event(ITEMS, 0),
        _event(ITEMS, 1),
        _event(ORDERS, 2),
        _event(SKIPPED, 3),
        _event(ITEMS, 4),
        _event(ORDERS, 5),
        _event(ITEMS, 6),
    ]
    batch = EventBatch(stream="t", partition=0, last_offset=6, events=events)
    groups = writer._new_by_target(batch, committed=1)
    assert list(groups) == [("crm", "orders"), ("public", "items")]
    assert [e.position.offset for e in groups[("public", "items")]] == [4, 6]
    assert [e.position.offset for e in groups[("crm", "orders")]] == [2, 5]
    # the same events as the filter alone keeps, each in its target's group
    kept = writer._new_events(batch, committed=1)
    assert sorted(e.position.offset for g in groups.values() for e in g) == [
        e.position.offset for e in kept
    ]
    assert writer._new_by_target(batch, committed=6) == {}


def test_covers_checks_every_row_shape_and_delete_images() -> None:
    table = _Table("id", "name")
    same = [_event(ITEMS, i, id=i, name="x") for i in range(3)]
    assert covers(table, same)
    # a new column in a later row of an already seen length is still noticed
    assert not covers(table, [*same, _event(ITEMS, 3, id=3, qty=1)])
    # the same names in another order are a different shape, and still covered
    assert covers(table, [*same, _event(ITEMS, 4, name="y", id=4)])
    # deletes are checked on their before image
    assert not covers(table, [*same, _event(ITEMS, 5, Op.DELETE, id=5, extra=1)])
    assert covers(table, [*same, _event(ITEMS, 6, Op.DELETE, id=6)])
