"""examples/custom-transform: the example steps installed as a package, used from YAML and Beam.

The plugin package is installed with pip (from the local index) into a temporary directory put
on PYTHONPATH, so its ``cdcflow.connectors`` entry point is found like an installed one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.console import REPO, run_cdcflow, sqlite_rows

EXAMPLE = REPO / "examples" / "custom-transform"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(EXAMPLE / "plugin")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("shop_enrich-*.dist-info/entry_points.txt"))
    return target


def _env(plugin_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(plugin_path)}


def _check_mirror(db: Path) -> None:
    customers = sqlite_rows(db, "customers", "id")
    assert [(r["id"], r["phone"], r["region"]) for r in customers] == [
        (1, "***18", "ap-southeast-2"), (2, "***43", "ap-southeast-2"),
    ]
    assert len(sqlite_rows(db, "orders")) == 2


def test_the_yaml_pipeline_runs_with_function_class_and_entry_point_steps(
    plugin_path: Path, example_copy: Callable[[str], Path]
) -> None:
    directory = example_copy("custom-transform")
    env = _env(plugin_path)
    validated = run_cdcflow(directory, "validate", env=env)
    assert validated.returncode == 0, validated.stderr
    assert "3 transforms" in validated.stdout
    result = run_cdcflow(directory, env=env)
    assert result.returncode == 0, result.stderr
    db = directory / "output" / "shop.sqlite"
    _check_mirror(db)
    tables = {r["name"] for r in sqlite_rows(db, "sqlite_master", "name")}
    assert "articles" not in tables  # dropped by the entry-point step
    letters = [json.loads(line) for line in
               (directory / "output" / "dead-letters.jsonl").read_text().splitlines()]
    assert [d["step"] for d in letters] == ["decode"]  # the changelog's one truncated line
    again = run_cdcflow(directory, env=env)
    assert again.returncode == 0 and "records read: 0" in again.stdout


def test_without_the_plugin_validate_says_what_cannot_be_imported(
    example_copy: Callable[[str], Path],
) -> None:
    directory = example_copy("custom-transform")
    result = run_cdcflow(directory, "validate", env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode != 0
    assert "transforms[0].function: cannot import module 'shop_enrich'" in result.stderr
    assert "transforms[2].type: unknown transform type 'drop_table'" in result.stderr


def test_the_hand_written_beam_pipeline(plugin_path: Path, tmp_path: Path) -> None:
    db = tmp_path / "beam.sqlite"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "beam_pipeline.py"), str(db)],
        env=_env(plugin_path), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    _check_mirror(db)
    letters = (tmp_path / "beam.dead-letters.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in letters] == ["decode"]
