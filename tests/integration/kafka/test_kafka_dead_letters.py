"""Malformed messages reach a Kafka dead-letter topic with their bytes intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.kafka.helpers import (
    group_offsets,
    key,
    messages,
    run_cli,
    sqlite_rows,
    write_pipeline,
)
from tests.servers.tansu import consume_all, create_topic, produce, unique_topic

pytestmark = pytest.mark.integration


def test_malformed_messages_go_to_the_kafka_dead_letter_topic(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    dlq = unique_topic("shop.dlq")
    create_topic(kafka_broker, topic, partitions=1)
    create_topic(kafka_broker, dlq, partitions=1)
    bad = [
        (b"k-broken", b'{"op": "c", "after": {"id": 1'),
        (None, b"\xff\x00\x01binary"),
        (key(99).encode(), b'{"op": "x", "after": {"id": 99}, "source": {"table": "orders"}}'),
    ]
    produce(kafka_broker, topic, messages(range(1, 6)))
    produce(kafka_broker, topic, bad)
    produce(kafka_broker, topic, messages(range(6, 11)))
    group = f"g-{topic}"
    pipeline = write_pipeline(
        tmp_path,
        kafka_broker,
        [topic],
        group,
        dead_letter={"type": "kafka", "bootstrap_servers": kafka_broker, "topic": dlq},
    )
    result = run_cli("run", str(pipeline), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    assert f"dead letters: Kafka topic {dlq}" in result.stdout
    assert sorted(sqlite_rows(tmp_path / "out" / "mirror.sqlite")) == list(range(1, 11))
    assert group_offsets(kafka_broker, group, topic, 1) == {0: 13}

    letters = consume_all(kafka_broker, dlq, expected=3)
    assert len(letters) == 3
    assert [(m.key(), m.value()) for m in letters] == bad
    for message, offset in zip(letters, (5, 6, 7), strict=True):
        headers = dict(message.headers())
        assert headers["cdcflow.source.topic"] == topic.encode()
        assert headers["cdcflow.source.partition"] == b"0"
        assert headers["cdcflow.source.offset"] == str(offset).encode()
        assert headers["cdcflow.step"] == b"decode"
        assert headers["cdcflow.payload"] == b"original"
        assert headers["cdcflow.pipeline"] == b"kafka-test"
        assert headers["cdcflow.failed.at"].endswith(b"+00:00")
    reasons = [dict(m.headers())["cdcflow.reason"].decode() for m in letters]
    assert "not valid JSON" in reasons[0]
    assert "not valid JSON" in reasons[1]
    assert "unknown op 'x'" in reasons[2]
