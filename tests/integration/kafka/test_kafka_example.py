"""examples/kafka: the quick start's changelog through Kafka into SQLite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.kafka.helpers import REPO
from tests.servers.tansu import consume_all, create_topic, produce

pytestmark = pytest.mark.integration


def test_kafka_example(kafka_broker: str, example_copy: Callable[[str], Path]) -> None:
    directory = example_copy("kafka")
    create_topic(kafka_broker, "demo.shop.changelog", partitions=1)
    create_topic(kafka_broker, "demo.dlq", partitions=1)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for line in (
        (REPO / "examples" / "quickstart" / "shop-changelog.jsonl").read_bytes().splitlines()
    ):
        key, _, value = line.partition(b"\t") if b"\t" in line else (b"", b"", line)
        messages.append((key or None, None if value == b"null" else value))
    produce(kafka_broker, "demo.shop.changelog", messages)

    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_broker, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", "from cdcflow.pipelines.cli import main; main()"]
    result = subprocess.run(
        [*command, "run", "pipeline.yaml", "--until-caught-up"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"records read: {len(messages)}" in result.stdout
    with sqlite3.connect(directory / "output" / "shop.sqlite") as conn:
        counts = {
            table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            for table in ("articles", "customers", "orders", "products")
        }
    assert counts == {"articles": 1, "customers": 2, "orders": 2, "products": 4}
    letters = consume_all(kafka_broker, "demo.dlq", expected=1)
    assert len(letters) == 1
    assert letters[0].value() in [m[1] for m in messages]

    again = subprocess.run(
        [*command, "run", "pipeline.yaml", "--until-caught-up"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "records read: 0" in again.stdout
