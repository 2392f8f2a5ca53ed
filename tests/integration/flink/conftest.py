"""Helpers for the Flink engine's integration tests: Debezium change streams, pipeline files,
the cdcflow CLI of the Flink environment, and waiting on PostgreSQL state."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers.flink import FlinkVenv

TABLE = {"db": "shop", "schema": "public", "table": "orders", "connector": "postgresql"}


def change_stream(count: int, keys: int, start: int = 0) -> list[tuple[dict, dict, str]]:
    """``count`` Debezium changes over ``keys`` ids: create, updates, and a delete every 7th.

    Returns ``(key, envelope, op)`` triples, sequence numbers from ``start``.
    """
    out = []
    for seq in range(start, start + count):
        ident = seq % keys
        if seq < keys:
            op, before, after = "c", None, {"id": ident, "qty": seq, "note": f"n{seq}"}
        elif seq % 7 == 0:
            op, before, after = "d", {"id": ident, "qty": seq - keys, "note": None}, None
        else:
            op, before, after = "u", None, {"id": ident, "qty": seq, "note": f"n{seq}"}
        envelope = {
            "before": before,
            "after": after,
            "op": op,
            "source": {**TABLE, "ts_ms": 1_700_000_000_000 + seq},
            "ts_ms": 1_700_000_000_000 + seq,
        }
        out.append(({"id": ident}, envelope, op))
    return out


def expected_state(changes: Iterable[tuple[dict, dict, str]]) -> dict[int, tuple[int, str]]:
    """The final ``id -> (qty, note)`` a mirror of ``changes`` holds."""
    state: dict[int, tuple[int, str]] = {}
    for key, envelope, op in changes:
        if op == "d":
            state.pop(key["id"], None)
        else:
            after = envelope["after"]
            state[key["id"]] = (after["qty"], after["note"])
    return state


def produce_changes(
    bootstrap: str, topic: str, changes: Sequence[tuple[dict, dict, str]], pause: float = 0.0
) -> None:
    """Produce keyed changes, flushing every record (Tansu's end offsets count batches)."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 0, "partitioner": "murmur2_random"}
    )
    for key, envelope, _ in changes:
        producer.produce(topic, key=json.dumps(key).encode(), value=json.dumps(envelope).encode())
        if producer.flush(30) != 0:
            raise TimeoutError(f"a record to {topic} was not delivered")
        if pause:
            time.sleep(pause)


def write_pipeline(
    path: Path,
    name: str,
    bootstrap: str,
    topic: str,
    dsn: str,
    venv: FlinkVenv,
    flink: dict[str, Any] | None = None,
) -> Path:
    """A pipeline file: the topic into a mirror table and an append-only history table."""
    document = {
        "pipeline": name,
        "source": {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": f"{name}-group",
        },
        "sinks": [
            {"name": "mirror", "type": "postgres", "dsn": dsn},
            {
                "name": "history",
                "type": "postgres",
                "dsn": dsn,
                "mode": "append",
                "table_map": {"shop.public.orders": "orders_history"},
            },
        ],
        "dead_letter": {"type": "file", "path": "dead-letters.jsonl"},
        "engine": {
            "flink": {
                "jars": [str(j) for j in venv.jars],
                "checkpoint_interval_ms": 1000,
                "batch_interval_ms": 200,
                "restart_attempts": 1000,
                "restart_delay_ms": 1000,
                **(flink or {}),
            }
        },
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def cdcflow(venv: FlinkVenv, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the Flink environment's ``cdcflow`` CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDCFLOW_FLINK")}
    return subprocess.run(
        [str(venv.cdcflow), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def mirror_state(dsn: str) -> dict[int, tuple[int, str]]:
    return {row[0]: (row[1], row[2]) for row in query(dsn, "SELECT id, qty, note FROM orders")}


def history_count(dsn: str) -> int:
    rows = query(dsn, "SELECT count(*) FROM orders_history")
    return int(rows[0][0]) if rows else 0


def wait_for(
    condition: Callable[[], bool], timeout: float, describe: Callable[[], str], step: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s: {describe()}")


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    from tests.servers.tansu import unique_topic

    return unique_topic("flink")
