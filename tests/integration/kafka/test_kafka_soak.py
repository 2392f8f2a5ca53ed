"""A short soak: streaming through epoch restarts with a realistic number of bundles per epoch.

Regression for issue 10 item 1: a streaming run died at its first 10-minute epoch restart with
``RecursionError`` (Beam's lazy per-bundle metric merge, see :mod:`cdcflow.beam.fnapi`). The
depth grew with the bundles of an epoch: with the default poll timeout (500 ms) an idle
streaming reader starts about two bundles a second, 1,200 in a 10-minute epoch. Here the poll
timeout is the minimum (10 ms) and each epoch ends after :data:`BUNDLES` bundles
(``CDCFLOW_STREAMING_EPOCH_BUNDLES``), so the same bundle count per epoch is reached in seconds
rather than minutes. The long run at the default interval is ``benchmarks/soak_streaming.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.kafka.helpers import (
    REPO,
    cdcflow_argv,
    messages,
    sqlite_rows,
    write_pipeline,
)
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration

#: Bundles per epoch: what a 10-minute epoch at the default poll timeout starts (about 1,200).
BUNDLES = 1200
#: Epoch restarts the test waits for.
RESTARTS = 2


def _wait_for(predicate: object, process: subprocess.Popen[str], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cdcflow exited {process.returncode}:\n{log.read_text()[-3000:]}")
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s:\n{log.read_text()[-3000:]}")


def test_streaming_survives_epoch_restarts_with_many_bundles(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=2)
    pipeline = write_pipeline(
        tmp_path, kafka_broker, [topic], f"g-{topic}", extra_source={"poll_timeout_ms": 10}
    )
    db = tmp_path / "out" / "mirror.sqlite"
    log = tmp_path / "cdcflow.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CDCFLOW_STREAMING_EPOCH_BUNDLES": str(BUNDLES),
        "CDCFLOW_STREAMING_EPOCH_S": "600",
    }
    with log.open("w") as stderr:
        process = subprocess.Popen(
            cdcflow_argv("--log-level", "info", "run", str(pipeline)),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            env=env,
        )
    ended = re.compile(r"streaming epoch (\d+) ended after \S+ and (\d+) bundles")
    produced = 0
    try:
        # Records arrive in every epoch, in bursts (between them the readers are idle and
        # checkpoint at every poll, as an idle stream does).
        while len(ended.findall(log.read_text())) < RESTARTS:
            produce(kafka_broker, topic, messages(range(produced + 1, produced + 201)))
            produced += 200
            time.sleep(2)
            assert process.poll() is None, log.read_text()[-3000:]
            assert produced < 20_000, f"no {RESTARTS} restarts:\n{log.read_text()[-3000:]}"
        produce(kafka_broker, topic, messages(range(produced + 1, produced + 201)))
        produced += 200

        def mirrored() -> bool:
            try:
                return db.exists() and len(sqlite_rows(db)) >= produced
            except Exception:  # the table may not exist yet
                return False

        _wait_for(mirrored, process, log, 60)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = log.read_text()
    assert process.returncode == 0, err[-3000:]
    assert "RecursionError" not in err
    epochs = [(int(n), int(b)) for n, b in ended.findall(err)]
    assert [n for n, _ in epochs[:RESTARTS]] == list(range(1, RESTARTS + 1))
    assert all(bundles >= BUNDLES for _, bundles in epochs), epochs
    assert f"records read: {produced}" in out
    assert sorted(sqlite_rows(db)) == list(range(1, produced + 1))
