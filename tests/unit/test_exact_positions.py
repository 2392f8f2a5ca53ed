"""Offsets of any size are stored and reported exactly (issue 11, deliverable 7).

The SQLite store and ``cdcflow status`` here; the same cases for every sink run in the
writer contract suite (tests/contract).
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from cdcflow.cli.status import pipeline_status, sink_lines
from cdcflow.errors import SinkError
from cdcflow.io.sink_common import max_offset, stored_offset
from cdcflow.io.sqlite import SqliteWriter
from cdcflow.schemas.model import EventBatch

HUGE = 10**128 + 4959033827149025660855969253836157109592157598913658889  # 129 digits
SHARD = ("shop-stream", "shardId-000000000001")


def test_stored_offsets_are_exact_ints_or_refused() -> None:
    assert stored_offset(HUGE, "t") == HUGE
    assert stored_offset(str(HUGE), "t") == HUGE
    assert stored_offset(Decimal(HUGE), "t") == HUGE
    assert stored_offset(b"-1", "t") == -1
    for inexact in (1.0e130, Decimal("1.5"), "1e5", "", True):
        with pytest.raises(SinkError, match="is not an exact integer"):
            stored_offset(inexact, "sink 'x'")
    assert max_offset([str(9 * 10**59), str(10**60), "5"], "t") == 10**60


def test_sqlite_keeps_small_offsets_as_integers_and_large_ones_as_exact_text(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    writer = SqliteWriter("mirror", path, pipeline="p")
    writer.open()
    try:
        writer.write(EventBatch(stream="orders", partition=0, last_offset=41, events=[]))
        writer.write(EventBatch(stream=SHARD[0], partition=SHARD[1], last_offset=HUGE, events=[]))
    finally:
        writer.close()
    with sqlite3.connect(path) as conn:
        stored = dict(
            conn.execute('SELECT partition, "offset" FROM cdcflow_offsets').fetchall()
        )
    assert stored == {"0": 41, SHARD[1]: str(HUGE)}
    assert writer.stored_positions() == {("orders", "0"): 41, SHARD: HUGE}


def test_status_prints_exact_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "changes.jsonl").write_text("")
    (tmp_path / "pipeline.yaml").write_text(
        "pipeline: p\n"
        "source: {type: file, path: changes.jsonl}\n"
        "sinks:\n"
        "  - {name: mirror, type: sqlite, path: out.sqlite}\n"
    )
    writer = SqliteWriter("mirror", tmp_path / "out.sqlite", pipeline="p")
    writer.open()
    try:
        writer.write(EventBatch(stream=SHARD[0], partition=SHARD[1], last_offset=HUGE, events=[]))
    finally:
        writer.close()
    assert pipeline_status(tmp_path / "pipeline.yaml") == 0
    assert f"    shop-stream[shardId-000000000001]: position {HUGE}" in capsys.readouterr().out


def test_status_lines_order_string_partitions_and_keep_huge_lags_exact() -> None:
    lines = sink_lines(
        {SHARD: HUGE, ("shop-stream", "shardId-000000000000"): 5},
        {SHARD: HUGE + 10},
        [],
    )
    assert lines == [
        "shop-stream[shardId-000000000000]: position 5, end unknown (not a partition of the "
        "source now)",
        f"shop-stream[shardId-000000000001]: position {HUGE}, end {HUGE + 10}, lag 9",
    ]
