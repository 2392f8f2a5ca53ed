"""Shared test configuration.

Server fixtures live in ``tests/servers/<server>.py`` and are loaded here; add a module to
``pytest_plugins`` when you add a server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins: list[str] = [
    "tests.servers.tansu",
    "tests.servers.schema_registry",
    "tests.servers.postgres",
    "tests.servers.clickhouse",
    "tests.servers.flink",
]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def example_copy(tmp_path: Path):
    """Copy an example directory into a temporary directory and return the copy's path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("output"))
        return target

    return copy
