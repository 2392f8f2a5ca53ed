"""ClickHouse sink through ``cdcflow validate`` / ``cdcflow run`` with the file source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_driver import Client

from tests.integration.sinks.events import generate_changelog, run_cli

pytestmark = pytest.mark.integration


def _current(dsn: str, table: str) -> dict[int, tuple[str, int, str]]:
    client = Client.from_url(dsn)
    try:
        rows = client.execute(f"SELECT id, name, qty, price FROM {table}")
    finally:
        client.disconnect()
    return {r[0]: (r[1], r[2], f"{r[3]:.2f}") for r in rows}


def test_run_into_clickhouse_then_rerun_changes_nothing(tmp_path: Path, ch_database: str) -> None:
    db = ch_database.rsplit("/", 1)[1]
    log = generate_changelog(3000, 400, seed=3)
    (tmp_path / "items.jsonl").write_text(log.lines())
    config: dict[str, Any] = {
        "pipeline": "items-olap",
        "source": {"type": "file", "path": "items.jsonl", "key_separator": "\t", "batch_size": 700},
        "sinks": [{"name": "olap", "type": "clickhouse", "dsn": ch_database}],
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
    }
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(config))
    validated = run_cli("validate", str(pipeline))
    assert validated.returncode == 0, validated.stderr
    first = run_cli("run", str(pipeline))
    assert first.returncode == 0, first.stderr
    assert f"items: {len(log.final)} current rows" in first.stdout
    assert _current(ch_database, f"{db}.items_current") == log.final
    second = run_cli("run", str(pipeline))
    assert second.returncode == 0, second.stderr
    assert _current(ch_database, f"{db}.items_current") == log.final
    client = Client.from_url(ch_database)
    try:
        positions = client.execute(f"SELECT max(toUInt64(offset)) FROM {db}.cdcflow_offsets")
        updated_type = client.execute(
            f"SELECT type FROM system.columns WHERE database = '{db}' AND table = 'items' "
            "AND name = 'updated_at'"
        )
    finally:
        client.disconnect()
    assert positions == [(2999,)]
    assert updated_type[0][0] in ("Nullable(DateTime('UTC'))", "Nullable(DateTime64(6, 'UTC'))")
