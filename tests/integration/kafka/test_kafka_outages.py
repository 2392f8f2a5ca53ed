"""Streaming runs ride through a sink outage and a broker restart; refused logins are terminal.

Regression for issue 10 items 4 and 9: PostgreSQL stopped for 20 s mid-run ended the run
(``giving up after 6 attempts in 5.3s``), and a wrong password was retried six times.

The Tansu broker of the tests keeps its log in memory, so a restarted broker is empty. The
broker test therefore produces the same records again after the restart, in the same order to
the same partitions: the log then holds what a persistent broker would have kept (same offsets,
same contents), and the run must carry on from its stored positions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integration.kafka.helpers import REPO, cdcflow_argv, messages, run_cli, write_pipeline
from tests.servers.postgres import PostgresServer
from tests.servers.tansu import create_topic, produce, start_broker, unique_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server this test may stop and start."""
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="cdcflow-pg-")), tmp_path)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def _pg_ids(dsn: str) -> list[int]:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id")]
    except psycopg.Error:
        return []


def _start(pipeline: Path, log: Path, **env: str) -> subprocess.Popen[str]:
    with log.open("w") as stderr:
        return subprocess.Popen(
            cdcflow_argv("--log-level", "info", "run", str(pipeline)),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
        )


def _wait(
    predicate: Callable[[], bool], process: subprocess.Popen[str], log: Path, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cdcflow exited {process.returncode}:\n{log.read_text()[-4000:]}")
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[str]) -> str:
    try:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return out


def test_streaming_rides_through_a_postgres_restart(
    kafka_broker: str, own_postgres: PostgresServer, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=2)
    dsn = own_postgres.create_database()
    pipeline = write_pipeline(
        tmp_path,
        kafka_broker,
        [topic],
        f"g-{topic}",
        sinks=[{"name": "wh", "type": "postgres", "dsn": dsn}],
    )
    log = tmp_path / "cdcflow.log"
    produce(kafka_broker, topic, messages(range(1, 101)))
    process = _start(pipeline, log)
    try:
        _wait(lambda: len(_pg_ids(dsn)) == 100, process, log)
        own_postgres.stop()
        produce(kafka_broker, topic, messages(range(101, 201)))
        _wait(lambda: "transient failure, retrying for up to 300s" in log.read_text(), process, log)
        time.sleep(20)  # a 20-second outage, as in the issue
        assert process.poll() is None, log.read_text()[-4000:]
        own_postgres.start()
        _wait(lambda: len(_pg_ids(dsn)) == 200, process, log)
    finally:
        out = _stop(process)
    err = log.read_text()
    assert process.returncode == 0, err[-4000:]
    assert _pg_ids(dsn) == list(range(1, 201))
    assert "records read: 200" in out
    assert err.count("transient failure, retrying for up to 300s") == 1, err
    assert "sink 'wh': write of" in err and "recovered after" in err
    assert "giving up" not in err


def test_streaming_rides_through_a_broker_restart(tmp_path: Path) -> None:
    broker, bootstrap = start_broker(tmp_path)
    port = int(bootstrap.rsplit(":", 1)[1])
    topic = unique_topic("shop.public.orders")
    first = messages(range(1, 101))
    try:
        create_topic(bootstrap, topic, partitions=2)
        produce(bootstrap, topic, first)
        pipeline = write_pipeline(
            tmp_path, bootstrap, [topic], f"g-{topic}", extra_source={"metadata_timeout_ms": 2000}
        )
        db = tmp_path / "out" / "mirror.sqlite"
        log = tmp_path / "cdcflow.log"
        # Short epochs, so that restarts happen while the broker is down.
        process = _start(pipeline, log, CDCFLOW_STREAMING_EPOCH_S="3")
        try:
            _wait(lambda: _sqlite_count(db) == 100, process, log)
            broker.stop()
            time.sleep(15)  # several epoch ends while the broker is down
            assert process.poll() is None, log.read_text()[-4000:]
            broker, _ = start_broker(tmp_path, port=port)
            create_topic(bootstrap, topic, partitions=2)
            produce(bootstrap, topic, first)  # what a persistent broker would have kept
            produce(bootstrap, topic, messages(range(101, 201)))
            _wait(lambda: _sqlite_count(db) == 200, process, log)
        finally:
            out = _stop(process)
    finally:
        broker.stop()
    err = log.read_text()
    assert process.returncode == 0, err[-4000:]
    assert _sqlite_count(db) == 200
    assert "records read: 200" in out
    assert f"source: listing topics on {bootstrap}: transient failure" in err, err[-4000:]
    assert "recovered after" in err


def _sqlite_count(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_refused_login_is_not_retried(
    kafka_broker: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic)
    produce(kafka_broker, topic, messages(range(1, 3)))
    dsn = f"postgresql://nobody@127.0.0.1:{postgres_server.port}/postgres"
    pipeline = write_pipeline(
        tmp_path,
        kafka_broker,
        [topic],
        f"g-{topic}",
        sinks=[{"name": "wh", "type": "postgres", "dsn": dsn}],
    )
    result = run_cli("run", str(pipeline), "--until-caught-up")
    assert result.returncode == 1, result.stderr
    assert 'role "nobody" does not exist' in result.stderr
    assert "transient failure" not in result.stderr
    assert "giving up" not in result.stderr


def test_a_wrong_broker_address_gives_one_client_line_and_one_error(tmp_path: Path) -> None:
    # Regression (issue 10 item 7): 15 s of silence, then about 290 identical librdkafka
    # "Connection refused" lines before the error.
    from tests.servers import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    pipeline = write_pipeline(
        tmp_path, address, ["shop.public.orders"], "g", extra_source={"metadata_timeout_ms": 3000}
    )
    result = run_cli("run", str(pipeline))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    client_lines = [line for line in lines if "cdcflow.kafka.client" in line]
    assert len(client_lines) == 1, result.stderr
    assert "Connection refused" in client_lines[0]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert (
        f"no Kafka broker at {address} answered within 3s (source.metadata_timeout_ms)"
        in (errors[0])
    )
    assert "Connection refused" in errors[0]
