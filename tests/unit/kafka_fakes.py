"""An in-memory stand-in for confluent-kafka's Consumer, only for what the test broker cannot do.

The reader's behaviour is tested against the real Tansu broker (tests/integration/kafka/
test_kafka_reader.py). This fake remains for the cases Tansu cannot produce: record timestamps
(Tansu ignores them in ListOffsets, so ``start: <timestamp>`` cannot be tested live), a commit
the broker refuses, and errors delivered in the message stream (fatal and non-fatal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None = None
    _value: bytes | None = None
    _timestamp: int = 0
    _headers: list[tuple[str, bytes]] | None = None
    _error: KafkaError | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> KafkaError | None:
        return self._error


@dataclass
class FakeBroker:
    """Partitions as lists of ``(key, value, timestamp_ms)``; the group's committed offsets."""

    partitions: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, int]]] = field(
        default_factory=dict
    )
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    commits: list[tuple[str, int, int]] = field(default_factory=list)
    #: When set, ``commit`` raises a KafkaException with this error (then clears it).
    refuse_commit: KafkaError | None = None
    #: Errors delivered in the message stream by the next ``consume`` (then cleared).
    stream_errors: list[KafkaError] = field(default_factory=list)

    def add(self, topic: str, partition: int, count: int, start_ts: int = 1000) -> None:
        records = self.partitions.setdefault((topic, partition), [])
        for _ in range(count):
            n = len(records)
            records.append((f"k{n}".encode(), f'{{"n": {n}}}'.encode(), start_ts + n))


class _Topic:
    def __init__(self, partitions: list[int]) -> None:
        self.partitions = {p: object() for p in partitions}
        self.error = None


class _Metadata:
    def __init__(self, broker: FakeBroker) -> None:
        topics: dict[str, list[int]] = {}
        for topic, part in broker.partitions:
            topics.setdefault(topic, []).append(part)
        self.topics = {t: _Topic(sorted(ps)) for t, ps in topics.items()}


class FakeConsumer:
    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.positions: dict[tuple[str, int], int] = {}
        self.eof_sent: set[tuple[str, int]] = set()
        self.closed = False

    def list_topics(self, timeout: float = 0) -> _Metadata:
        return _Metadata(self.broker)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = {(tp.topic, tp.partition): tp.offset for tp in tps}
        self.eof_sent = set()

    def consume(self, num: int, timeout: float) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        for error in self.broker.stream_errors:
            topic, part = next(iter(self.positions))
            out.append(FakeMessage(topic, part, -1, _error=error))
        self.broker.stream_errors.clear()
        for key, position in self.positions.items():
            records = self.broker.partitions.get(key, [])
            while position < len(records) and len(out) < num:
                k, v, ts = records[position]
                out.append(FakeMessage(key[0], key[1], position, k, v, ts, [("h", b"1")]))
                position += 1
                self.eof_sent.discard(key)
            self.positions[key] = position
            eof = self.config.get("enable.partition.eof")
            if position >= len(records) and eof and key not in self.eof_sent and len(out) < num:
                out.append(
                    FakeMessage(
                        key[0], key[1], position, _error=KafkaError(KafkaError._PARTITION_EOF)
                    )
                )
                self.eof_sent.add(key)
        return out

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        if self.broker.refuse_commit is not None:
            error, self.broker.refuse_commit = self.broker.refuse_commit, None
            raise KafkaException(error)
        for tp in offsets:
            self.broker.committed[(tp.topic, tp.partition)] = tp.offset
            self.broker.commits.append((tp.topic, tp.partition, tp.offset))

    def committed(self, tps: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.broker.committed.get((tp.topic, tp.partition), -1001)
            )
            for tp in tps
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float = 0, cached: bool = False
    ) -> tuple[int, int]:
        return (0, len(self.broker.partitions.get((tp.topic, tp.partition), [])))

    def offsets_for_times(
        self, tps: list[TopicPartition], timeout: float = 0
    ) -> list[TopicPartition]:
        out = []
        for tp in tps:
            records = self.broker.partitions.get((tp.topic, tp.partition), [])
            found = next((i for i, r in enumerate(records) if r[2] >= tp.offset), -1)
            out.append(TopicPartition(tp.topic, tp.partition, found))
        return out

    def close(self) -> None:
        self.closed = True


def install(monkeypatch: Any, broker: FakeBroker) -> list[FakeConsumer]:
    """Make cdcflow's Kafka reader use fake consumers on ``broker``; returns them as created."""
    from cdcflow.io.kafka import client as kafka_client

    created: list[FakeConsumer] = []

    def new_consumer(settings: Any, **extra: Any) -> FakeConsumer:
        consumer = FakeConsumer(broker, settings.consumer_config(**extra))
        created.append(consumer)
        return consumer

    monkeypatch.setattr(kafka_client, "new_consumer", new_consumer)
    return created
