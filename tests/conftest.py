"""Shared test configuration.

Server fixtures live in ``tests/servers/<server>.py`` and are loaded here; add a module to
``pytest_plugins`` when you add a server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins: list[str] = [
    "tests.servers.tansu",
    "tests.servers.schema_registry",
    "tests.servers.postgres",
    "tests.servers.clickhouse",
    "tests.servers.flink",
]

# Property tests: no per-example deadline (a shared 2-core machine is noisy); on CI the
# examples are derandomized so a run is reproducible. `HYPOTHESIS_PROFILE=deep` searches harder.
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", deadline=None, max_examples=3000, suppress_health_check=[HealthCheck.too_slow]
)
_DEFAULT_PROFILE = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or _DEFAULT_PROFILE)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _fresh_secret_registry():
    """Each test starts with no masked values: the registry is process-wide, and a value one
    test resolved from ``${...}`` (e.g. ``shop``) must not be masked in another's output."""
    from cdcflow import scrub

    scrub.reset()
    yield
    scrub.reset()


@pytest.fixture
def example_copy(tmp_path: Path):
    """Copy an example directory into a temporary directory and return the copy's path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("output"))
        return target

    return copy
