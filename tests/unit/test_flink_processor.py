"""The Flink Python operator's work without Flink: raw batches, decode, dead letters, writers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cdcflow.flink.processor import BatchProcessor, raw_batch
from cdcflow.io.files import DeadLetterFileWriter
from cdcflow.io.sqlite import SqliteWriter
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
def processor(tmp_path: Path) -> BatchProcessor:
    writer = SqliteWriter("lite", tmp_path / "out.sqlite", pipeline="p")
    dead = DeadLetterFileWriter(tmp_path / "dead.jsonl")
    made = BatchProcessor(DecodeStep(), [], [writer], dead)
    made.open()
    yield made
    made.close()


def rows(tmp_path: Path) -> dict[int, int]:
    with sqlite3.connect(tmp_path / "out.sqlite") as conn:
        return dict(conn.execute("SELECT id, qty FROM orders").fetchall())


def test_raw_batch_sorts_parallel_arrays_by_offset() -> None:
    batch = raw_batch("t", 3, [12, 10, 11], [b"k12", None, b"k11"], [b"v12", b"v10", None])
    assert [r.position.offset for r in batch.records] == [10, 11, 12]
    assert [(r.key, r.value) for r in batch.records] == [
        (None, b"v10"),
        (b"k11", None),
        (b"k12", b"v12"),
    ]
    assert batch.last_offset == 12 and batch.partition == 3 and batch.stream == "t"
    assert all(r.position.partition == 3 for r in batch.records)


def test_raw_batch_rejects_misaligned_or_empty_arrays() -> None:
    with pytest.raises(ValueError, match="2 offsets, 1 keys"):
        raw_batch("t", 0, [1, 2], [None], [None, None])
    with pytest.raises(ValueError, match="empty"):
        raw_batch("t", 0, [], [], [])


def test_process_writes_and_a_replay_changes_nothing(
    processor: BatchProcessor, tmp_path: Path
) -> None:
    first = raw_batch("orders", 0, [0, 1, 2], [key(1), key(2), key(1)],
                      [envelope(1, 10), envelope(2, 20), envelope(1, 11, "u")])
    processor.process(first)
    assert rows(tmp_path) == {1: 11, 2: 20}
    assert processor.counters.written == {"lite": 3}
    assert processor.counters.records == 3

    # A restored job gets a new operator instance; the writer skips what it stored.
    replay = BatchProcessor(
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
    processor: BatchProcessor, tmp_path: Path
) -> None:
    batch = raw_batch("orders", 1, [5, 6], [key(1), b"k"], [envelope(1, 1), b"{not json"])
    processor.process(batch)
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert len(letters) == 1
    assert letters[0]["step"] == "decode"
    assert letters[0]["position"]["offset"] == 6
    assert processor.counters.dead_letters == 1
    with sqlite3.connect(tmp_path / "out.sqlite") as conn:
        stored = conn.execute('SELECT "offset" FROM cdcflow_offsets').fetchall()
    assert stored == [(6,)]


def test_a_batch_going_back_in_its_partition_is_refused(processor: BatchProcessor) -> None:
    processor.process(raw_batch("orders", 0, [10, 11], [key(1)] * 2, [envelope(1, 1)] * 2))
    processor.process(raw_batch("orders", 1, [3], [key(2)], [envelope(2, 2)]))
    with pytest.raises(RuntimeError, match="must reach the writers in order"):
        processor.process(raw_batch("orders", 0, [11, 12], [key(1)] * 2, [envelope(1, 1)] * 2))


def test_close_closes_everything_even_after_a_failure(tmp_path: Path) -> None:
    closed: list[str] = []

    class Failing(SqliteWriter):
        def close(self) -> None:
            closed.append("writer")
            raise RuntimeError("boom")

    class Dead(DeadLetterFileWriter):
        def close(self) -> None:
            closed.append("dead")

    made = BatchProcessor(
        DecodeStep(), [], [Failing("w", tmp_path / "x.sqlite", pipeline="p")],
        Dead(tmp_path / "d.jsonl"),
    )
    made.open()
    made.close()
    assert closed == ["writer", "dead"]


def test_written_counts_only_what_the_writer_applied(
    processor: BatchProcessor, tmp_path: Path
) -> None:
    processor.process(raw_batch("orders", 0, [0, 1], [key(1), key(2)],
                                [envelope(1, 1), envelope(2, 2)]))
    replay = BatchProcessor(
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
    made = BatchProcessor(DecodeStep(), [CountingStep()], [writer], None)
    made.open()
    try:
        made.process(raw_batch("orders", 0, [0, 1], [key(1), key(2)],
                               [envelope(1, 1), envelope(2, 2)]))
        assert made.drain_step_metrics() == [("seen", (("table", "orders"),), 2)]
        assert made.drain_step_metrics() == []
    finally:
        made.close()
