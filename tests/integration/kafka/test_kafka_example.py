"""examples/kafka: the quick start's changelog through Kafka into SQLite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.console import cdcflow_script
from tests.integration.kafka.helpers import REPO
from tests.servers.tansu import consume_all

pytestmark = pytest.mark.integration


def test_kafka_example(kafka_broker: str, example_copy: Callable[[str], Path]) -> None:
    directory = example_copy("kafka")
    example_copy("quickstart")  # produce.sh's default input: ../quickstart/shop-changelog.jsonl
    # As the example's README says: feed the topic with produce.sh (cdcflow produce, no kcat).
    fed = subprocess.run(
        [str(directory / "produce.sh")],
        env={**os.environ, "KAFKA_BOOTSTRAP": kafka_broker, "CDCFLOW": str(cdcflow_script())},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fed.returncode == 0, fed.stderr
    assert "produced 23 messages to demo.shop.changelog (2 tombstones)" in fed.stdout
    # What the broker holds, derived from the file independently of the producer's parser.
    messages: list[tuple[bytes | None, bytes | None]] = []
    for line in (
        (REPO / "examples" / "quickstart" / "shop-changelog.jsonl").read_bytes().splitlines()
    ):
        key, _, value = line.partition(b"\t") if b"\t" in line else (b"", b"", line)
        messages.append((key or None, None if value == b"null" else value))
    held = consume_all(kafka_broker, "demo.shop.changelog", expected=len(messages))
    assert [(m.key(), m.value()) for m in sorted(held, key=lambda m: m.offset())] == messages

    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_broker}
    command = [str(cdcflow_script())]
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
    # As the README says, status shows the sink caught up with the topic.
    status = subprocess.run(
        [*command, "status", "pipeline.yaml"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        "pipeline 'shop-kafka' (source kafka)",
        "  sink 'mirror' (sqlite):",
        f"    demo.shop.changelog[0]: position {len(messages) - 1}, end {len(messages)}, lag 0",
        "  consumer group 'cdcflow-shop-kafka':",
        f"    demo.shop.changelog[0]: committed {len(messages)}",
    ]
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
