"""The Kafka dead-letter writer against a fake producer: bytes, headers, flush, failures."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace
from typing import Any

import pytest

import cdcflow.io.kafka.dead_letters as dlq
from cdcflow.errors import SinkError
from cdcflow.io.kafka import client as kafka_client
from cdcflow.schemas.model import DeadLetter, Position


class FakeProducer:
    def __init__(self, config: dict[str, Any], fail: str | None = None, stuck: int = 0) -> None:
        self.config = config
        self.sent: list[dict[str, Any]] = []
        self.pending: list[Any] = []
        self.fail = fail
        self.stuck = stuck
        self.flushes = 0

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})
        self.pending.append(kwargs["on_delivery"])

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        for callback in self.pending:
            callback(self.fail, None)
        self.pending = []
        return self.stuck


def install(monkeypatch: pytest.MonkeyPatch, **behaviour: Any) -> list[FakeProducer]:
    created: list[FakeProducer] = []

    def producer(config: dict[str, Any], logger: Any = None) -> FakeProducer:
        created.append(FakeProducer(config, **behaviour))
        return created[-1]

    fake = SimpleNamespace(Producer=producer, KafkaException=RuntimeError)
    monkeypatch.setattr(kafka_client, "confluent", lambda: fake)
    return created


RAW = DeadLetter(
    step="decode",
    reason="not valid JSON",
    error_type="DecodeError",
    position=Position("shop.public.orders", 2, 41),
    value=b"\xff\x00raw",
    key=b"k",
    failed_at_ms=1_700_000_000_123,
)
EVENT = DeadLetter(
    step="write:mirror",
    reason="value too long",
    error_type="RowRejectedError",
    position=Position("shop.public.orders", 0, 7),
    event={"op": "c", "after": {"id": 1}},
    failed_at_ms=1_700_000_000_000,
)


def test_writes_original_bytes_and_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    producers = install(monkeypatch)
    writer = dlq.KafkaDeadLetterWriter(
        "b:9092", "shop.dlq", "shop-cdc", producer_config={"sasl.password": "pw"}
    )
    writer.write([RAW, EVENT])
    producer = producers[0]
    assert producer.config["enable.idempotence"] is True
    assert producer.config["acks"] == "all"
    assert producer.config["sasl.password"] == "pw"
    assert producer.flushes == 1
    raw, event = producer.sent
    assert (raw["topic"], raw["key"], raw["value"]) == ("shop.dlq", b"k", b"\xff\x00raw")
    headers = dict(raw["headers"])
    assert headers == {
        "cdcflow.reason": b"not valid JSON",
        "cdcflow.error.type": b"DecodeError",
        "cdcflow.step": b"decode",
        "cdcflow.pipeline": b"shop-cdc",
        "cdcflow.failed.at": b"2023-11-14T22:13:20.123+00:00",
        "cdcflow.payload": b"original",
        "cdcflow.source.topic": b"shop.public.orders",
        "cdcflow.source.partition": b"2",
        "cdcflow.source.offset": b"41",
    }
    assert json.loads(event["value"]) == {"op": "c", "after": {"id": 1}}
    assert dict(event["headers"])["cdcflow.payload"] == b"event-json"
    assert writer.written == 2
    writer.write([])
    assert producer.flushes == 1


def test_delivery_failures_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fail="Broker: Topic authorization failed")
    writer = dlq.KafkaDeadLetterWriter("b:9092", "shop.dlq", "p")
    with pytest.raises(SinkError, match="Topic authorization failed"):
        writer.write([RAW])


def test_unacknowledged_letters_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, stuck=1)
    writer = dlq.KafkaDeadLetterWriter("b:9092", "shop.dlq", "p", flush_timeout_s=0.1)
    with pytest.raises(SinkError, match="not acknowledged"):
        writer.write([RAW])


def test_pickles_without_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    writer = dlq.KafkaDeadLetterWriter("b:9092", "shop.dlq", "p")
    writer.open()
    copy = pickle.loads(pickle.dumps(writer))
    assert copy._producer is None and copy.topic == "shop.dlq"
    assert writer.describe() == ["dead letters: Kafka topic shop.dlq on b:9092"]


def test_long_reasons_are_truncated() -> None:
    letter = DeadLetter(step="s", reason="x" * 10_000, error_type="E", position=None)
    headers = dict(dlq.letter_headers(letter, "p"))
    assert len(headers["cdcflow.reason"]) == 4096
    assert "cdcflow.source.topic" not in headers
