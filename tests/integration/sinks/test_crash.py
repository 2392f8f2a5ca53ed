"""The crash test: SIGKILL a three-sink pipeline at five random moments; every sink stays exact.

100k Debezium JSON events (seeded: 60% creates, 35% updates, 5% deletes over 20k keys) are
produced to a two-partition Kafka topic (the Tansu broker). One pipeline writes them to
PostgreSQL (upsert mirror), PostgreSQL (append history) and ClickHouse. ``cdcflow run
--until-caught-up`` runs in a subprocess that is killed with SIGKILL five times, each time when
the mirror's committed progress passes a random threshold (plus a random delay up to 0.2 s),
and restarted; the sixth run finishes. The data is fixed; every random choice of the kills
(thresholds, minimum progress per run, delays) comes from one kill seed, printed at the start
and in every failure message: ``CDCFLOW_CRASH_SEED=<seed>`` replays a failing run's kill plan
(where progress really stands at a kill still depends on timing). Then:

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
from dataclasses import dataclass
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
#: Environment variable that fixes the kill seed (replaying a failed run's kill plan).
SEED_ENV = "CDCFLOW_CRASH_SEED"


@dataclass(frozen=True)
class Kill:
    """One planned kill: when the mirror's progress passes ``threshold`` (and this run made
    at least ``min_progress`` of its own), wait ``delay_s`` and SIGKILL."""

    threshold: int
    min_progress: int
    delay_s: float


def kill_seed() -> int:
    """The kill seed: ``$CDCFLOW_CRASH_SEED`` when set, else a fresh random one."""
    text = os.environ.get(SEED_ENV, "").strip()
    return int(text) if text else random.SystemRandom().randrange(2**63)


def kill_plan(seed: int) -> list[Kill]:
    """Every random choice of the crash test, drawn from ``seed`` up front and in order."""
    rng = random.Random(seed)
    thresholds = sorted(rng.sample(range(EVENTS // 20, EVENTS * 7 // 10), KILLS))
    return [Kill(t, rng.randrange(500, 4000), rng.uniform(0, 0.2)) for t in thresholds]


def test_kill_plan_is_a_function_of_the_seed() -> None:
    """The replay promise: the same seed gives the same kills, another seed other kills."""
    assert kill_plan(12345) == kill_plan(12345)
    assert kill_plan(12345) != kill_plan(12346)
    plan = kill_plan(987)
    assert len(plan) == KILLS
    assert [k.threshold for k in plan] == sorted(k.threshold for k in plan)
    assert all(500 <= k.min_progress < 4000 and 0 <= k.delay_s <= 0.2 for k in plan)


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
    seed = kill_seed()
    print(f"crash test kill seed: {seed} (replay with {SEED_ENV}={seed})")
    replay = f"kill seed {seed}, replay with {SEED_ENV}={seed}"
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

    killed_at: list[int] = []
    for kill in kill_plan(seed):
        # Kill after this run itself made progress (past the threshold and past where it
        # began), early enough that it cannot finish first.
        begun = _progress(pg_database)
        threshold = min(
            max(kill.threshold, begun + kill.min_progress), max(begun + 500, EVENTS * 8 // 10)
        )
        process = _start(pipeline, run_log)
        deadline = time.monotonic() + 240
        while _progress(pg_database) < threshold and process.poll() is None:
            assert time.monotonic() < deadline, f"no progress ({replay})"
            time.sleep(0.05)
        time.sleep(kill.delay_s)
        assert process.poll() is None, (
            f"the run ended before the kill ({replay}):\n{run_log.read_text()[-3000:]}"
        )
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        killed_at.append(_progress(pg_database))
    # every killed run progressed and none finished
    assert killed_at == sorted(set(killed_at)), (killed_at, replay)
    assert killed_at[-1] < EVENTS, replay
    final = _start(pipeline, run_log)
    assert final.wait(300) == 0, replay + "\n" + run_log.read_text()[-3000:]
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
    assert mirror == expected, replay

    assert len(history) == EVENTS, replay
    assert len({(p, o) for p, o, _, _ in history}) == EVENTS, replay  # each position once
    per_key: dict[int, list[str]] = {}
    for _, _, op, ident in history:
        per_key.setdefault(ident, []).append(op)
    expected_ops: dict[int, list[str]] = {}
    for op, ident in log.ops:
        expected_ops.setdefault(ident, []).append(op)
    assert per_key == expected_ops, replay

    db = ch_database.rsplit("/", 1)[1]
    client = Client.from_url(ch_database)
    try:
        olap = {
            r[0]: (r[1], r[2], r[3])
            for r in client.execute(f"SELECT id, name, qty, price FROM {db}.items_current")
        }
    finally:
        client.disconnect()
    assert olap == expected, replay
    assert not (tmp_path / "dead.jsonl").exists() or not (tmp_path / "dead.jsonl").read_text()
