"""The crash test: SIGKILL a three-sink pipeline at five random moments; every sink stays exact.

100k Debezium JSON events (seeded: 60% creates, 35% updates, 5% deletes over 20k keys) are
produced to a two-partition Kafka topic (the Tansu broker). One pipeline writes them to
PostgreSQL (upsert mirror), PostgreSQL (append history) and ClickHouse. ``cdcflow run
--until-caught-up`` runs in a subprocess that is killed with SIGKILL five times, each time when
the mirror's committed progress passes a random threshold (plus a random delay up to 0.2 s;
the moments differ per run, the data does not), and restarted; the sixth run finishes. Then:

* the PostgreSQL mirror equals the expected final state;
* the history table holds every event exactly once (each Kafka position once, and per key the
  operations in order);
* ClickHouse ``FINAL`` without deleted rows (the ``items_current`` view) equals the final state.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from clickhouse_driver import Client

from tests.integration.sinks.events import REPO, cdcflow_argv, generate_changelog
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration

EVENTS = 100_000
KEYS = 20_000
KILLS = 5
SEED = 20261124


def _progress(dsn: str) -> int:
    """Records the mirror has committed (sum over partitions of offset + 1)."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute(
                'SELECT coalesce(sum("offset" + 1), 0) FROM cdcflow_offsets WHERE sink = %s',
                ("mirror",),
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def _start(pipeline: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*cdcflow_argv("run", str(pipeline), "--until-caught-up")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )


def test_sigkill_five_times_every_sink_ends_exact(
    kafka_broker: str, pg_database: str, ch_database: str, tmp_path: Path
) -> None:
    kill_seed = time.time_ns()  # the kill moments differ per run; the data does not
    rng = random.Random(kill_seed)
    log = generate_changelog(EVENTS, KEYS, seed=SEED, with_schema=False)
    topic = unique_topic("shop.public.items")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, log.messages)
    config: dict[str, Any] = {
        "pipeline": "crash-test",
        "source": {
            "type": "kafka",
            "bootstrap_servers": kafka_broker,
            "topics": [topic],
            "group_id": f"g-{topic}",
            "start": "earliest",
            "consumer_config": {"session.timeout.ms": 6000},
            "max_batch_size": 2000,
        },
        "sinks": [
            {"name": "mirror", "type": "postgres", "dsn": pg_database},
            {
                "name": "history",
                "type": "postgres",
                "dsn": pg_database,
                "mode": "append",
                "table_map": {"shop.public.items": "items_history"},
            },
            {"name": "olap", "type": "clickhouse", "dsn": ch_database},
        ],
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
    }
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(config, sort_keys=False))
    run_log = tmp_path / "runs.log"

    thresholds = sorted(rng.sample(range(EVENTS // 20, EVENTS * 7 // 10), KILLS))
    killed_at: list[int] = []
    for threshold in thresholds:
        # Kill after this run itself made progress (past the threshold and past where it
        # began), early enough that it cannot finish first.
        begun = _progress(pg_database)
        threshold = min(
            max(threshold, begun + rng.randrange(500, 4000)), max(begun + 500, EVENTS * 8 // 10)
        )
        process = _start(pipeline, run_log)
        deadline = time.monotonic() + 240
        while _progress(pg_database) < threshold and process.poll() is None:
            assert time.monotonic() < deadline, f"no progress (kill seed {kill_seed})"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.2))
        assert process.poll() is None, (
            f"the run ended before the kill:\n{run_log.read_text()[-3000:]}"
        )
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        killed_at.append(_progress(pg_database))
    # every killed run progressed and none finished
    assert killed_at == sorted(set(killed_at)), (killed_at, kill_seed)
    assert killed_at[-1] < EVENTS
    final = _start(pipeline, run_log)
    assert final.wait(300) == 0, run_log.read_text()[-3000:]
    assert _progress(pg_database) == EVENTS

    expected = {ident: (name, qty, price) for ident, (name, qty, price) in log.final.items()}
    with psycopg.connect(pg_database) as conn:
        mirror = {
            r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT id, name, qty, price FROM items")
        }
        history = conn.execute(
            "SELECT _cdc_partition, _cdc_offset, _cdc_op, id FROM items_history "
            "ORDER BY _cdc_partition, _cdc_offset"
        ).fetchall()
    assert mirror == expected, f"kill seed {kill_seed}"

    assert len(history) == EVENTS
    assert len({(p, o) for p, o, _, _ in history}) == EVENTS  # each position exactly once
    per_key: dict[int, list[str]] = {}
    for _, _, op, ident in history:
        per_key.setdefault(ident, []).append(op)
    expected_ops: dict[int, list[str]] = {}
    for op, ident in log.ops:
        expected_ops.setdefault(ident, []).append(op)
    assert per_key == expected_ops

    db = ch_database.rsplit("/", 1)[1]
    client = Client.from_url(ch_database)
    try:
        olap = {
            r[0]: (r[1], r[2], r[3])
            for r in client.execute(f"SELECT id, name, qty, price FROM {db}.items_current")
        }
    finally:
        client.disconnect()
    assert olap == expected
    assert not (tmp_path / "dead.jsonl").exists() or not (tmp_path / "dead.jsonl").read_text()
