"""``cdcflow status PIPELINE.yaml`` on the quick start (file source, SQLite sink), as a user
runs it: positions, ends and lag, and nothing created by asking."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.console import cdcflow_script, run_cdcflow


def test_status_of_the_quickstart(example_copy: Callable[[str], Path]) -> None:
    directory = example_copy("quickstart")
    changelog = directory / "shop-changelog.jsonl"
    lines = len(changelog.read_bytes().splitlines())  # offsets are 0-based line numbers

    before = run_cdcflow(directory, "status")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == [
        "pipeline 'shop-quickstart' (source file)",
        "  sink 'mirror' (sqlite):",
        f"    shop-changelog.jsonl[0]: no position, end {lines}",
    ]
    assert not (directory / "output").exists()  # status creates nothing

    assert run_cdcflow(directory).returncode == 0
    after = run_cdcflow(directory, "status")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[-1] == (
        f"    shop-changelog.jsonl[0]: position {lines - 1}, end {lines}, lag 0"
    )

    # Three more lines (one blank: it still has an offset) make a lag of three.
    first = changelog.read_bytes().splitlines()[0]
    with changelog.open("ab") as handle:
        handle.write(first + b"\n\n" + first + b"\n")
    grown = run_cdcflow(directory, "status")
    assert grown.stdout.splitlines()[-1] == (
        f"    shop-changelog.jsonl[0]: position {lines - 1}, end {lines + 3}, lag 3"
    )
    assert run_cdcflow(directory).returncode == 0
    caught_up = run_cdcflow(directory, "status")
    assert caught_up.stdout.splitlines()[-1].endswith(f"end {lines + 3}, lag 0")


def test_status_usage_errors(example_copy: Callable[[str], Path]) -> None:
    directory = example_copy("quickstart")

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CDCFLOW_FLINK_MASTER"}
        return subprocess.run(
            [str(cdcflow_script()), "status", *args],
            cwd=directory, env=env, capture_output=True, text=True, timeout=60, check=False,
        )

    # A file with --flink-master, and a Flink job id (32 hex digits) without it: usage errors.
    with_master = status("pipeline.yaml", "--flink-master", "127.0.0.1:1")
    assert with_master.returncode == 2
    assert "read as a pipeline file" in with_master.stderr
    job = status("0123456789abcdef0123456789ABCDEF")
    assert job.returncode == 2 and "--flink-master" in job.stderr
    assert not (directory / "output").exists()
    (directory / "pipeline.yaml").write_text("pipeline: x\nsorce: {}\n", encoding="utf-8")
    bad = status("pipeline.yaml")
    assert bad.returncode == 2
    assert "did you mean 'source'" in bad.stderr
    assert status("no-such.yaml").returncode == 2
