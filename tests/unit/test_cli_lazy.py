"""Start-up cost of the CLI: commands that need neither engine import neither (issue 12).

Each case runs the command in-process in a fresh interpreter and reports which heavy modules
ended up in ``sys.modules``; the lazy command group (``cdcflow.cli.app``) must keep
Apache Beam, PyFlink and the Flink CLI module out of ``--help``, ``validate`` and ``decode``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cdcflow.cli import app as cli

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"

_PROBE = """
import json, sys
from cdcflow.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("apache_beam", "pyflink") or m == "cdcflow.cli.flink_run"
)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _run(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=QUICKSTART,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = done.stderr.strip().splitlines()[-1]
    result: dict[str, object] = json.loads(last)
    result["stdout"] = done.stdout
    return result


@pytest.mark.parametrize(
    "args",
    [("--help",), ("validate", "pipeline.yaml")],
    ids=["help", "validate"],
)
def test_command_imports_no_engine(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result["code"] == 0, result
    assert result["heavy"] == []


def test_decode_imports_no_engine(tmp_path: Path) -> None:
    lines = (QUICKSTART / "shop-changelog.jsonl").read_text().splitlines()[:3]
    sample = tmp_path / "sample.jsonl"
    sample.write_text("\n".join(lines) + "\n")
    result = _run("decode", "--key-separator", "\t", str(sample))
    assert result["code"] == 0, result
    assert str(result["stdout"]).count('"kind":"change"') == 3
    assert result["heavy"] == []


def test_help_lists_every_command_without_importing_them() -> None:
    result = _run("--help")
    listed = str(result["stdout"])
    for name in (*cli.main.commands, *cli.LAZY_COMMANDS):
        assert f"\n  {name} " in listed


def test_lazy_command_is_imported_when_invoked() -> None:
    result = _run("jobs", "--help")
    assert result["code"] == 0
    assert "cdcflow.cli.flink_run" in result["heavy"]
    assert "--flink-master" in str(result["stdout"])


@pytest.mark.parametrize("name", sorted(cli.LAZY_COMMANDS))
def test_lazy_short_help_is_the_commands_own(name: str) -> None:
    command = cli.main.get_command(None, name)  # type: ignore[arg-type]
    assert command is not None
    assert cli.LAZY_SHORT_HELP[name] == command.get_short_help_str(10**6)


def test_lazy_tables_agree() -> None:
    assert set(cli.LAZY_SHORT_HELP) == set(cli.LAZY_COMMANDS)
    assert not set(cli.LAZY_COMMANDS) & set(cli.main.commands)
