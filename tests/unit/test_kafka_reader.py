"""The Kafka reader's logic against fake consumers: polling, start/end offsets, Beam SDF."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from cdcflow.beam import kafka as beam_kafka
from cdcflow.beam.kafka import UNBOUNDED, ReadFromKafka, _CheckpointOnlyTracker
from cdcflow.io.kafka import KafkaSettings, KafkaSource, PartitionPoller
from cdcflow.schemas.model import RawBatch
from tests.unit.kafka_fakes import FakeBroker, install

T = "shop.public.orders"


def settings(**kwargs: object) -> KafkaSettings:
    base: dict = {"bootstrap_servers": "fake:9092", "group_id": "g", "topics": (T,)}
    base.update(kwargs)
    return KafkaSettings(**base)


def test_poller_builds_raw_records_and_reports_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = FakeBroker()
    broker.add(T, 0, 5)
    install(monkeypatch, broker)
    poller = PartitionPoller(settings(max_batch_size=3), T, 0)
    poller.open(1)
    first = poller.poll()
    assert [r.position.offset for r in first.records] == [1, 2, 3]
    record = first.records[0]
    assert (record.key, record.value, record.timestamp_ms) == (b"k1", b'{"n": 1}', 1001)
    assert record.headers == (("h", b"1"),)
    assert record.position.stream == T and record.position.partition == 0
    assert not first.at_end and first.next_offset == 4
    second = poller.poll()
    assert [r.position.offset for r in second.records] == [4]
    assert second.at_end and second.next_offset == 5
    assert poller.commit(5)
    assert broker.committed[(T, 0)] == 5
    poller.close()


def test_commit_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = FakeBroker()
    broker.add(T, 0, 1)
    install(monkeypatch, broker)
    poller = PartitionPoller(settings(commit_offsets=False), T, 0)
    poller.open(0)
    poller.poll()
    assert not poller.commit(1)
    assert broker.commits == []


def test_start_offsets_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = FakeBroker()
    for part in range(4):
        broker.add(T, part, 10)
    broker.committed[(T, 1)] = 7
    install(monkeypatch, broker)
    source = KafkaSource(settings(start="latest"))
    starts = source.start_offsets({(T, "0"): 3})
    # sinks' resume offset > group's committed offset > the start mode
    assert starts == {(T, 0): 3, (T, 1): 7, (T, 2): 10, (T, 3): 10}
    assert KafkaSource(settings(start="earliest")).start_offsets()[(T, 2)] == 0
    # A timestamp: the first record at or after it; none after it: the end.
    by_time = KafkaSource(settings(start=1004)).start_offsets()
    assert by_time[(T, 0)] == 4 and by_time[(T, 1)] == 7
    assert KafkaSource(settings(start=99_999)).start_offsets()[(T, 2)] == 10
    # committed: without a committed offset, auto.offset.reset decides (Kafka's default latest)
    assert KafkaSource(settings(start="committed")).start_offsets()[(T, 2)] == 10
    earliest = settings(start="committed", client_config={"auto.offset.reset": "earliest"})
    assert KafkaSource(earliest).start_offsets()[(T, 2)] == 0


def test_discovery_by_list_and_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdcflow.errors import ConfigError

    broker = FakeBroker()
    broker.add(T, 0, 1)
    broker.add(T, 1, 1)
    broker.add("shop.public.customers", 0, 1)
    broker.add("__consumer_offsets", 0, 1)
    install(monkeypatch, broker)
    assert KafkaSource(settings()).partitions() == [(T, 0), (T, 1)]
    pattern = KafkaSource(settings(topics=(), topic_pattern=r"shop\.public\..*"))
    assert pattern.partitions() == [("shop.public.customers", 0), (T, 0), (T, 1)]
    with pytest.raises(ConfigError, match="do not exist"):
        KafkaSource(settings(topics=("missing",))).partitions()
    with pytest.raises(ConfigError, match="no topic"):
        KafkaSource(settings(topics=(), topic_pattern="nothing.*")).partitions()
    assert KafkaSource(settings(topics=("missing",))).check()


def test_end_offsets_correct_an_under_reporting_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = FakeBroker(under_report=2)
    broker.add(T, 0, 10)
    broker.add(T, 1, 0)
    install(monkeypatch, broker)
    assert KafkaSource(settings()).end_offsets(timeout=2) == {(T, 0): 10, (T, 1): 0}


def test_engine_neutral_bounded_read(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = FakeBroker()
    broker.add(T, 0, 7)
    install(monkeypatch, broker)
    source = KafkaSource(settings(max_batch_size=3))
    batches = list(source.read(T, 0, 2))
    assert [[r.position.offset for r in b.records] for b in batches] == [[2, 3, 4], [5, 6]]
    assert batches[-1].last_offset == 6


def test_tracker_only_checkpoints() -> None:
    tracker = _CheckpointOnlyTracker(OffsetRange(0, 100))
    assert tracker.try_claim(10)
    assert tracker.try_split(0.5) is None
    primary, residual = tracker.try_split(0)
    assert (primary.start, primary.stop) == (0, 11)
    assert (residual.start, residual.stop) == (11, 100)


LOG: list[tuple] = []


class _RecordWrites(beam.DoFn):
    """Logs each batch as written (into the module-level LOG, shared with the fake broker)."""

    def process(self, batch: RawBatch):
        LOG.append(("write", batch.partition, batch.last_offset))
        yield batch


def test_beam_reader_reads_ranges_and_commits_after_the_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    LOG.clear()
    broker = FakeBroker(log=LOG)
    broker.add(T, 0, 25)
    broker.add(T, 1, 12)
    install(monkeypatch, broker)
    specs = [(T, 0, 5, 25), (T, 1, 0, 10)]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | ReadFromKafka(settings(max_batch_size=4), specs, bundle_seconds=0.001)
            | beam.ParDo(_RecordWrites())
        )
    writes = [entry for entry in LOG if entry[0] == "write"]
    assert [w[2] for w in writes if w[1] == 0] == [8, 12, 16, 20, 24]
    assert [w[2] for w in writes if w[1] == 1] == [3, 7, 9]
    assert broker.committed == {(T, 0): 25, (T, 1): 10}
    # Every commit follows the write of the batch it covers (bundle finalization).
    for index, entry in enumerate(LOG):
        if entry[0] == "commit":
            _, part, next_offset = entry
            earlier = [w[2] for w in LOG[:index] if w[0] == "write" and w[1] == part]
            assert earlier and max(earlier) == next_offset - 1


def test_beam_reader_stops_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    LOG.clear()
    broker = FakeBroker(log=LOG)
    broker.add(T, 0, 3)
    install(monkeypatch, broker)
    beam_kafka.request_stop()
    try:
        with beam.Pipeline(runner=FnApiRunner()) as pipeline:
            _ = (
                pipeline
                | ReadFromKafka(settings(), [(T, 0, 0, UNBOUNDED)])
                | beam.ParDo(_RecordWrites())
            )
    finally:
        beam_kafka.reset_stop()
    assert LOG == []
    with pytest.raises(ValueError, match="partition spec"):
        ReadFromKafka(settings(), [(T, 0, -1, 5)])


def test_group_offset_lowers_the_start_when_a_sink_keeps_no_positions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = FakeBroker()
    broker.add(T, 0, 10)
    broker.add(T, 1, 10)
    broker.committed[(T, 0)] = 4
    install(monkeypatch, broker)
    source = KafkaSource(settings())
    resume = {(T, "0"): 8, (T, "1"): 6}
    assert source.start_offsets(resume) == {(T, 0): 8, (T, 1): 6}
    lowered = source.start_offsets(resume, group_is_a_sink_position=True)
    assert lowered == {(T, 0): 4, (T, 1): 6}


def test_an_empty_range_still_brings_the_group_up_to_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    LOG.clear()
    broker = FakeBroker(log=LOG)
    broker.add(T, 0, 6)
    install(monkeypatch, broker)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | ReadFromKafka(settings(), [(T, 0, 6, 6)])
            | beam.ParDo(_RecordWrites())
        )
    assert LOG == [("commit", 0, 6)]
