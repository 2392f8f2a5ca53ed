"""A file-to-SQLite pipeline where a third of the lines are malformed (issue 9).

``cdcflow run`` reads a changelog (key TAB value per line) into SQLite. Every malformed line
must reach the dead-letter file with its original bytes, every good line must be applied, and
the mirrored table must equal the state this test computes itself from the good lines.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

from tests.console import run_cdcflow, sqlite_rows

TABLE = "shop.public.items"
PIPELINE = """\
pipeline: malformed-third
source:
  type: file
  path: changelog.jsonl
  format: debezium-json
  key_separator: "\\t"
sinks:
  - name: mirror
    type: sqlite
    path: out/mirror.sqlite
    tables: "shop.public.*"
dead_letter:
  type: file
  path: out/dead-letters.jsonl
"""


def _envelope(op: str, before: Any, after: Any) -> bytes:
    source = {"connector": "postgresql", "db": "shop", "schema": "public", "table": "items"}
    message = {"op": op, "before": before, "after": after, "source": source, "ts_ms": 1}
    return json.dumps(message).encode()


#: Malformed values, each of a different kind (the key is always a valid key).
def _malformed(rng: random.Random, good: bytes) -> bytes:
    kinds = [
        lambda: good[: rng.randrange(1, len(good) - 1)],  # truncated
        lambda: b"{}",
        lambda: good.replace(b'"op": ', b'"opx": '),  # an envelope without op
        lambda: good.replace(b'"source": {', b'"source": [{').replace(b', "ts_ms"', b'], "ts_ms"'),
        lambda: good.replace(b'"name": "', b'"name": "\xff\xfe'),  # not UTF-8
        lambda: b"[" * 3000 + b"]" * 3000,
        lambda: good.replace(b'"ts_ms": 1', b'"ts_ms": "late"'),
        lambda: b'{"schema": {"type": "struct", "fields": []}}',
    ]
    return rng.choice(kinds)()


def test_a_third_malformed_lines_end_as_dead_letters_and_the_rest_is_applied(
    tmp_path: Path,
) -> None:
    rng = random.Random(9)
    lines: list[bytes] = []
    bad_offsets: dict[int, bytes] = {}
    expected: dict[int, dict[str, Any]] = {}
    for offset in range(90):
        item_id = rng.randrange(1, 15)
        row = {"id": item_id, "name": f"item {rng.randrange(1000)}", "qty": rng.randrange(50)}
        op = "d" if item_id in expected and rng.random() < 0.3 else rng.choice("cur")
        value = _envelope(op, row if op == "d" else None, None if op == "d" else row)
        key = json.dumps({"id": item_id}).encode()
        if offset % 3 == 2:
            value = _malformed(rng, value)
            bad_offsets[offset] = value
        elif op == "d":
            expected.pop(item_id, None)
        else:
            expected[item_id] = row
        lines.append(key + b"\t" + value)
    (tmp_path / "changelog.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)

    result = run_cdcflow(tmp_path)

    assert result.returncode == 0, result.stderr
    letters = [
        json.loads(x) for x in (tmp_path / "out/dead-letters.jsonl").read_text().splitlines()
    ]
    assert len(letters) == len(bad_offsets) == 30
    by_offset = {letter["position"]["offset"]: letter for letter in letters}
    assert set(by_offset) == set(bad_offsets)
    for offset, letter in by_offset.items():
        assert base64.b64decode(letter["value_b64"]) == bad_offsets[offset]  # bytes kept exactly
        assert letter["error_type"] == "DecodeError", letter
    good = len(lines) - len(bad_offsets)
    assert good + len(letters) == len(lines)
    rows = sqlite_rows(tmp_path / "out/mirror.sqlite", "items", order='"id"')
    assert [{k: r[k] for k in ("id", "name", "qty")} for r in rows] == [
        expected[i] for i in sorted(expected)
    ]
