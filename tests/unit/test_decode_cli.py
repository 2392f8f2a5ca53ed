"""``cdcflow decode``: the contract of ARCHITECTURE §6 on every connector flavour."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
CDCFLOW = Path(sys.executable).with_name("cdcflow")
CONTRACT_FIELDS = {
    "op",
    "table",
    "key",
    "before",
    "after",
    "unavailable",
    "source",
    "position",
    "ts_ms",
}


def run(args: list[str], stdin: bytes | None = None) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(main, ["decode", *args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    out = [json.loads(line) for line in result.stdout.splitlines()]
    return result.exit_code, out, result.stderr


ALL_FILES = sorted(
    str(p.relative_to(FIXTURES))
    for p in FIXTURES.rglob("*.jsonl")
    if "keys" not in p.name and p.name != "bad.jsonl"
)


def _keys_for(path: Path) -> Path | None:
    """The fixture's message keys, one line per message, when the fixture has them."""
    for candidate in (path.with_suffix(".keys.jsonl"), path.parent / "keys.jsonl"):
        if candidate.exists() and len(candidate.read_bytes().splitlines()) == len(
            path.read_bytes().splitlines()
        ):
            return candidate
    return None


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_fixture_decodes_with_exit_code_0(name: str, tmp_path: Path) -> None:
    path = FIXTURES / name
    keys = _keys_for(path)
    args = [str(path)]
    if keys is not None:
        # Deletes need their key (MongoDB deletes carry no 'before'): decode with the keys,
        # as Kafka delivers them, under the fixture's own file name.
        combined = tmp_path / path.name
        combined.write_bytes(
            b"".join(
                k + b"\t" + v + b"\n"
                for k, v in zip(
                    keys.read_bytes().splitlines(), path.read_bytes().splitlines(), strict=True
                )
            )
        )
        args = ["--key-separator", "\t", str(combined)]
    code, out, err = run(args, None)
    assert code == 0, err
    assert err == ""
    count = len([line for line in path.read_bytes().splitlines() if line.strip()])
    assert len(out) == count  # one object per input line
    for index, item in enumerate(out):
        assert item["position"] == {"stream": path.name, "partition": 0, "offset": index}
        if item["kind"] == "change":
            assert CONTRACT_FIELDS <= item.keys()
            assert item["op"] in ("c", "u", "d", "r", "t")
            assert "__debezium_unavailable_value" not in json.dumps(item)
        else:
            assert item["kind"] in ("transaction", "schema_change", "tombstone", "heartbeat")


def test_kinds_per_flavour() -> None:
    def kinds(name: str) -> list[str]:
        return [item["kind"] for item in run([str(FIXTURES / name)])[1]]

    assert kinds("transactions/transactions.jsonl") == [
        "transaction",
        "change",
        "change",
        "transaction",
        "transaction",
        "transaction",
    ]
    assert set(kinds("mysql/schema_changes.jsonl")) == {"schema_change"}
    assert kinds("misc/tombstones.jsonl") == ["tombstone", "tombstone"]
    assert kinds("misc/heartbeats.jsonl") == ["heartbeat", "heartbeat"]
    assert kinds("postgres/with_schema.jsonl") == ["change"] * 4 + ["tombstone"]


def test_canonical_values_from_stdin() -> None:
    stdin = (FIXTURES / "postgres/with_schema.jsonl").read_bytes()
    code, out, _ = run(["-"], stdin)
    assert code == 0
    create = out[0]
    assert create["op"] == "c"
    assert create["table"] == "shop.public.products"
    assert create["position"] == {"stream": "stdin", "partition": 0, "offset": 0}
    assert create["ts_ms"] == 1705314600900
    assert create["after"] == {
        "id": 101,
        "name": "Espresso cup",
        "price": "12.34",
        "weight": "314.159",
        "released": "2024-02-29",
        "discontinued": None,
        "restock_at": "10:30:00.500000",
        "created_at": "2024-01-15T10:30:00.123456",
        "updated_at": "2024-01-15T10:30:00.123456Z",
        "opens_at": "08:00:00Z",
        "photo": "3q2+7w==",
        "tags": ["kitchen", "ceramic"],
        "attrs": '{"color":"red","dishwasher":true}',
        "sku": "a3c5e2f0-1b7d-4c9e-8f00-123456789abc",
        "shelf_life": 31557600000000,
        "rating": 4.5,
        "stock": 12,
    }
    assert create["source"]["connector"] == "postgresql"
    assert create["source"]["lsn"] == 24023448
    assert create["source"]["snapshot"] == "false"
    assert create["schema"]["name"] == "shop.public.products.Value"
    update = out[1]
    assert update["before"]["price"] == "-12.34"
    assert update["before"]["created_at"] == "1969-12-31T23:59:59.999999"
    assert update["transaction"] == {
        "id": "591:24023512",
        "total_order": 1,
        "data_collection_order": 1,
    }
    assert out[2]["unavailable"] == ["photo", "tags", "attrs"]
    assert "photo" not in out[2]["after"]


def test_stdin_is_the_default() -> None:
    result = CliRunner().invoke(
        main, ["decode"], input=b'{"op":"c","after":{"id":1},"source":{"table":"t"}}\n'
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["after"] == {"id": 1}


def test_bad_lines_print_errors_and_decoding_goes_on() -> None:
    code, out, err = run([str(FIXTURES / "misc/bad.jsonl")])
    assert code == 1
    assert "5 lines could not be decoded" in err
    assert [item["kind"] for item in out] == [
        "change",
        "error",
        "error",
        "error",
        "error",
        "error",
        "change",
    ]
    errors = [item for item in out if item["kind"] == "error"]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6]
    assert all(e["error_type"] == "DecodeError" for e in errors)
    assert "not valid JSON" in errors[0]["error"]
    assert "got list" in errors[1]["error"]
    assert "unknown op 'x'" in errors[2]["error"]
    assert "needs an 'after'" in errors[3]["error"]
    assert "column 'd'" in errors[4]["error"]
    assert out[-1]["after"] == {"id": 3}


def test_blank_lines_are_skipped_but_count_for_line_numbers() -> None:
    stdin = b'\n{"op":"c","after":{"id":1},"source":{"table":"t"}}\n\n{oops\n'
    code, out, _ = run([], stdin)
    assert code == 1
    assert out[0]["position"]["offset"] == 1
    assert out[1] == {
        "kind": "error",
        "line": 4,
        "error": out[1]["error"],
        "error_type": "DecodeError",
    }


def test_keys_on_each_line_with_a_separator() -> None:
    values = (FIXTURES / "mongodb/schemaless.jsonl").read_bytes().splitlines()
    keys = (FIXTURES / "mongodb/keys.jsonl").read_bytes().splitlines()
    stdin = b"".join(k + b"\t" + v + b"\n" for k, v in zip(keys, values, strict=True))
    code, out, _ = run(["--key-separator", "\t"], stdin)
    assert code == 0
    assert [item["key"] for item in out] == [{"_id": "65a5036c8f1d2e3a4b5c6d7e"}] * 7
    assert out[3]["after"] is None
    assert out[3]["meta"]["updateDescription"]["updatedFields"] == {
        "age": 44,
        "joined": "2024-01-15T10:30:00.123000Z",
    }
    assert out[0]["after"]["balance"] == "1234.50"
    assert out[0]["after"]["born"] == "1969-12-31T00:00:00Z"


def test_topic_names_the_table_and_tombstones_as_deletes() -> None:
    stdin = b'{"id": 5, "__op": "c"}\n{"id": 6}\tnull\n'
    code, out, _ = run(
        ["--topic", "shop.public.items", "--key-separator", "\t", "--tombstones", "delete"], stdin
    )
    assert code == 0
    assert out[0]["table"] == "shop.public.items" and out[0]["after"] == {"id": 5}
    assert out[1]["op"] == "d" and out[1]["key"] == {"id": 6}


def test_bad_usage_exits_2() -> None:
    result = CliRunner().invoke(main, ["decode", "--format", "protobuf"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["decode", "/nonexistent/file.jsonl"])
    assert result.exit_code == 2


def test_help() -> None:
    result = CliRunner().invoke(main, ["decode", "--help"])
    assert result.exit_code == 0
    assert "one per line" in result.stdout


def test_real_subprocess_file_and_stdin(tmp_path: Path) -> None:
    assert CDCFLOW.exists(), CDCFLOW
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        (FIXTURES / "oracle/with_schema.jsonl").read_bytes()
        + b"{broken\n"
        + (FIXTURES / "transactions/transactions.jsonl").read_bytes()
    )
    proc = subprocess.run([str(CDCFLOW), "decode", str(mixed)], capture_output=True, timeout=60)
    assert proc.returncode == 1
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [item["kind"] for item in out] == [
        "change",
        "change",
        "error",
        "transaction",
        "change",
        "change",
        "transaction",
        "transaction",
        "transaction",
    ]
    assert out[0]["after"]["SALARY"] == "1.00"
    assert out[0]["after"]["LOGIN_TZ"] == "2024-01-15T09:30:00.123456Z"
    assert out[1]["unavailable"] == ["NOTES"]
    assert out[2]["line"] == 3
    assert b"1 line could not be decoded" in proc.stderr

    good = (FIXTURES / "sqlserver/with_schema.jsonl").read_bytes()
    proc = subprocess.run(
        [str(CDCFLOW), "decode", "-"], input=good, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [item["op"] for item in out] == ["r", "u", "d"]
    assert out[0]["after"]["created"] == "2024-01-15T10:30:00.123456"
    assert out[0]["source"]["commit_lsn"] == "00000027:00000758:0005"


def test_real_subprocess_streams_each_line_from_an_open_pipe() -> None:
    proc = subprocess.Popen([str(CDCFLOW), "decode"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b'{"op":"c","after":{"id":1},"source":{"table":"t"}}\n')
        proc.stdin.flush()
        # the input stays open: the decoded line must arrive anyway
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no output while the input pipe was open"
        assert json.loads(proc.stdout.readline())["after"] == {"id": 1}
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0
