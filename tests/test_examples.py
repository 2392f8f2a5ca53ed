"""Every example in ``examples/`` is exercised by a test.

Examples that need only the embedded components (file source, SQLite/null sinks, file dead
letters) are run here, generically, from a copy: ``cdcflow run`` must exit 0, every sink must
receive events, SQLite sinks must hold rows, and a second run must read nothing new. Examples
that need servers must be run by a test of their own, which this module checks exists.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.console import REPO, run_cdcflow

EXAMPLES = sorted(p.parent for p in (REPO / "examples").glob("*/pipeline.yaml"))
EMBEDDED = {
    ("source", "file"), ("transform", "redact"), ("sink", "sqlite"), ("sink", "null"),
    ("dead_letter", "file"),
}


def _components(example: Path) -> list[tuple[str, Any]]:
    data = yaml.safe_load((example / "pipeline.yaml").read_text())
    items: list[tuple[str, Any]] = []
    if data.get("source"):
        items.append(("source", data["source"]))
    items += [("source", s) for s in data.get("sources") or []]
    # transforms too: one from an installed plugin (type python...) needs a test of its own
    items += [("transform", t) for t in data.get("transforms") or []]
    items += [("sink", s) for s in data.get("sinks") or []]
    if data.get("dead_letter"):
        items.append(("dead_letter", data["dead_letter"]))
    return [(kind, item) for kind, item in items]


def _self_contained(example: Path) -> bool:
    return all((kind, item.get("type")) in EMBEDDED for kind, item in _components(example))


RUNNABLE = [e for e in EXAMPLES if _self_contained(e)]
NEEDS_SERVERS = [e for e in EXAMPLES if not _self_contained(e)]


def test_examples_exist() -> None:
    assert EXAMPLES, "no examples/*/pipeline.yaml found"
    assert REPO / "examples" / "quickstart" in RUNNABLE


@pytest.mark.parametrize("example", RUNNABLE, ids=[e.name for e in RUNNABLE])
def test_self_contained_example_runs(example: Path, example_copy: Callable[[str], Path]) -> None:
    directory = example_copy(example.name)
    validated = run_cdcflow(directory, "validate", timeout=600)
    assert validated.returncode == 0, validated.stderr

    result = run_cdcflow(directory, timeout=600)
    assert result.returncode == 0, result.stderr
    sinks = [item for kind, item in _components(example) if kind == "sink"]
    for sink in sinks:
        match = re.search(rf"events written to {re.escape(sink['name'])}: (\d+)", result.stdout)
        assert match, f"no events written to sink {sink['name']!r}:\n{result.stdout}"
        assert int(match.group(1)) > 0
        if sink["type"] == "sqlite":
            db = directory / sink["path"]
            conn = sqlite3.connect(db)
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name!='cdcflow_offsets'"
                )
            ]
            counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
            conn.close()
            assert counts and all(n > 0 for n in counts.values()), counts

    again = run_cdcflow(directory, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "records read: 0" in again.stdout


def test_examples_needing_servers_have_their_own_test() -> None:
    """An example this module cannot run alone must be named by another test file."""
    test_sources = [
        p.read_text(errors="replace")
        for p in (REPO / "tests").rglob("test_*.py")
        if p.resolve() != Path(__file__).resolve()
    ]
    missing = [
        e.name
        for e in NEEDS_SERVERS
        if not any(f"examples/{e.name}" in s or f'"{e.name}"' in s for s in test_sources)
    ]
    assert missing == [], f"examples without a test: {missing}"
