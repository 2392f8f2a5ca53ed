"""Streaming mode: records arrive while the pipeline runs; SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.kafka.helpers import (
    REPO,
    cdcflow_argv,
    group_offsets,
    messages,
    run_cli,
    sqlite_positions,
    sqlite_rows,
    write_pipeline,
)
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration


def _wait_for_rows(
    db: Path, count: int, process: subprocess.Popen[str], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        if db.exists():
            try:
                if len(sqlite_rows(db)) >= count:
                    return
            except Exception:  # the table may not exist yet
                pass
        time.sleep(0.2)
    raise AssertionError(f"{db} did not reach {count} rows in {timeout}s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_streaming_until_signal(kafka_broker: str, tmp_path: Path, signum: int) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, messages(range(1, 101)))
    group = f"g-{topic}"
    pipeline = write_pipeline(tmp_path, kafka_broker, [topic], group)
    db = tmp_path / "out" / "mirror.sqlite"
    # Restart the run in a fresh runner every second (epochs; normally every 10 minutes).
    env = {**os.environ, "PYTHONPATH": str(REPO), "CDCFLOW_STREAMING_EPOCH_S": "1"}
    process = subprocess.Popen(
        cdcflow_argv("--log-level", "info", "run", str(pipeline)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        _wait_for_rows(db, 100, process)
        # Records produced while the pipeline runs are picked up, also after a restart.
        time.sleep(1.5)  # past the first epoch's end
        produce(kafka_broker, topic, messages(range(101, 151)))
        _wait_for_rows(db, 150, process)
        process.send_signal(signum)
        # How fast it stops is measured by benchmarks/soak_streaming.py (stop_s), not here.
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopped by signal" in out
    assert "records read: 150" in out
    assert "streaming epoch 1 ended" in err
    assert sorted(sqlite_rows(db)) == list(range(1, 151))
    positions = sqlite_positions(db)
    assert group_offsets(kafka_broker, group, topic, 2) == {
        int(p): off + 1 for (_, p), off in positions.items()
    }


def _blocked_on_a_lock(admin: psycopg.Connection[Any]) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'cdcflow:%' "
        "AND wait_event_type = 'Lock'"
    ).fetchone()
    return bool(row and row[0])


def test_a_second_signal_aborts_a_run_whose_write_is_in_hand(
    kafka_broker: str, pg_database: str, tmp_path: Path
) -> None:
    """The second SIGTERM always ends the run at once with exit code 1.

    Deterministic: the test holds a lock on the target table, so the sink's write of the
    second batch is provably in hand (PostgreSQL shows the session waiting on the lock) when
    both signals arrive; the first cannot finish the run before the second lands.
    """
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, messages(range(1, 101)))
    pipeline = write_pipeline(
        tmp_path,
        kafka_broker,
        [topic],
        f"g-{topic}",
        sinks=[{"name": "wh", "type": "postgres", "dsn": pg_database}],
    )
    process = subprocess.Popen(
        cdcflow_argv("run", str(pipeline)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    admin = psycopg.connect(pg_database, autocommit=True)
    try:
        deadline = time.monotonic() + 90
        while _pg_ids(admin) != list(range(1, 101)):
            assert process.poll() is None and time.monotonic() < deadline, "no first batch"
            time.sleep(0.2)
        with admin.transaction():
            admin.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            with psycopg.connect(pg_database, autocommit=True) as watcher:
                produce(kafka_broker, topic, messages(range(101, 201)))
                while not _blocked_on_a_lock(watcher):
                    assert process.poll() is None and time.monotonic() < deadline, "no write"
                    time.sleep(0.2)
                process.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                assert process.poll() is None  # the first signal waits for the write in hand
                process.send_signal(signal.SIGTERM)
                _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, err
    assert "error: aborted by a second SIGTERM before the run finished" in err
    assert _pg_ids(admin) == list(range(1, 101))  # nothing of the aborted batch committed
    rerun = run_cli("run", str(pipeline), "--until-caught-up")
    assert rerun.returncode == 0, rerun.stderr
    assert _pg_ids(admin) == list(range(1, 201))
    admin.close()


def _pg_ids(conn: psycopg.Connection[Any]) -> list[int]:
    try:
        return [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id")]
    except psycopg.errors.UndefinedTable:
        return []
