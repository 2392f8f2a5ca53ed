"""ApplyStep(ahead=True): the step runs one batch ahead on a thread; nothing else changes."""

from __future__ import annotations

import threading
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from cdcflow.beam.transforms import EVENTS, NAMESPACE, ApplyStep
from cdcflow.schemas.model import Position, RawBatch, RawRecord
from cdcflow.transforms.decode import DecodeStep

TOPIC = "shop.public.orders"


def _record(offset: int, value: bytes) -> RawRecord:
    return RawRecord(b'{"id": %d}' % offset, value, Position(TOPIC, 0, offset))


def _batches(count: int, per_batch: int, bad_every: int = 0) -> list[RawBatch]:
    batches = []
    offset = 0
    for _ in range(count):
        records = []
        for _ in range(per_batch):
            value = (
                b"not json"
                if bad_every and offset % bad_every == 0
                else b'{"op":"c","after":{"id":%d},"source":{"table":"orders"}}' % offset
            )
            records.append(_record(offset, value))
            offset += 1
        batches.append(RawBatch(TOPIC, 0, records, offset - 1))
    return batches


class _Collect(beam.DoFn):  # type: ignore[misc]
    seen: list[tuple[int, list[int], int]] = []
    lock = threading.Lock()

    def process(self, batch: Any) -> None:
        with self.lock:
            _Collect.seen.append(
                (batch.last_offset, [e.position.offset for e in batch.events],
                 len(batch.dead_letters))
            )


def _run(batches: list[RawBatch], ahead: bool) -> tuple[list[tuple[int, list[int], int]], dict]:
    _Collect.seen = []
    pipeline = beam.Pipeline(runner=FnApiRunner())
    raw = pipeline | beam.Create(batches, reshuffle=False)
    out = (raw | ApplyStep(DecodeStep(), carry=True, ahead=ahead))[EVENTS]
    _ = out | beam.ParDo(_Collect())
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    return list(_Collect.seen), {c.key.metric.name: c.committed for c in counters}


def test_ahead_emits_every_batch_in_order_with_dead_letters_and_counters() -> None:
    batches = _batches(count=7, per_batch=50, bad_every=13)
    plain, plain_counters = _run(batches, ahead=False)
    ahead, ahead_counters = _run(batches, ahead=True)
    assert ahead == plain
    assert [last for last, _, _ in ahead] == [b.last_offset for b in batches]
    events = [o for _, offsets, _ in ahead for o in offsets]
    assert events == [o for o in range(350) if o % 13 != 0]
    assert sum(dead for _, _, dead in ahead) == len(range(0, 350, 13))
    assert ahead_counters["events:decode"] == plain_counters["events:decode"] == len(events)
    assert ahead_counters["dead_letters:decode"] == 27


class _Boom:
    name = "boom"

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass

    def process(self, batch: Any) -> Any:
        raise RuntimeError("the step failed on its thread")


def test_ahead_reraises_the_step_error_in_the_pipeline() -> None:
    pipeline = beam.Pipeline(runner=FnApiRunner())
    raw = pipeline | beam.Create(_batches(count=2, per_batch=2), reshuffle=False)
    _ = (raw | ApplyStep(_Boom(), carry=True, ahead=True))[EVENTS]
    with pytest.raises(Exception, match="the step failed on its thread"):
        pipeline.run().wait_until_finish()


def test_ahead_needs_carry() -> None:
    with pytest.raises(ValueError, match="carry"):
        ApplyStep(DecodeStep(), carry=False, ahead=True)


def test_runs_use_a_short_state_sampling_period_and_restore_beams_default() -> None:
    from apache_beam.runners.worker import statesampler

    from cdcflow.beam.runner import STATE_SAMPLING_PERIOD_MS, _short_state_sampling

    before = statesampler.StateSampler.__init__.__defaults__
    with _short_state_sampling():
        sampler = statesampler.StateSampler("test", None)
        assert sampler.sampling_period_ms == STATE_SAMPLING_PERIOD_MS
    assert statesampler.StateSampler.__init__.__defaults__ == before
    assert statesampler.StateSampler("test", None).sampling_period_ms == before[-1]
