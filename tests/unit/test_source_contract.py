"""The Source contract the engines and commands ask instead of checking concrete types."""

from __future__ import annotations

from pathlib import Path

from cdcflow.core.source import Source
from cdcflow.io.files import FileSource
from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.io.kafka.source import KafkaSource
from cdcflow.testing import MemorySource


def test_the_defaults_describe_a_bounded_source_without_servers() -> None:
    source = Source()
    assert source.bounded is True
    assert source.ride_through_outages is False
    assert source.end_offsets() is None
    assert source.describe_positions([("orders", "0")]) == []


def test_files_and_memory_are_bounded_kafka_is_not(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text("{}\n")
    assert FileSource([path]).bounded
    assert MemorySource([]).bounded
    kafka = KafkaSource(KafkaSettings(bootstrap_servers="b:9092", group_id="g", topics=("t",)))
    assert not kafka.bounded
    assert kafka.ride_through_outages is False  # set by a restarting streaming run only


def test_a_kafka_source_that_commits_nothing_stores_no_positions() -> None:
    settings = KafkaSettings(
        bootstrap_servers="b:9092", group_id="g", topics=("t",), commit_offsets=False
    )
    # No broker is asked: the group holds nothing for this pipeline.
    assert KafkaSource(settings).describe_positions([("t", "0")]) == []
