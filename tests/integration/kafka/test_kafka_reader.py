"""The Kafka reader against the real (Tansu) broker: polling, start modes, topic discovery, the
low end-offset correction, and the commit-after-write order of the Beam reader.

These tests were written against a hand-written fake consumer (tests/unit/kafka_fakes.py) and
moved here (issue 9): what the fake still covers is only what this broker cannot do (timestamp
starts, see tests/unit/test_kafka_reader.py). Every expectation is derived from what the test
produced, or read back from the broker by an independent consumer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from cdcflow.beam import kafka as beam_kafka
from cdcflow.beam.kafka import UNBOUNDED, ReadFromKafka
from cdcflow.core.writer import Writer
from cdcflow.errors import ConfigError
from cdcflow.io.kafka.poller import PartitionPoller
from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.io.kafka.source import KafkaSource
from cdcflow.schemas.model import RawBatch
from cdcflow.testing import MemoryWriter
from tests.integration.kafka.helpers import group_offsets
from tests.servers.tansu import (
    CONSUMER_TEST_CONFIG,
    consume_all,
    create_topic,
    produce,
    unique_topic,
)

pytestmark = pytest.mark.integration

NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group has no committed offset


def settings(bootstrap: str, topics: tuple[str, ...], **kwargs: Any) -> KafkaSettings:
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": f"reader-{uuid.uuid4().hex[:8]}",
        "topics": topics,
        "client_config": dict(CONSUMER_TEST_CONFIG),
    }
    base.update(kwargs)
    return KafkaSettings(**base)


def numbered(count: int, first: int = 0) -> list[tuple[bytes, bytes]]:
    return [(f"k{n}".encode(), f'{{"n": {n}}}'.encode()) for n in range(first, first + count)]


def topic_with(bootstrap: str, counts: list[int]) -> str:
    """A new topic with ``len(counts)`` partitions holding ``counts[p]`` records each."""
    topic = unique_topic("reader")
    create_topic(bootstrap, topic, partitions=len(counts))
    for partition, count in enumerate(counts):
        if count:
            produce(bootstrap, topic, numbered(count), partition=partition)
    return topic


def commit_group(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` (partition -> next offset) for ``group``, as another consumer would."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def poll_until_end(poller: PartitionPoller, limit: int = 200) -> Iterator[Any]:
    """Every poll result until the poller reports the end of the partition."""
    for _ in range(limit):
        result = poller.poll(timeout=1.0)
        yield result
        if result.at_end:
            return
    raise AssertionError("the poller never reported the end of the partition")


# -- polling ---------------------------------------------------------------------------------


def test_poller_builds_raw_records_and_reports_the_end(kafka_broker: str) -> None:
    topic = unique_topic("reader")
    create_topic(kafka_broker, topic, partitions=1)
    produce(kafka_broker, topic, numbered(5), partition=0, headers=[("h", b"1")])
    sent = {m.offset(): m for m in consume_all(kafka_broker, topic, expected=5)}
    config = settings(kafka_broker, (topic,), max_batch_size=3)
    poller = PartitionPoller(config, topic, 0)
    poller.open(1)
    try:
        results = list(poll_until_end(poller))
        records = [r for result in results for r in result.records]
        assert all(len(result.records) <= 3 for result in results)
        assert [r.position.offset for r in records] == [1, 2, 3, 4]
        for record in records:
            original = sent[record.position.offset]
            assert (record.key, record.value) == (original.key(), original.value())
            assert record.timestamp_ms == original.timestamp()[1]
            assert record.headers == (("h", b"1"),)
            assert (record.position.stream, record.position.partition) == (topic, 0)
        assert results[-1].at_end and results[-1].next_offset == 5
        assert poller.position == 5
        # The end sticks until a record arrives.
        assert poller.poll(timeout=0.2).at_end
        assert poller.commit(5)
        assert group_offsets(kafka_broker, config.group_id, topic, 1) == {0: 5}
    finally:
        poller.close()


def test_a_poller_that_stopped_fetching_still_commits_and_can_reopen(kafka_broker: str) -> None:
    # The Beam reader unassigns a partition once its bounded range is read (an idle consumer
    # keeps fetching otherwise) and commits the range's end afterwards, at bundle finalization.
    topic = topic_with(kafka_broker, [4])
    config = settings(kafka_broker, (topic,))
    poller = PartitionPoller(config, topic, 0)
    poller.open(0)
    try:
        list(poll_until_end(poller))
        poller.stop_fetching()
        assert poller.position is None
        assert poller.commit(4)
        assert group_offsets(kafka_broker, config.group_id, topic, 1) == {0: 4}
        poller.open(2)  # assigned again, from the requested offset
        records = [r for result in poll_until_end(poller) for r in result.records]
        assert [r.position.offset for r in records] == [2, 3]
    finally:
        poller.close()


def test_commit_can_be_switched_off(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [1])
    config = settings(kafka_broker, (topic,), commit_offsets=False)
    poller = PartitionPoller(config, topic, 0)
    poller.open(0)
    try:
        list(poll_until_end(poller))
        assert not poller.commit(1)
    finally:
        poller.close()
    assert group_offsets(kafka_broker, config.group_id, topic, 1) == {0: NO_OFFSET}


# -- where each partition starts --------------------------------------------------------------


def test_start_offsets_priority(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [10, 10, 10, 10])
    group = f"g-{topic}"
    commit_group(kafka_broker, group, topic, {1: 7})

    def starts(start: str | int, **kwargs: Any) -> dict[tuple[str, int], int]:
        source = KafkaSource(settings(kafka_broker, (topic,), group_id=group, start=start,
                                      **kwargs))
        return source.start_offsets()

    source = KafkaSource(settings(kafka_broker, (topic,), group_id=group, start="latest"))
    # sinks' resume offset > group's committed offset > the start mode
    assert source.start_offsets({(topic, "0"): 3}) == {
        (topic, 0): 3, (topic, 1): 7, (topic, 2): 10, (topic, 3): 10
    }
    assert starts("earliest") == {(topic, 0): 0, (topic, 1): 7, (topic, 2): 0, (topic, 3): 0}
    # committed: without a committed offset, auto.offset.reset decides (Kafka's default latest)
    assert starts("committed")[(topic, 2)] == 10
    earliest_reset = {**CONSUMER_TEST_CONFIG, "auto.offset.reset": "earliest"}
    assert starts("committed", client_config=earliest_reset)[(topic, 2)] == 0
    assert starts("committed", client_config=earliest_reset)[(topic, 1)] == 7


def test_latest_start_skips_what_exists_and_reads_what_comes(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [4])
    source = KafkaSource(settings(kafka_broker, (topic,), start="latest"))
    [(key, start)] = source.start_offsets().items()
    assert (key, start) == ((topic, 0), 4)
    produce(kafka_broker, topic, numbered(2, first=4), partition=0)
    batches = list(source.read(topic, 0, start))
    assert [r.value for b in batches for r in b.records] == [v for _, v in numbered(2, first=4)]


def test_group_offset_lowers_the_start_when_a_sink_keeps_no_positions(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [10, 10])
    group = f"g-{topic}"
    commit_group(kafka_broker, group, topic, {0: 4})
    source = KafkaSource(settings(kafka_broker, (topic,), group_id=group))
    resume = {(topic, "0"): 8, (topic, "1"): 6}
    assert source.start_offsets(resume) == {(topic, 0): 8, (topic, 1): 6}
    lowered = source.start_offsets(resume, group_is_a_sink_position=True)
    assert lowered == {(topic, 0): 4, (topic, 1): 6}


# -- discovery --------------------------------------------------------------------------------


def test_discovery_by_list_and_pattern(kafka_broker: str) -> None:
    prefix = f"disc{uuid.uuid4().hex[:6]}"
    orders, customers = f"{prefix}.public.orders", f"{prefix}.public.customers"
    create_topic(kafka_broker, orders, partitions=2)
    create_topic(kafka_broker, customers, partitions=1)
    create_topic(kafka_broker, f"{prefix}.other.items", partitions=1)
    # Internal topics (a leading "__") are never matched by a pattern.
    create_topic(kafka_broker, f"__{prefix}.public.offsets", partitions=1)

    assert KafkaSource(settings(kafka_broker, (orders,))).partitions() == [
        (orders, 0), (orders, 1)
    ]
    pattern = KafkaSource(
        settings(kafka_broker, (), topic_pattern=rf"(__)?{prefix}\.public\..*")
    )
    assert pattern.partitions() == [(customers, 0), (orders, 0), (orders, 1)]
    # The pattern must match the whole name.
    partial = KafkaSource(settings(kafka_broker, (), topic_pattern=rf"{prefix}\.public"))
    with pytest.raises(ConfigError, match="no topic"):
        partial.partitions()
    missing = f"{prefix}.missing"
    with pytest.raises(ConfigError, match="do not exist"):
        KafkaSource(settings(kafka_broker, (orders, missing))).partitions()
    problems = KafkaSource(settings(kafka_broker, (missing,))).check()
    assert len(problems) == 1 and missing in problems[0]


# -- end offsets ------------------------------------------------------------------------------


def test_end_offsets_correct_the_brokers_low_end_offset(kafka_broker: str) -> None:
    """Tansu answers ListOffsets with the last record batch's base offset + 1: ten records
    produced as one batch show an end of 1. ``end_offsets`` must still say 10."""
    from confluent_kafka import Consumer, TopicPartition

    topic = unique_topic("reader")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, numbered(10), partition=0, config={"linger.ms": 1000})
    probe = Consumer({"bootstrap.servers": kafka_broker, "group.id": "probe"})
    try:
        _, reported = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        probe.close()
    assert reported < 10  # the broker under-reports: the correction below is what is tested
    source = KafkaSource(settings(kafka_broker, (topic,)))
    assert source.end_offsets(timeout=10) == {(topic, 0): 10, (topic, 1): 0}
    # A bounded read therefore reaches every record.
    batches = list(source.read(topic, 0, 0))
    assert [r.position.offset for b in batches for r in b.records] == list(range(10))


def test_engine_neutral_bounded_read(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [7])
    source = KafkaSource(settings(kafka_broker, (topic,), max_batch_size=3))
    batches = list(source.read(topic, 0, 2))
    assert [r.position.offset for b in batches for r in b.records] == [2, 3, 4, 5, 6]
    assert all(0 < len(b.records) <= 3 for b in batches)
    assert all(b.last_offset == b.records[-1].position.offset for b in batches)
    assert batches[-1].last_offset == 6


# -- the Beam reader: ranges, stop, and commits only after the writes -------------------------

WRITES: list[tuple[int, list[int], dict[int, int]]] = []


class _RecordWrites(beam.DoFn):  # type: ignore[misc]
    """Stands for the sinks: logs each batch, and what the broker holds as the group's
    committed offsets at the moment the batch is written (read by an independent consumer)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.args = (bootstrap, group, topic, partitions)

    def process(self, batch: RawBatch) -> Iterator[RawBatch]:
        committed = group_offsets(*self.args)
        WRITES.append((batch.partition, [r.position.offset for r in batch.records], committed))
        yield batch


def _run_reader(config: KafkaSettings, writers: list[Writer], topic: str, partitions: int,
                until_caught_up: bool = True, bundle_seconds: float = 0.001) -> None:
    WRITES.clear()
    read = ReadFromKafka(KafkaSource(config), writers, until_caught_up=until_caught_up,
                         bundle_seconds=bundle_seconds)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | read
            | beam.ParDo(_RecordWrites(config.bootstrap_servers, config.group_id, topic,
                                       partitions))
        )


def test_the_ranges_follow_the_resume_rule_over_the_writers_positions(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [10, 10, 10])
    config = settings(kafka_broker, (topic,))
    commit_group(kafka_broker, config.group_id, topic, {2: 6})
    source = KafkaSource(config)
    # Partition 0: one past the lowest position; 1 and 2: a sink has none, so they are
    # backfilled from `start` (earliest), whatever the group committed.
    a = MemoryWriter("a", positions={(topic, "0"): 4, (topic, "1"): 2, (topic, "2"): 8})
    b = MemoryWriter("b", positions={(topic, "0"): 6})
    caught_up = ReadFromKafka(source, [a, b], until_caught_up=True).partition_specs()
    assert caught_up == [(topic, 0, 5, 10), (topic, 1, 0, 10), (topic, 2, 0, 10)]
    streaming = ReadFromKafka(source, [a, b]).partition_specs()
    assert [spec[3] for spec in streaming] == [UNBOUNDED] * 3
    # A sink keeping no positions: the group's committed offset is its position and lowers the
    # start (partition 2); without position-keeping writers the group alone decides.
    lowered = ReadFromKafka(source, [a, MemoryWriter("n", keeps_positions=False)])
    assert lowered.partition_specs()[2] == (topic, 2, 6, UNBOUNDED)
    alone = ReadFromKafka(source, until_caught_up=True).partition_specs()
    assert alone == [(topic, 0, 0, 10), (topic, 1, 0, 10), (topic, 2, 6, 10)]


def test_beam_reader_reads_ranges_and_commits_after_the_writes(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [25, 12])
    config = settings(kafka_broker, (topic,), max_batch_size=4)
    # The sink holds partition 0 up to offset 4 and nothing of partition 1 (backfilled).
    _run_reader(config, [MemoryWriter(positions={(topic, "0"): 4})], topic, 2)

    for partition, expected in ((0, list(range(5, 25))), (1, list(range(12)))):
        writes = [offsets for part, offsets, _ in WRITES if part == partition]
        assert [o for offsets in writes for o in offsets] == expected  # in order, no gaps
        assert all(0 < len(offsets) <= 4 for offsets in writes)
    # The group ends at each range's end.
    assert group_offsets(kafka_broker, config.group_id, topic, 2) == {0: 25, 1: 12}
    # When a batch is written, the group's offset never covers it: offsets are committed only
    # after the batches below them were written (bundle finalization).
    for partition, offsets, committed in WRITES:
        assert committed[partition] == NO_OFFSET or committed[partition] <= offsets[0]
    # ...and commits did happen while reading (not only at the end), so the check above saw
    # real intermediate commits.
    assert any(committed[0] > 5 for part, _, committed in WRITES if part == 0)


def test_an_empty_range_still_brings_the_group_up_to_date(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [6])
    config = settings(kafka_broker, (topic,))
    _run_reader(config, [MemoryWriter(positions={(topic, "0"): 5})], topic, 1)
    assert WRITES == []
    assert group_offsets(kafka_broker, config.group_id, topic, 1) == {0: 6}


def test_beam_reader_stops_on_request(kafka_broker: str) -> None:
    topic = topic_with(kafka_broker, [3])
    config = settings(kafka_broker, (topic,))
    beam_kafka.request_stop()
    try:
        _run_reader(config, [], topic, 1, until_caught_up=False)
    finally:
        beam_kafka.reset_stop()
    assert WRITES == []
    assert group_offsets(kafka_broker, config.group_id, topic, 1) == {0: NO_OFFSET}


# -- ReadFromKafka in a hand-written pipeline (docs/extending.md) ----------------------------


def _user(n: int) -> tuple[bytes, bytes]:
    value = (
        f'{{"op":"c","after":{{"id":{n},"email":"u{n}@example.com"}},'
        '"source":{"db":"shop","schema":"public","table":"users"}}'
    )
    return f'{{"id": {n}}}'.encode(), value.encode()


def _hand_written_run(config: KafkaSettings, db: Path) -> int:
    """The pipeline of docs/extending.md ("Reading Kafka"); returns the records read."""
    from cdcflow.beam import Decode, WriteDeadLetters, WriteTo
    from cdcflow.beam.transforms import NAMESPACE
    from cdcflow.io.files import DeadLetterFileWriter
    from cdcflow.io.sqlite import SqliteWriter

    source = KafkaSource(config)
    writer = SqliteWriter("mirror", db, pipeline="hand-written", tables="shop.public.*")
    dead = DeadLetterFileWriter(db.with_suffix(".dead-letters.jsonl"))
    p = beam.Pipeline()
    decoded = p | ReadFromKafka(source, writers=[writer], until_caught_up=True) | Decode()
    _ = decoded.events | WriteTo(writer)
    _ = decoded.dead_letters | WriteDeadLetters(dead)
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(NAMESPACE).with_name("records_read")
    )["counters"]
    return sum(c.committed or c.attempted or 0 for c in counters)


def test_a_hand_written_pipeline_resumes_from_its_sinks_positions(
    kafka_broker: str, tmp_path: Path
) -> None:
    from tests.console import sqlite_rows

    topic = unique_topic("hand")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, [_user(n) for n in range(6)], partition=0)
    produce(kafka_broker, topic, [_user(n) for n in range(6, 9)], partition=1)
    # No group commits: only the sink's own positions can make the second run resume.
    config = settings(kafka_broker, (topic,), commit_offsets=False)
    db = tmp_path / "mirror.sqlite"
    assert _hand_written_run(config, db) == 9
    assert [r["id"] for r in sqlite_rows(db, "users", "id")] == list(range(9))
    produce(kafka_broker, topic, [_user(9), (b'{"id": 10}', b"not json")], partition=1)
    assert _hand_written_run(config, db) == 2  # resumed from the sink's positions
    assert [r["id"] for r in sqlite_rows(db, "users", "id")] == list(range(10))
    letters = db.with_suffix(".dead-letters.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in letters] == ["decode"]
    assert _hand_written_run(config, db) == 0
