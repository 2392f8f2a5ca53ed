"""examples/kafka, unchanged, on the Flink engine: the same YAML runs on both engines."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.servers.flink import FlinkVenv
from tests.servers.tansu import consume_all, create_topic, produce, start_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own: the example's topic names are fixed, and the session
    broker already holds them from the Beam run of the same example."""
    server, bootstrap = start_broker(tmp_path / "tansu")
    try:
        yield bootstrap
    finally:
        server.stop()


def test_kafka_example_runs_on_the_flink_engine(
    flink_venv: FlinkVenv, kafka_broker: str, example_copy: Callable[[str], Path]
) -> None:
    directory = example_copy("kafka")
    create_topic(kafka_broker, "demo.shop.changelog", partitions=1)
    create_topic(kafka_broker, "demo.dlq", partitions=1)
    messages: list[tuple[bytes | None, bytes | None]] = []
    for line in (EXAMPLES / "quickstart" / "shop-changelog.jsonl").read_bytes().splitlines():
        key, _, value = line.partition(b"\t")
        messages.append((key or None, None if value == b"null" else value))
    produce(kafka_broker, "demo.shop.changelog", messages)

    jars = [arg for jar in flink_venv.jars for arg in ("--jar", str(jar))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDCFLOW_FLINK")}
    result = subprocess.run(
        [str(flink_venv.cdcflow), "run", "pipeline.yaml", "--engine", "flink",
         "--until-caught-up", *jars],
        cwd=directory,
        env={**env, "KAFKA_BOOTSTRAP": kafka_broker},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with sqlite3.connect(directory / "output" / "shop.sqlite") as conn:
        counts = {
            table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            for table in ("articles", "customers", "orders", "products")
        }
    assert counts == {"articles": 1, "customers": 2, "orders": 2, "products": 4}
    letters = consume_all(kafka_broker, "demo.dlq", expected=1)
    assert len(letters) == 1
    assert letters[0].value() in [m[1] for m in messages]
