"""Helpers for the Kafka integration tests: Debezium messages, pipeline files, CLI runs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
TABLE = "orders"


def envelope(row_id: int, op: str = "c", amount: int | None = None, table: str = TABLE) -> str:
    """A schemaless Debezium PostgreSQL envelope for ``shop.public.<table>``."""
    row = {"id": row_id, "amount": row_id * 10 if amount is None else amount, "note": f"n{row_id}"}
    return json.dumps(
        {
            "before": row if op == "d" else None,
            "after": None if op == "d" else row,
            "source": {
                "connector": "postgresql",
                "name": "shop",
                "db": "shop",
                "schema": "public",
                "table": table,
                "ts_ms": 1_700_000_000_000 + row_id,
                "snapshot": "false",
                "lsn": 1000 + row_id,
            },
            "op": op,
            "ts_ms": 1_700_000_000_000 + row_id,
        }
    )


def key(row_id: int) -> str:
    """The schemaless Debezium key of row ``row_id``."""
    return json.dumps({"id": row_id})


def messages(ids: range | list[int], op: str = "c") -> list[tuple[str, str]]:
    """``(key, value)`` pairs for ``ids``."""
    return [(key(i), envelope(i, op)) for i in ids]


def write_pipeline(
    directory: Path,
    bootstrap: str,
    topics: list[str],
    group_id: str,
    name: str = "kafka-test",
    extra_source: dict[str, Any] | None = None,
    dead_letter: dict[str, Any] | None = None,
    sinks: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a Kafka -> SQLite pipeline file into ``directory`` and return its path."""
    source: dict[str, Any] = {
        "type": "kafka",
        "bootstrap_servers": bootstrap,
        "topics": topics,
        "group_id": group_id,
        "start": "earliest",
        "format": "debezium-json",
        "consumer_config": {"session.timeout.ms": 6000},
        "max_batch_size": 500,
    }
    source.update(extra_source or {})
    config: dict[str, Any] = {
        "pipeline": name,
        "source": source,
        "sinks": sinks or [{"name": "mirror", "type": "sqlite", "path": "out/mirror.sqlite"}],
        "dead_letter": dead_letter or {"type": "file", "path": "out/dead.jsonl"},
    }
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def cdcflow_argv(*args: str) -> list[str]:
    """The argv of the ``cdcflow`` CLI in this interpreter."""
    return [sys.executable, "-c", "from cdcflow.cli.app import main; main()", *args]


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion."""
    return subprocess.run(
        cdcflow_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


def sqlite_rows(path: Path, table: str = TABLE) -> dict[int, tuple[Any, ...]]:
    """``id -> (amount, note)`` of the mirrored table."""
    with sqlite3.connect(path) as conn:
        return {
            row[0]: tuple(row[1:])
            for row in conn.execute(f'SELECT id, amount, note FROM "{table}" ORDER BY id')
        }


def sqlite_positions(path: Path) -> dict[tuple[str, str], int]:
    """The sink's stored positions."""
    with sqlite3.connect(path) as conn:
        return {
            (row[0], row[1]): row[2]
            for row in conn.execute('SELECT stream, partition, "offset" FROM cdcflow_offsets')
        }


def group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets per partition (-1001 when none)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()
