"""The README's commands do what the README says (issue 10, items 8 and 9).

The commands are taken from README.md itself and run as a user would, with bash from the
clone's root and the console script of ``.venv``.
"""

from __future__ import annotations

import json
import re
import subprocess

from tests.console import REPO, cdcflow_script

README = (REPO / "README.md").read_text(encoding="utf-8")
CHANGELOG = REPO / "examples" / "quickstart" / "shop-changelog.jsonl"


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


def _commands(section: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_quick_start_is_exactly_two_commands() -> None:
    commands = _commands(_section("Quick start"))
    assert [c.split("#")[0].strip() for c in commands] == ["make quickstart", "make test"]


def test_readme_says_how_to_install_the_extras_from_the_clone() -> None:
    commands = [c.split("#")[0].strip() for c in _commands(_section("Using it"))]
    assert "make venv-all" in commands
    assert ".venv/bin/pip install -e '.[postgres]'" in commands
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^venv-all:", makefile, flags=re.M)


def test_readme_decode_example_keeps_keys_and_exits_0() -> None:
    [command] = [c for c in _commands(_section("Using it")) if "cdcflow decode" in c]
    command = command.replace(".venv/bin/cdcflow", str(cdcflow_script()))
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    # Independently: the file's lines without the one the README leaves out (line 17), split
    # at the tab as kcat -K writes them.
    lines = CHANGELOG.read_bytes().splitlines()
    kept = [line for number, line in enumerate(lines, 1) if number != 17]
    assert len(out) == len(kept)
    assert [o["kind"] for o in out].count("error") == 0
    for line, item in zip(kept, out, strict=True):
        raw_key, tab, value = line.partition(b"\t")
        if not tab:
            assert item["kind"] == "transaction"
            continue
        key = json.loads(raw_key)
        key = key.get("payload", key)  # keys with a schema block carry the fields in payload
        if value == b"null":
            assert item == {**item, "kind": "tombstone", "key": key}
        else:
            assert item["kind"] == "change" and item["key"] == key
    assert sum(o["kind"] == "tombstone" for o in out) == 2
