"""The Tansu fixture itself: topics with partitions, produce with flush, read back."""

from __future__ import annotations

import pytest

from tests.servers.tansu import consume_all, create_topic, produce, unique_topic

pytestmark = pytest.mark.integration


def test_create_topic_produce_and_read_back(kafka_broker: str) -> None:
    topic = unique_topic("fixture")
    create_topic(kafka_broker, topic, partitions=3)
    sent = produce(kafka_broker, topic, [(f"k{i}", f"v{i}") for i in range(30)])
    assert sent == 30
    produce(kafka_broker, topic, [("p2", "fixed")], partition=2, headers=[("h", b"1")])
    messages = consume_all(kafka_broker, topic, expected=31)
    assert sorted(m.value() for m in messages) == sorted(
        [f"v{i}".encode() for i in range(30)] + [b"fixed"]
    )
    fixed = [m for m in messages if m.key() == b"p2"]
    assert fixed[0].partition() == 2
    assert fixed[0].headers() == [("h", b"1")]
    assert {m.partition() for m in messages} == {0, 1, 2}
