"""Smoke tests: `benchmarks/hot_path.py` and `hot_path_budget.py` run on a tiny workload.

It starts its own Tansu broker and PostgreSQL server, runs the loop and cdcflow once each with
the schema block (on one table, and on three tables of two partitions each), and checks every
final table against the generator's state. Nothing here
asserts a speed: only that the benchmark works and its table check passed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("layout", [[], ["--tables", "3", "--partitions", "2"]], ids=["1x3", "3x2"])
def test_hot_path_benchmark_runs_and_checks_both_tables(layout: list[str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "hot_path.py"),
            "--events",
            "1500",
            "--keys",
            "200",
            "--runs",
            "1",
            "--batch",
            "500",
            "--schema-block",
            *layout,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (
        "both systems' tables equaled the expected state after every run (1 x 2)" in result.stdout
    )
    assert "cdcflow / loop (issue 12 targets):" in result.stdout


@pytest.mark.parametrize("variant", [[], ["--schema-block"]], ids=["schemaless", "schema-block"])
def test_hot_path_budget_runs_and_checks_both_tables(variant: list[str]) -> None:
    # hot_path_budget.py stops with "FAIL: ..." (exit 1) when a table differs from the state.
    options = ["--events", "1500", "--keys", "200", "--reps", "1", "--batch", "500"]
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "hot_path_budget.py"), *options, *variant],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    for line in ("rep 1 loop: read", "rep 1 cdcflow: read", "all parts", "imports (CPU s, once)"):
        assert line in result.stdout
