"""``cdcflow status PIPELINE.yaml`` for a Kafka source with SQLite and PostgreSQL sinks, against
the real Tansu broker and PostgreSQL, run as a user runs it (the console script)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.console import cdcflow_script
from tests.integration.kafka.helpers import messages, write_pipeline
from tests.servers import free_port
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration


def cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cdcflow_script()), *args, "pipeline.yaml"],
        cwd=directory, capture_output=True, text=True, timeout=180, check=False,
    )


def sinks(dsn: str, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "mirror", "type": "sqlite", "path": "out/mirror.sqlite"},
        {"name": "warehouse", "type": "postgres", "dsn": dsn, "schema": "status_test",
         "retry": {"max_attempts": 1}},
        *extra,
    ]


def test_status_shows_positions_ends_and_lag(
    kafka_broker: str, pg_database: str, tmp_path: Path
) -> None:
    topic = unique_topic("status")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, messages(range(5)), partition=0)
    produce(kafka_broker, topic, messages(range(100, 103)), partition=1)
    group = f"g-{topic}"
    write_pipeline(tmp_path, kafka_broker, [topic], group, sinks=sinks(pg_database))

    # Before any run: nothing stored (and the PostgreSQL schema is not created by asking).
    before = cli(tmp_path, "status")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == [
        "pipeline 'kafka-test' (source kafka)",
        "  sink 'mirror' (sqlite):",
        f"    {topic}[0]: no position, end 5",
        f"    {topic}[1]: no position, end 3",
        "  sink 'warehouse' (postgres):",
        f"    {topic}[0]: no position, end 5",
        f"    {topic}[1]: no position, end 3",
        f"  consumer group '{group}':",
        f"    {topic}[0]: no committed offset",
        f"    {topic}[1]: no committed offset",
    ]
    assert not (tmp_path / "out").exists()
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT to_regnamespace('status_test')").fetchone() == (None,)

    assert cli(tmp_path, "run", "--until-caught-up").returncode == 0
    produce(kafka_broker, topic, messages(range(103, 107)), partition=1)
    # A sink added since: it has no positions yet (the next run backfills it from start:).
    write_pipeline(
        tmp_path, kafka_broker, [topic], group,
        sinks=sinks(pg_database, {"name": "late", "type": "sqlite", "path": "out/late.sqlite"},
                    {"name": "discard", "type": "null"}),
    )
    after = cli(tmp_path, "status")
    assert after.returncode == 0, after.stderr
    caught_up = [f"    {topic}[0]: position 4, end 5, lag 0",
                 f"    {topic}[1]: position 2, end 7, lag 4"]
    assert after.stdout.splitlines() == [
        "pipeline 'kafka-test' (source kafka)",
        "  sink 'mirror' (sqlite):", *caught_up,
        "  sink 'warehouse' (postgres):", *caught_up,
        "  sink 'late' (sqlite):",
        f"    {topic}[0]: no position, end 5",
        f"    {topic}[1]: no position, end 7",
        "  sink 'discard' (null): keeps no positions",
        # The group's offsets: the next offset to read, committed after the sinks wrote.
        f"  consumer group '{group}':",
        f"    {topic}[0]: committed 5",
        f"    {topic}[1]: committed 3",
    ]

    # PostgreSQL unreachable: the other sinks still print, the error names the sink, exit 1.
    dead = f"postgresql://postgres:Secret-pw@127.0.0.1:{free_port()}/postgres"
    write_pipeline(tmp_path, kafka_broker, [topic], group, sinks=sinks(dead))
    down = cli(tmp_path, "status")
    assert down.returncode == 1
    assert "  sink 'warehouse' (postgres): positions unknown" in down.stdout
    assert caught_up[1] in down.stdout
    assert "error: sink 'warehouse'" in down.stderr and "Secret-pw" not in down.stderr


def test_status_with_the_broker_down_still_prints_positions(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = unique_topic("status")
    create_topic(kafka_broker, topic, partitions=1)
    produce(kafka_broker, topic, messages(range(3)))
    write_pipeline(tmp_path, kafka_broker, [topic], f"g-{topic}")
    assert cli(tmp_path, "run", "--until-caught-up").returncode == 0
    write_pipeline(tmp_path, f"127.0.0.1:{free_port()}", [topic], f"g-{topic}",
                   extra_source={"consumer_config": {"session.timeout.ms": 6000,
                                                      "socket.connection.setup.timeout.ms": 1000}})
    down = cli(tmp_path, "status")
    assert down.returncode == 1
    assert f"    {topic}[0]: position 2" in down.stdout
    assert down.stderr.strip().splitlines()[-1].startswith("error: source (kafka):")
