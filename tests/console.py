"""Helpers for tests that run the installed ``cdcflow`` console script, as a user would, and
read the SQLite mirror it writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def cdcflow_script() -> Path:
    """The console script ``make quickstart`` uses (``.venv/bin/cdcflow``)."""
    for candidate in (REPO / ".venv" / "bin" / "cdcflow", Path(sys.executable).parent / "cdcflow"):
        if candidate.exists():
            return candidate
    raise AssertionError("the cdcflow console script is not installed in .venv")


def run_cdcflow(
    directory: Path,
    command: str = "run",
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``cdcflow <command> pipeline.yaml`` in ``directory`` (output captured as text).

    ``env`` replaces the environment when given (None: this process's environment).
    """
    return subprocess.run(
        [str(cdcflow_script()), command, "pipeline.yaml"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sqlite_rows(db: Path, table: str, order: str = "1") -> list[dict[str, Any]]:
    """Every row of ``table`` as a dict, sorted by ``order`` (an ORDER BY clause)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}')]


def sqlite_dump(db: Path) -> list[str]:
    """The SQL text dump of the database (``iterdump``), one statement per item."""
    with closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())
