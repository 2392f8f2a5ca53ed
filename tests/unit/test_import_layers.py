"""The import order of docs/architecture.md holds, and the check really catches a violation.

``lint-imports`` reads the contracts in ``pyproject.toml``: layers ``cli`` > ``beam | flink`` >
``pipelines`` > ``io | transforms`` > ``core`` > ``schemas`` > foundation modules, and no import
cycle between the packages. The second and third tests plant an upward import and a cycle in a
copy of the package and expect the check to fail, so the first cannot pass vacuously.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_an_upward_import_breaks_the_layers_contract(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    null = root / "cdcflow" / "io" / "null.py"
    null.write_text(null.read_text() + "\nfrom cdcflow.pipelines import plan as _plan  # noqa\n")
    result = _lint(root)
    assert result.returncode != 0
    assert "cdcflow.io.null -> cdcflow.pipelines.plan" in result.stdout


def test_a_cycle_between_packages_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    model = root / "cdcflow" / "schemas" / "model.py"
    # schemas -> core is also upward; the acyclic contract reports the package cycle itself.
    model.write_text(model.read_text() + "\nimport cdcflow.core.step  # noqa\n")
    result = _lint(root)
    assert result.returncode != 0
    assert "No cycles are allowed in cdcflow" in result.stdout
