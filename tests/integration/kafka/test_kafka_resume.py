"""Resume after SIGKILL: nothing lost, nothing duplicated, in a mirror and a history sink."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.integration.kafka.helpers import (
    REPO,
    cdcflow_argv,
    group_offsets,
    messages,
    run_cli,
    sqlite_rows,
    write_pipeline,
)
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration

TOTAL = 6000


def _history(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute('SELECT _cdc_partition, _cdc_offset FROM "orders"').fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(str(p), int(o)) for p, o in rows]


def test_sigkill_mid_stream_then_resume(
    kafka_broker: str, pg_database: str, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=3)
    produce(kafka_broker, topic, messages(range(1, TOTAL + 1)))
    group = f"g-{topic}"
    pipeline = write_pipeline(
        tmp_path,
        kafka_broker,
        [topic],
        group,
        extra_source={"max_batch_size": 40},
        sinks=[
            {"name": "mirror", "type": "sqlite", "path": "out/mirror.sqlite"},
            {"name": "history", "type": "postgres", "dsn": pg_database, "mode": "append"},
        ],
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    partial_kills = 0
    for _ in range(3):
        process = subprocess.Popen(
            cdcflow_argv("run", str(pipeline)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=env,
        )
        before = len(_history(pg_database))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_history(pg_database)) <= before:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        written = len(_history(pg_database))
        if before < written < TOTAL:
            partial_kills += 1
    assert partial_kills >= 1, "no kill landed mid-stream"

    final = run_cli("run", str(pipeline), "--until-caught-up")
    assert final.returncode == 0, final.stderr
    history = _history(pg_database)
    assert len(history) == TOTAL, "events lost or duplicated in the append-only sink"
    assert len(set(history)) == TOTAL
    assert sorted(sqlite_rows(tmp_path / "out" / "mirror.sqlite")) == list(range(1, TOTAL + 1))
    committed = group_offsets(kafka_broker, group, topic, 3)
    per_partition = {p: 0 for p in range(3)}
    for partition, _ in history:
        per_partition[int(partition)] += 1
    assert committed == per_partition
