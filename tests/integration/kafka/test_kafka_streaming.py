"""Streaming mode: records arrive while the pipeline runs; SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

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
        stopped_at = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        assert time.monotonic() - stopped_at < 15
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


def test_double_signal_ends_promptly_and_a_rerun_loses_nothing(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=4)
    total = 4000
    produce(kafka_broker, topic, messages(range(1, total + 1)))
    pipeline = write_pipeline(
        tmp_path, kafka_broker, [topic], f"g-{topic}", extra_source={"max_batch_size": 20}
    )
    db = tmp_path / "out" / "mirror.sqlite"
    process = subprocess.Popen(
        cdcflow_argv("run", str(pipeline)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        _wait_for_rows(db, 1, process)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The second signal may land after the first already finished the run (0) or after the
    # handlers were restored (-SIGTERM); either way the process ends promptly.
    assert process.returncode in (0, 1, -signal.SIGTERM), err
    if process.returncode == 1:
        assert "aborted by a second SIGTERM" in err
    rerun = run_cli("run", str(pipeline), "--until-caught-up")
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(sqlite_rows(db)) == list(range(1, total + 1))
