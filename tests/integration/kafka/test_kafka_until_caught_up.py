"""``cdcflow run --until-caught-up`` from a Kafka topic into the SQLite sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.kafka.helpers import (
    group_offsets,
    messages,
    run_cli,
    sqlite_positions,
    sqlite_rows,
    write_pipeline,
)
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration


def test_three_partitions_until_caught_up_then_resume(kafka_broker: str, tmp_path: Path) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=3)
    produce(kafka_broker, topic, messages(range(1, 301)))
    group = f"g-{topic}"
    pipeline = write_pipeline(tmp_path, kafka_broker, [topic], group)

    first = run_cli("run", str(pipeline), "--until-caught-up")
    assert first.returncode == 0, first.stderr
    assert "finished in" in first.stdout
    db = tmp_path / "out" / "mirror.sqlite"
    rows = sqlite_rows(db)
    assert sorted(rows) == list(range(1, 301))
    assert rows[7] == (70, "n7")
    positions = sqlite_positions(db)
    assert {p for (_, p) in positions} == {"0", "1", "2"}
    committed = group_offsets(kafka_broker, group, topic, 3)
    # The group holds the next offset to read: one past what the sink stored.
    assert committed == {int(p): off + 1 for (_, p), off in positions.items()}
    assert sum(committed.values()) == 300

    # Updates and deletes arrive; a second run resumes where the first ended.
    produce(kafka_broker, topic, messages(range(1, 51), op="u") + messages(range(51, 61), op="d"))
    produce(kafka_broker, topic, messages(range(301, 311)))
    second = run_cli("run", str(pipeline), "--until-caught-up")
    assert second.returncode == 0, second.stderr
    assert "records read: 70" in second.stdout
    rows = sqlite_rows(db)
    assert sorted(rows) == [i for i in range(1, 311) if not 51 <= i <= 60]
    assert sum(group_offsets(kafka_broker, group, topic, 3).values()) == 370
