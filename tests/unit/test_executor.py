"""The engine-neutral executor: decode, steps, dead letters, writers, counts, in that order."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cdcflow.core.executor import BatchExecutor, component_of
from cdcflow.core.step import Step, StepResult
from cdcflow.core.writer import WriteResult
from cdcflow.errors import SinkError
from cdcflow.flink.processor import raw_batch
from cdcflow.io.files import DeadLetterFileWriter
from cdcflow.io.sqlite import SqliteWriter
from cdcflow.schemas.model import DeadLetter, EventBatch, RawBatch, SchemaChange
from cdcflow.testing import FaultyWriter, MemoryDeadLetterWriter, MemoryWriter
from cdcflow.transforms.decode import DecodeStep


def envelope(ident: int, qty: int, op: str = "c") -> bytes:
    row = {"id": ident, "qty": qty}
    return json.dumps(
        {
            "before": row if op == "d" else None,
            "after": None if op == "d" else row,
            "op": op,
            "source": {"db": "shop", "schema": "public", "table": "orders"},
            "ts_ms": 1,
        }
    ).encode()


def key(ident: int) -> bytes:
    return json.dumps({"id": ident}).encode()


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[BatchExecutor]:
    writer = SqliteWriter("lite", tmp_path / "out.sqlite", pipeline="p")
    dead = DeadLetterFileWriter(tmp_path / "dead.jsonl")
    made = BatchExecutor(DecodeStep(), [], [writer], dead, check_order=True)
    made.open()
    yield made
    made.close()


def rows(tmp_path: Path) -> dict[int, int]:
    with sqlite3.connect(tmp_path / "out.sqlite") as conn:
        return dict(conn.execute("SELECT id, qty FROM orders").fetchall())


def test_process_writes_and_a_replay_changes_nothing(
    executor: BatchExecutor, tmp_path: Path
) -> None:
    first = raw_batch("orders", 0, [0, 1, 2], [key(1), key(2), key(1)],
                      [envelope(1, 10), envelope(2, 20), envelope(1, 11, "u")])
    executor.process(first)
    assert rows(tmp_path) == {1: 11, 2: 20}
    assert executor.counters.written == {"lite": 3}
    assert executor.counters.records == 3

    # A restored job gets a new operator instance; the writer skips what it stored.
    replay = BatchExecutor(
        DecodeStep(), [], [SqliteWriter("lite", tmp_path / "out.sqlite", pipeline="p")], None
    )
    replay.open()
    try:
        replay.process(
            raw_batch("orders", 0, [1, 2, 3], [key(2), key(1), key(2)],
                      [envelope(2, 99), envelope(1, 99), envelope(2, 0, "d")])
        )
    finally:
        replay.close()
    assert rows(tmp_path) == {1: 11}


def test_undecodable_records_are_dead_letters_stored_before_the_position(
    executor: BatchExecutor, tmp_path: Path
) -> None:
    batch = raw_batch("orders", 1, [5, 6], [key(1), b"k"], [envelope(1, 1), b"{not json"])
    executor.process(batch)
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(letters) == 1
    assert letters[0]["step"] == "decode"
    assert letters[0]["position"]["offset"] == 6
    assert executor.counters.dead_letters == 1
    with sqlite3.connect(tmp_path / "out.sqlite") as conn:
        stored = conn.execute('SELECT "offset" FROM cdcflow_offsets').fetchall()
    assert stored == [(6,)]


def test_a_batch_going_back_in_its_partition_is_refused(executor: BatchExecutor) -> None:
    executor.process(raw_batch("orders", 0, [10, 11], [key(1)] * 2, [envelope(1, 1)] * 2))
    executor.process(raw_batch("orders", 1, [3], [key(2)], [envelope(2, 2)]))
    with pytest.raises(RuntimeError, match="must reach the writers in order"):
        executor.process(raw_batch("orders", 0, [11, 12], [key(1)] * 2, [envelope(1, 1)] * 2))


def test_close_closes_everything_even_after_a_failure(tmp_path: Path) -> None:
    closed: list[str] = []

    class Failing(SqliteWriter):
        def close(self) -> None:
            closed.append("writer")
            raise RuntimeError("boom")

    class Dead(DeadLetterFileWriter):
        def close(self) -> None:
            closed.append("dead")

    made = BatchExecutor(
        DecodeStep(), [], [Failing("w", tmp_path / "x.sqlite", pipeline="p")],
        Dead(tmp_path / "d.jsonl"),
    )
    made.open()
    made.close()
    assert closed == ["writer", "dead"]


def test_written_counts_only_what_the_writer_applied(
    executor: BatchExecutor, tmp_path: Path
) -> None:
    executor.process(raw_batch("orders", 0, [0, 1], [key(1), key(2)],
                                [envelope(1, 1), envelope(2, 2)]))
    replay = BatchExecutor(
        DecodeStep(), [], [SqliteWriter("lite", tmp_path / "out.sqlite", pipeline="p")], None
    )
    replay.open()
    try:
        replay.process(raw_batch("orders", 0, [1, 2], [key(2), key(3)],
                                 [envelope(2, 5), envelope(3, 3)]))
        assert replay.counters.written == {"lite": 1}  # offset 1 was already stored
    finally:
        replay.close()


def test_step_metrics_are_drained_per_batch(tmp_path: Path) -> None:
    from cdcflow.metrics import Counters

    class CountingStep:
        name = "counting"

        def __init__(self) -> None:
            self.metrics = Counters()

        def setup(self) -> None: ...

        def teardown(self) -> None: ...

        def process(self, batch):
            from cdcflow.core.step import StepResult

            self.metrics.inc("seen", {"table": "orders"}, len(batch.events))
            return StepResult(batch, [])

    writer = SqliteWriter("lite", tmp_path / "out.sqlite", pipeline="p")
    made = BatchExecutor(DecodeStep(), [CountingStep()], [writer], None)
    made.open()
    try:
        made.process(raw_batch("orders", 0, [0, 1], [key(1), key(2)],
                               [envelope(1, 1), envelope(2, 2)]))
        assert made.drain_step_metrics() == [("seen", (("table", "orders"),), 2)]
        assert made.drain_step_metrics() == []
    finally:
        made.close()


# -- the exactly-once order, with the packaged doubles -------------------------------------


def _orders(*ids: int, start: int = 0) -> RawBatch:
    offsets = list(range(start, start + len(ids)))
    return raw_batch("orders", 0, offsets, [key(i) for i in ids], [envelope(i, i) for i in ids])


def test_rejected_rows_are_stored_before_the_position_and_counted() -> None:
    dead = MemoryDeadLetterWriter()
    sink = MemoryWriter()
    seen: list[tuple[int, dict[tuple[str, str], int]]] = []
    original = dead.write

    def spy(letters: Sequence[DeadLetter]) -> None:
        seen.append((len(letters), sink.committed_positions()))
        original(letters)

    dead.write = spy  # type: ignore[method-assign]
    executor = BatchExecutor(
        DecodeStep(), [], [FaultyWriter(sink, reject=lambda e: e.key == {"id": 2})], dead
    )
    outcome = executor.process(_orders(1, 2, 3))
    assert seen == [(1, {})], "the dead letter was stored after the position committed"
    assert [d.position.offset for d in outcome.rejected if d.position] == [1]
    assert outcome.results["memory"].applied == 2
    assert executor.counters.written == {"memory": 2}
    assert executor.counters.rejected == {"memory": 1}
    assert executor.counters.all_dead_letters == 1
    assert sink.committed_positions() == {("orders", "0"): 2}


def test_a_failing_dead_letter_sink_stops_the_batch_before_any_writer() -> None:
    sink = MemoryWriter()
    executor = BatchExecutor(DecodeStep(), [], [sink], MemoryDeadLetterWriter(fail=True))
    bad = raw_batch("orders", 0, [0, 1], [key(1), b"k"], [envelope(1, 1), b"{not json"])
    with pytest.raises(SinkError) as info:
        executor.process(bad)
    assert component_of(info.value) == "dead_letter"
    assert sink.calls.count("write") == 0 and sink.committed_positions() == {}


def test_an_exception_names_the_component_that_raised() -> None:
    class Exploding(Step):
        name = "exploding"

        def process(self, batch: EventBatch) -> StepResult:
            raise ValueError("bug in the step")

    failing_sink = FaultyWriter(MemoryWriter("mirror"), fail_on=[1], error="terminal")
    for executor, expected in [
        (BatchExecutor(DecodeStep(), [Exploding()], [MemoryWriter()], None),
         "transforms[0] (exploding)"),
        (BatchExecutor(DecodeStep(), [], [failing_sink], None), "sink 'mirror'"),
    ]:
        with pytest.raises(Exception) as info:
            executor.process(_orders(1))
        assert component_of(info.value) == expected
        from cdcflow.cli.failures import describe_unexpected

        assert describe_unexpected(info.value, "pipeline 'p'").startswith(f"{expected}: ")


def test_write_takes_decoded_batches_and_transform_needs_a_decoder() -> None:
    sink = MemoryWriter()
    executor = BatchExecutor(None, [], [sink], None)
    decoded = DecodeStep().process(_orders(4, 5)).batch
    outcome = executor.write(decoded)
    assert outcome.results["memory"] == (2, [])
    assert len(sink.rows("shop.public.orders")) == 2
    with pytest.raises(TypeError, match="no decode step"):
        executor.transform(_orders(6))


def test_carried_dead_letters_are_stored_once_and_not_passed_to_writers() -> None:
    dead = MemoryDeadLetterWriter()
    batches: list[EventBatch] = []

    class Recording(MemoryWriter):
        def write(self, batch: EventBatch, reject: Any = None) -> WriteResult:
            batches.append(batch)
            return super().write(batch, reject)

    executor = BatchExecutor(DecodeStep(), [], [Recording("a"), Recording("b")], dead)
    bad = raw_batch("orders", 0, [0, 1], [key(1), b"k"], [envelope(1, 1), b"{not json"])
    outcome = executor.process(bad)
    assert len(dead.letters) == 1 and outcome.dead_letters == 1
    assert [b.dead_letters for b in batches] == [[], []]


def test_schema_changes_travel_through_the_steps_to_the_writers() -> None:
    change = json.dumps({
        "source": {"db": "shop", "table": "orders", "connector": "mysql"},
        "databaseName": "shop",
        "ddl": "ALTER TABLE orders ADD COLUMN note TEXT",
        "tableChanges": [{"type": "ALTER", "id": "\"shop\".\"orders\""}],
        "ts_ms": 5,
    }).encode()
    raw = raw_batch("orders", 0, [0, 1], [key(1), None], [envelope(1, 1), change])
    seen_by_step: list[int] = []

    class Counting(Step):
        name = "counting"

        def process(self, batch: EventBatch) -> StepResult:
            seen_by_step.append(len(batch.markers))
            return StepResult(batch, [])

    sink = MemoryWriter()
    BatchExecutor(DecodeStep(), [Counting()], [sink], None).process(raw)
    assert seen_by_step == [1]
    (marker,) = sink.markers
    assert isinstance(marker, SchemaChange) and marker.ddl is not None
    assert "ADD COLUMN note" in marker.ddl
