"""The Kafka reader without a broker: only what the test broker cannot do.

Polling, start modes (earliest/latest/committed), topic discovery, the low end-offset correction
and the Beam reader's commit-after-write order are tested against the real Tansu broker in
tests/integration/kafka/test_kafka_reader.py. The fake consumer (kafka_fakes.py) is kept for:

- ``start: <timestamp>``: Tansu ignores record timestamps in ListOffsets (FACTS.md: it answers
  offset 0 for any timestamp), so the lookup of the first record at or after a time cannot be
  checked against it;
- a commit the broker refuses, and errors delivered in the message stream (fatal or not):
  the broker cannot be made to produce these on demand.
Pure logic (the tracker, argument checks) needs no consumer at all.
"""

from __future__ import annotations

import logging

import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from confluent_kafka import KafkaError as ClientError

from cdcflow.beam.kafka import (
    UNBOUNDED,
    ReadFromKafka,
    _CheckpointOnlyTracker,
    _ReadKafkaPartitionFn,
)
from cdcflow.io.kafka.client import KafkaError
from cdcflow.io.kafka.poller import PartitionPoller
from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.io.kafka.source import KafkaSource
from tests.unit.kafka_fakes import FakeBroker, install

T = "shop.public.orders"


def settings(**kwargs: object) -> KafkaSettings:
    base: dict = {"bootstrap_servers": "fake:9092", "group_id": "g", "topics": (T,)}
    base.update(kwargs)
    return KafkaSettings(**base)


def test_timestamp_start_finds_the_first_record_at_or_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = FakeBroker()
    for part in range(3):
        broker.add(T, part, 10, start_ts=1000)  # record n has timestamp 1000 + n
    broker.committed[(T, 1)] = 7
    install(monkeypatch, broker)
    by_time = KafkaSource(settings(start=1004)).start_offsets()
    # The group's committed offset still wins over the timestamp.
    assert by_time == {(T, 0): 4, (T, 1): 7, (T, 2): 4}
    # No record at or after the timestamp: the partition starts at its end.
    assert KafkaSource(settings(start=99_999)).start_offsets()[(T, 2)] == 10


def test_a_refused_commit_is_reported_and_retried_by_the_next_commit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker = FakeBroker()
    broker.add(T, 0, 3)
    install(monkeypatch, broker)
    poller = PartitionPoller(settings(), T, 0)
    poller.open(0)
    poller.poll()
    broker.refuse_commit = ClientError(ClientError.REBALANCE_IN_PROGRESS, "rebalancing")
    with caplog.at_level(logging.WARNING, logger="cdcflow.io.kafka"):
        assert not poller.commit(3)
    assert broker.committed == {} and poller.last_committed is None
    assert "could not commit offset 3" in caplog.text and "group 'g'" in caplog.text
    assert poller.commit(3)  # the same offset is sent again, not skipped as already committed
    assert broker.committed == {(T, 0): 3}
    poller.close()


def test_stream_errors_fatal_raise_others_are_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker = FakeBroker()
    broker.add(T, 0, 2)
    install(monkeypatch, broker)
    poller = PartitionPoller(settings(), T, 0)
    poller.open(0)
    broker.stream_errors.append(ClientError(ClientError._TRANSPORT, "broker went away"))
    with caplog.at_level(logging.WARNING, logger="cdcflow.io.kafka"):
        result = poller.poll()
    assert [r.position.offset for r in result.records] == [0, 1]
    assert f"Kafka {T}[0]" in caplog.text and "broker went away" in caplog.text
    broker.stream_errors.append(ClientError(ClientError._FATAL, "fenced", fatal=True))
    with pytest.raises(KafkaError, match=rf"Kafka {T}\[0\].*fenced"):
        poller.poll()
    poller.close()


def test_tracker_only_checkpoints() -> None:
    tracker = _CheckpointOnlyTracker(OffsetRange(0, 100))
    assert tracker.try_claim(10)
    assert tracker.try_split(0.5) is None
    primary, residual = tracker.try_split(0)
    assert (primary.start, primary.stop) == (0, 11)
    assert (residual.start, residual.stop) == (11, 100)


def test_bundle_seconds_is_checked() -> None:
    with pytest.raises(ValueError, match="bundle_seconds"):
        ReadFromKafka(KafkaSource(settings()), bundle_seconds=0)


def test_each_bounded_range_names_the_next_one_to_open_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = FakeBroker()
    for part in range(4):
        broker.add(T, part, 5)
    install(monkeypatch, broker)
    specs = [(T, 0, 0, 5), (T, 1, 5, 5), (T, 2, 0, 5), (T, 3, 2, 5)]  # partition 1: empty range
    read = _ReadKafkaPartitionFn(settings(), 1.0, specs)
    assert read._next_of == {(T, 0): (T, 2, 0), (T, 2): (T, 3, 2)}
    read.setup()
    read._open_next(T, 0)
    opened = read._pollers[(T, 2)]
    assert opened.position == 0  # assigned where its range starts
    read._open_next(T, 0)  # already opened: left as it is
    assert read._pollers[(T, 2)] is opened and set(read._pollers) == {(T, 2)}
    read._open_next(T, 3)  # the last range: nothing after it
    assert set(read._pollers) == {(T, 2)}
    read.teardown()
    streaming = _ReadKafkaPartitionFn(settings(), 1.0, [(T, 0, 0, UNBOUNDED), (T, 1, 0, UNBOUNDED)])
    assert streaming._next_of == {}  # streaming ranges are all read from the first round on
