"""Several named sources in one Beam run: each keeps its own positions, one executor writes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cdcflow.beam.runner import run
from cdcflow.pipelines.config import load_pipeline


def _line(table: str, ident: int, name: str) -> str:
    value = {
        "op": "c",
        "after": {"id": ident, "name": name},
        "source": {"db": "shop", "schema": "public", "table": table},
        "ts_ms": 1,
    }
    return json.dumps({"id": ident}) + "\t" + json.dumps(value) + "\n"


def _pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "pipeline: shop\n"
        "sources:\n"
        "  - {name: orders, type: file, path: orders.jsonl, key_separator: \"\\t\"}\n"
        "  - {name: people, type: file, path: people.jsonl, key_separator: \"\\t\"}\n"
        "sinks:\n"
        "  - {name: mirror, type: sqlite, path: out.sqlite}\n"
    )
    return path


def _state(tmp_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    with sqlite3.connect(tmp_path / "out.sqlite") as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("orders", "customers")
        }
        positions = dict(conn.execute('SELECT stream, "offset" FROM cdcflow_offsets').fetchall())
    return counts, positions


def test_two_sources_are_read_into_one_sink_and_each_resumes_from_its_own_positions(
    tmp_path: Path,
) -> None:
    (tmp_path / "orders.jsonl").write_text("".join(_line("orders", i, "o") for i in range(3)))
    (tmp_path / "people.jsonl").write_text("".join(_line("customers", i, "c") for i in range(5)))
    pipeline = _pipeline(tmp_path)

    first = run(load_pipeline(pipeline))
    assert first.written == {"mirror": 8} and first.records_read == 8
    assert _state(tmp_path) == (
        {"orders": 3, "customers": 5},
        {"orders.jsonl": 2, "people.jsonl": 4},
    )

    # Only one source grows: the other reads nothing again, the grown one only its new lines.
    with (tmp_path / "people.jsonl").open("a") as out:
        out.write(_line("customers", 5, "new"))
    second = run(load_pipeline(pipeline))
    assert second.records_read == 1  # read from each source's own position, not from 0
    assert second.written == {"mirror": 1}
    assert _state(tmp_path) == (
        {"orders": 3, "customers": 6},
        {"orders.jsonl": 2, "people.jsonl": 5},
    )
