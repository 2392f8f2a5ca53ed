"""examples/warehouse: the shop changelog fanned out to PostgreSQL (mirror + history) and
ClickHouse, run with ``cdcflow run`` against the test servers."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from clickhouse_driver import Client

from cdcflow.errors import DecodeError
from cdcflow.schemas.debezium import DebeziumJsonDecoder
from cdcflow.schemas.model import ChangeEvent, Position
from tests.integration.sinks.events import REPO, cdcflow_argv

pytestmark = pytest.mark.integration

EXAMPLE = "warehouse"  # examples/warehouse


def _events(path: Path) -> list[ChangeEvent]:
    decoder = DebeziumJsonDecoder()
    found: list[ChangeEvent] = []
    for index, line in enumerate(path.read_bytes().splitlines()):
        key, _, value = line.partition(b"\t")
        try:
            item = decoder.decode(value, Position(path.name, 0, index), key=key)
        except DecodeError:  # the example has one broken line on purpose
            continue
        if isinstance(item, ChangeEvent):
            found.append(item)
    return found


def _run(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cdcflow_argv("run", str(directory / "pipeline.yaml")),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        check=False,
    )


def test_warehouse_example_fans_out_exactly_once(
    example_copy: Callable[[str], Path], pg_database: str, ch_database: str
) -> None:
    directory = example_copy(EXAMPLE)
    env = {"WAREHOUSE_DSN": pg_database, "CLICKHOUSE_DSN": ch_database}
    first = _run(directory, env)
    assert first.returncode == 0, first.stderr
    for sink in ("mirror", "history", "olap"):
        assert f"events written to {sink}:" in first.stdout

    events = _events(directory / "shop-changelog.jsonl")
    per_table = Counter(e.table.table for e in events)
    with psycopg.connect(pg_database) as conn:
        customers = conn.execute("SELECT id FROM shop.customers ORDER BY id").fetchall()
        article = conn.execute("SELECT body, published FROM shop.articles").fetchall()
        history = {
            table: conn.execute(f"SELECT count(*) FROM shop_history.{table}").fetchone()[0]  # type: ignore[index]
            for table in per_table
        }
    assert customers == [(1,), (2,)]
    assert article[0][0].startswith("Switch types") and article[0][1] is True  # TOAST kept
    assert history == dict(per_table)

    db = ch_database.rsplit("/", 1)[1]
    client = Client.from_url(ch_database)
    try:
        ch_customers = client.execute(f"SELECT id FROM {db}.customers_current ORDER BY id")
        ch_article = client.execute(f"SELECT body, published FROM {db}.articles_current")
    finally:
        client.disconnect()
    assert ch_customers == [(1,), (2,)]
    assert ch_article[0][0].startswith("Switch types") and ch_article[0][1] == 1

    dead = (directory / "output" / "dead-letters.jsonl").read_text().splitlines()
    assert len(dead) == 1 and '"step":"decode"' in dead[0].replace(" ", "")

    again = _run(directory, env)
    assert again.returncode == 0, again.stderr
    assert "records read: 0" in again.stdout
