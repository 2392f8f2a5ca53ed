"""Decode, Redact, ApplyStep and WriteTo composed in a hand-written Beam pipeline."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from cdcflow.beam import ApplyStep, Decode, Redact, WriteTo
from cdcflow.io.sqlite import SqliteWriter
from cdcflow.schemas.model import Position, RawBatch, RawRecord
from cdcflow.testing import FaultyWriter, MemoryWriter
from cdcflow.transforms import FunctionStep
from cdcflow.transforms.redact import RedactStep
from tests.console import sqlite_rows

TOPIC = "shop.public.users"


def _batches() -> list[RawBatch]:
    records = []
    for offset in range(5):
        value = (
            b"not json"
            if offset == 2
            else b'{"op":"c","after":{"id":%d,"email":"u%d@example.com"},'
            b'"source":{"db":"shop","schema":"public","table":"users"}}' % (offset, offset)
        )
        records.append(RawRecord(b'{"id": %d}' % offset, value, Position(TOPIC, 0, offset)))
    return [RawBatch(TOPIC, 0, records[:3], 2), RawBatch(TOPIC, 0, records[3:], 4)]


def _rows(batch: object) -> list[tuple[int, object]]:
    return [(e.position.offset, e.after) for e in batch.events]  # type: ignore[attr-defined]


def test_decode_redact_apply_and_write(tmp_path: Path) -> None:
    db = tmp_path / "out.sqlite"
    with TestPipeline() as p:
        decoded = p | beam.Create(_batches(), reshuffle=False) | "Decode" >> Decode(
            stream_is_topic=True
        )
        redacted = decoded.events | "Redact" >> Redact(
            [{"columns": ["email"], "strategy": "drop"}]
        )
        tagged = redacted.events | "Tag" >> ApplyStep(
            FunctionStep(lambda e: None if e.key == {"id": 4} else e, name="skip4")
        )
        rejected = tagged.events | "Write" >> WriteTo(
            SqliteWriter("mirror", db, pipeline="t", tables="shop.public.*")
        )
        assert_that(
            decoded.dead_letters
            | "Bad" >> beam.Map(lambda d: (d.step, d.position.offset, d.value)),
            equal_to([("decode", 2, b"not json")]),
            label="DecodeDeadLetters",
        )
        assert_that(
            tagged.events | beam.FlatMap(_rows),
            equal_to([(0, {"id": 0}), (1, {"id": 1}), (3, {"id": 3})]),
            label="Redacted",
        )
        assert_that(rejected, equal_to([]), label="NothingRejected")
    assert sqlite_rows(db, "users", "id") == [{"id": 0}, {"id": 1}, {"id": 3}]


def test_write_to_outputs_rejected_rows() -> None:
    writer = FaultyWriter(MemoryWriter(), reject=lambda e: e.position.offset == 3)
    with TestPipeline() as p:
        decoded = p | beam.Create(_batches(), reshuffle=False) | Decode()
        rejected = decoded.events | WriteTo(writer)
        assert_that(
            rejected | beam.Map(lambda d: (d.step, d.position.offset, d.error_type)),
            equal_to([("sink:memory", 3, "RowRejectedError")]),
        )


def test_redact_accepts_a_step_and_refuses_other_policies() -> None:
    step = RedactStep.from_rules([{"columns": ["email"], "strategy": "drop"}], name="pii")
    assert Redact(step).step is step
    with pytest.raises(ValueError, match="policy must be a RedactStep"):
        Redact("email")
    with pytest.raises(ValueError, match="options are only for a list of rules"):
        Redact(step, salt="x" * 32)
    with pytest.raises(ValueError, match="not both"):
        Decode(object(), format="debezium-json")


def test_event_step_counters_reach_beam_metrics() -> None:
    from apache_beam.metrics import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from cdcflow.beam.transforms import NAMESPACE

    pipeline = beam.Pipeline(runner=FnApiRunner())
    decoded = pipeline | beam.Create(_batches(), reshuffle=False) | Decode()
    _ = decoded.events | ApplyStep(
        FunctionStep(lambda e: None if e.key == {"id": 0} else e, name="drop0")
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    got = {c.key.metric.name: c.committed for c in counters if "step_events" in c.key.metric.name}
    base = "step_events{step=drop0,table=shop.public.users,outcome="
    assert got == {base + "in}": 4, base + "out}": 3, base + "dropped}": 1}
