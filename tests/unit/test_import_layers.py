"""The import order of docs/architecture.md holds, and the check really catches a violation.

``lint-imports`` reads the contracts in ``pyproject.toml``: layers ``cli`` > ``beam | flink`` >
``pipelines`` > ``io | transforms`` > ``core`` > ``schemas`` > foundation modules, and no import
cycle between the packages. The planted-violation test puts an upward import and a cycle in a
copy of the package and expect the check to fail, so the first cannot pass vacuously.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(
        REPO / "cdcflow", root / "cdcflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_the_import_order_and_has_no_cycles() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "reported"),
    [
        # io -> pipelines goes up the layers.
        (
            "io/null.py",
            "from cdcflow.pipelines import plan as _plan  # noqa",
            "cdcflow.io.null -> cdcflow.pipelines.plan",
        ),
        # schemas -> core is upward too; the acyclic contract reports the package cycle itself.
        (
            "schemas/model.py",
            "import cdcflow.core.step  # noqa",
            "No cycles are allowed in cdcflow",
        ),
        # A cycle between the modules of a nested package (the envelope interpreter uses the
        # kind rules, never the other way round) is caught too.
        (
            "schemas/debezium/kinds.py",
            "from cdcflow.schemas.debezium import envelope as _envelope  # noqa",
            "No cycles are allowed in cdcflow.schemas.debezium",
        ),
    ],
)
def test_a_planted_violation_breaks_the_check(
    tmp_path: Path, module: str, planted: str, reported: str
) -> None:
    root = _copy(tmp_path)
    path = root / "cdcflow" / module
    path.write_text(path.read_text() + f"\n{planted}\n")
    result = _lint(root)
    assert result.returncode != 0
    assert reported in result.stdout
