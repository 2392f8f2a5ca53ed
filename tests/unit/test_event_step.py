"""EventStep/FunctionStep: one method per event; batches, dead letters and counters by the base."""

from __future__ import annotations

import pickle
from typing import Any

import msgspec
import pytest

from cdcflow.core.step import event_dead_letter
from cdcflow.schemas.model import (
    ChangeEvent,
    EventBatch,
    Op,
    Position,
    SchemaChange,
    TableId,
    TransactionMarker,
)
from cdcflow.transforms import EventStep, FunctionStep
from cdcflow.transforms.event_step import COUNTER

TABLE = TableId("shop", "public", "orders")


def event(offset: int, **after: Any) -> ChangeEvent:
    return ChangeEvent(
        op=Op.CREATE,
        table=TABLE,
        position=Position("orders", 0, offset),
        key={"id": offset},
        after={"id": offset, **after},
    )


def batch(*events: ChangeEvent, **extra: Any) -> EventBatch:
    return EventBatch(
        stream="orders", partition=0, last_offset=events[-1].position.offset if events else 9,
        events=list(events), **extra,
    )


def counts(step: EventStep) -> dict[str, int]:
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in step.metrics.totals().items()
        if name == COUNTER
    }


class Split(EventStep):
    name = "split"

    def process_event(self, event: ChangeEvent) -> Any:
        offset = event.position.offset
        if offset == 0:
            return None  # deliberate drop
        if offset == 1:
            return [event, msgspec.structs.replace(event, key={"id": 100})]
        if offset == 2:
            raise ValueError("order 2 is broken")
        if offset == 3:
            return "not an event"
        if offset == 4:
            return [event, {"id": 4}]
        return event


def test_each_kind_of_result_and_the_counters() -> None:
    step = Split()
    marker = TransactionMarker(status="BEGIN", id="tx1", position=Position("orders", 0, 0))
    ddl = SchemaChange(position=Position("orders", 0, 3), ddl="ALTER TABLE orders ADD x int")
    carried = event_dead_letter("decode", event(9), ValueError("earlier"))
    result = step.process(
        batch(*(event(i) for i in range(6)), markers=[marker, ddl], dead_letters=[carried])
    )
    out = result.batch
    assert [(e.position.offset, e.key) for e in out.events] == [
        (1, {"id": 1}), (1, {"id": 100}), (5, {"id": 5}),
    ]
    assert out.markers == [marker, ddl]  # untouched, in order
    assert out.dead_letters == [carried]  # carried letters pass through
    assert out.last_offset == 5
    reasons = {d.position.offset: (d.error_type, d.reason, d.step) for d in result.dead_letters
               if d.position is not None}
    assert reasons[2] == ("ValueError", "order 2 is broken", "split")
    assert reasons[3][0] == "TypeError" and "got str" in reasons[3][1]
    assert reasons[4][0] == "TypeError" and "dict" in reasons[4][1]
    assert all(d.event is not None and d.event["table"] == str(TABLE) for d in result.dead_letters)
    assert counts(step) == {"in": 6, "out": 3, "dropped": 1, "dead_letter": 3}
    labels = dict(next(iter(step.metrics.totals()))[1])
    assert labels["step"] == "split" and labels["table"] == str(TABLE)


def test_an_empty_list_is_a_deliberate_drop() -> None:
    step = FunctionStep(lambda e: [], name="none")
    result = step.process(batch(event(1), event(2)))
    assert result.batch.events == [] and result.dead_letters == []
    assert counts(step) == {"in": 2, "dropped": 2}


def test_function_step_passes_options_as_keywords_and_pickles() -> None:
    from tests.unit.plugins.steps import add_region

    step = FunctionStep(add_region, options={"region": "us-east-1"})
    assert step.name == "add_region"
    copy = pickle.loads(pickle.dumps(step))
    out = copy.process(batch(event(1, total=3))).batch.events
    assert out[0].after == {"id": 1, "total": 3, "region": "us-east-1"}
    assert "tests.unit.plugins.steps:add_region" in repr(step)


def test_function_step_refuses_a_non_callable() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        FunctionStep(42)  # type: ignore[arg-type]


def test_a_subclass_that_skips_the_base_init_still_counts() -> None:
    class Bare(EventStep):
        def __init__(self) -> None:
            pass

        def process_event(self, event: ChangeEvent) -> ChangeEvent:
            return event

    step = Bare()
    assert len(step.process(batch(event(1))).batch.events) == 1
    assert counts(step) == {"in": 1, "out": 1}
