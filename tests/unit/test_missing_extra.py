"""A connector whose optional package is missing: the error names the package and the extra,
gives commands that work from a clone, and is not mistaken for a bad DSN (issue 10, item 8).

The CLI runs as a user runs it (the console script) with the connector packages blocked by a
``sitecustomize`` module that sets ``sys.modules[name] = None`` (``import name`` then raises
ImportError, exactly as when the package is not installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cdcflow.io.postgres.dsn import _split_dsn, dsn_target
from tests.console import REPO, cdcflow_script

BLOCKED = ("psycopg", "clickhouse_driver", "confluent_kafka")
PASSWORD = "S3cret-pw-xyz"


@pytest.fixture
def blocked_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which the connector packages cannot be imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in BLOCKED),
        encoding="utf-8",
    )
    return {
        **os.environ,
        "PYTHONPATH": str(site),
        "WAREHOUSE_DSN": f"postgresql://app:{PASSWORD}@127.0.0.1:5999/shop",
        "CLICKHOUSE_DSN": f"clickhouse://app:{PASSWORD}@127.0.0.1:9999/shop",
        "KAFKA_BOOTSTRAP": "127.0.0.1:9",
    }


def _cli(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cdcflow_script()), *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def _assert_names_extra(stderr: str, package: str, extra: str) -> None:
    assert f"the {package!r} package is not installed" in stderr
    assert f"cdcflow extra {extra!r}" in stderr
    # Commands that work from this clone: the make target, and pip on the checkout itself.
    assert f'"make venv-all" in {REPO}' in stderr
    assert f"-m pip install -e '{REPO}[{extra}]'" in stderr
    assert "<unparsable dsn>" not in stderr
    assert "cannot connect" not in stderr and "cannot reach" not in stderr
    assert PASSWORD not in stderr


def test_validate_names_each_missing_extra(
    blocked_env: dict[str, str], example_copy: Callable[[str], Path]
) -> None:
    result = _cli(example_copy("warehouse"), blocked_env, "validate", "pipeline.yaml")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert [line.split(":")[1].strip() for line in lines] == [
        "sink 'mirror'", "sink 'history'", "sink 'olap'"
    ]
    _assert_names_extra(lines[0], "psycopg", "postgres")
    _assert_names_extra(lines[1], "psycopg", "postgres")
    _assert_names_extra(lines[2], "clickhouse-driver", "clickhouse")
    assert PASSWORD not in result.stdout


def test_run_names_the_missing_extra(
    blocked_env: dict[str, str], example_copy: Callable[[str], Path]
) -> None:
    result = _cli(example_copy("warehouse"), blocked_env, "run", "pipeline.yaml")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sink 'mirror': ")
    _assert_names_extra(last, "psycopg", "postgres")


def test_kafka_example_names_the_kafka_extra(
    blocked_env: dict[str, str], example_copy: Callable[[str], Path]
) -> None:
    result = _cli(example_copy("kafka"), blocked_env, "validate", "pipeline.yaml")
    assert result.returncode == 1
    _assert_names_extra(result.stderr, "confluent-kafka", "kafka")


def test_the_suggested_make_target_exists() -> None:
    make = shutil.which("make")
    assert make is not None
    dry = subprocess.run(
        [make, "-n", "-C", str(REPO), "venv-all"], capture_output=True, text=True, check=False
    )
    assert dry.returncode == 0, dry.stderr


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (f"postgresql://app:{PASSWORD}@db.example:6543/shop", "db.example:6543/shop"),
        ("postgres://db.example/shop", "db.example:5432/shop"),
        (f"host=db.example port=6000 dbname=shop user=app password={PASSWORD}",
         "db.example:6000/shop"),
        ("dbname=shop", "localhost:5432/shop"),
    ],
)
def test_dsn_target_without_psycopg(dsn: str, expected: str) -> None:
    info = _split_dsn(dsn)
    assert info is not None
    assert f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info['dbname']}" == expected
    assert dsn_target(dsn) == expected  # psycopg (installed here) reads it the same way


@pytest.mark.parametrize("dsn", ["postgresq://app:pw@host/db", "postgresql://h:notaport/db", ""])
def test_unparsable_dsn_is_not_echoed(dsn: str) -> None:
    assert _split_dsn(dsn) is None


def test_produce_names_the_kafka_extra(blocked_env: dict[str, str], tmp_path: Path) -> None:
    result = _cli(tmp_path, blocked_env, "produce", "-b", "127.0.0.1:9", "-t", "x", "-")
    assert result.returncode == 1
    _assert_names_extra(result.stderr, "confluent-kafka", "kafka")
