"""The quick start end to end: ``cdcflow run examples/quickstart/pipeline.yaml``.

The example's shop changelog (customers, products, orders, articles; snapshot reads, creates,
updates, deletes with tombstones, a TOAST update, transaction markers and one truncated line) is
mirrored into SQLite. Runs the installed console script in a copy of the example, asserts every
row and column, the dead-letter file and the printed summary, then runs again and expects no
change. No servers are needed.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.console import REPO, run_cdcflow, sqlite_dump, sqlite_rows

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "quickstart"
CHANGELOG = "shop-changelog.jsonl"
BROKEN_LINE = 16  # 0-based: the order 1004 message cut off mid-value

CUSTOMERS = [
    {
        "id": 1,
        "email": "ada@example.com",
        "full_name": "Ada Lovelace",
        "phone": "+44 20 7946 0018",
        "credit_limit": "2500.00",
        "created_at": "2024-01-01T00:00:00",
        "last_login": "2024-06-01T08:15:00.123456Z",
        "birth_date": "1954-09-02",
    },
    {
        # updated: new e-mail and credit limit; last_login sent with +02:00, stored in UTC
        "id": 2,
        "email": "grace.hopper@example.org",
        "full_name": "Grace Hopper",
        "phone": "+1 202 555 0143",
        "credit_limit": "1500.75",
        "created_at": "2024-01-02T00:00:00",
        "last_login": "2024-06-10T08:30:00.654321Z",
        "birth_date": "1963-09-15",
    },
    # customer 3 (Linus) was deleted
]
PRODUCTS = [
    {"id": 10, "sku": "KB-01", "name": "Mechanical keyboard", "price": "89.90", "in_stock": 1},
    {"id": 11, "sku": "MS-02", "name": "Wireless mouse", "price": "19.99", "in_stock": 1},
    {"id": 12, "sku": "MN-27", "name": '27" monitor', "price": "279.00", "in_stock": 0},
    {
        "id": 13,
        "sku": "HS-03",
        "name": "Noise-cancelling headset",
        "price": "149.00",
        "in_stock": 1,
    },
]
ORDERS = [
    {
        "id": 1001,
        "customer_id": 1,
        "status": "shipped",
        "total": "114.40",
        "placed_at": "2024-06-10T09:00:00Z",
    },
    {
        "id": 1003,
        "customer_id": 3,
        "status": "placed",
        "total": "24.50",
        "placed_at": "2024-06-10T11:12:13Z",
    },
    # 1002 was cancelled then deleted; 1004 is the broken line
]


def _changelog_line(directory: Path, index: int) -> tuple[bytes, bytes]:
    """The key and value bytes of a 0-based line of the changelog."""
    line = (directory / CHANGELOG).read_bytes().split(b"\n")[index]
    key, _, value = line.partition(b"\t")
    return key, value


def _dump(db: Path, *, with_timestamps: bool = True) -> list[str]:
    lines = sqlite_dump(db)
    if not with_timestamps:
        # cdcflow_offsets.updated_at is the only column that depends on when the run happened
        lines = [
            line.rsplit(",", 1)[0] if line.startswith('INSERT INTO "cdcflow_offsets"') else line
            for line in lines
        ]
    return lines


@dataclass
class Run:
    directory: Path
    result: subprocess.CompletedProcess[str]

    @property
    def db(self) -> Path:
        return self.directory / "output" / "shop.sqlite"

    @property
    def dead_letters(self) -> Path:
        return self.directory / "output" / "dead-letters.jsonl"


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Run:
    directory = tmp_path_factory.mktemp("quickstart") / "quickstart"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("output"))
    result = run_cdcflow(directory)
    assert result.returncode == 0, result.stderr
    return Run(directory, result)


@pytest.fixture(scope="module")
def second(first: Run) -> tuple[Run, list[str], bytes]:
    """Run again in the same directory; return it with the state captured before it."""
    before_dump = _dump(first.db)
    before_letters = first.dead_letters.read_bytes()
    result = run_cdcflow(first.directory)
    assert result.returncode == 0, result.stderr
    return Run(first.directory, result), before_dump, before_letters


def test_customers(first: Run) -> None:
    assert sqlite_rows(first.db, "customers") == CUSTOMERS


def test_products(first: Run) -> None:
    assert sqlite_rows(first.db, "products") == PRODUCTS


def test_orders(first: Run) -> None:
    assert sqlite_rows(first.db, "orders") == ORDERS


def test_article_body_survives_the_toast_update(first: Run) -> None:
    _, created = _changelog_line(first.directory, 10)
    message = json.loads(created)
    original_body = message.get("payload", message)["after"]["body"]
    _, updated = _changelog_line(first.directory, 11)
    assert b"__debezium_unavailable_value" in updated
    assert sqlite_rows(first.db, "articles") == [
        {"id": 500, "title": "Choosing a keyboard", "body": original_body, "published": 1}
    ]
    assert original_body.startswith("Switch types, layouts and keycaps explained.")
    assert len(original_body) > 1000


def test_only_the_mirrored_tables_exist(first: Run) -> None:
    conn = sqlite3.connect(first.db)
    names = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    conn.close()
    assert names == ["articles", "cdcflow_offsets", "customers", "orders", "products"]


def test_position_is_stored_with_the_rows(first: Run) -> None:
    conn = sqlite3.connect(first.db)
    stored = conn.execute(
        'SELECT pipeline, sink, stream, partition, "offset" FROM cdcflow_offsets'
    ).fetchall()
    conn.close()
    lines = (first.directory / CHANGELOG).read_bytes().rstrip(b"\n").count(b"\n") + 1
    assert stored == [("shop-quickstart", "mirror", CHANGELOG, "0", lines - 1)]


def test_dead_letter_file_holds_exactly_the_broken_line(first: Run) -> None:
    letters = first.dead_letters.read_bytes().splitlines()
    assert len(letters) == 1
    letter = json.loads(letters[0])
    key, value = _changelog_line(first.directory, BROKEN_LINE)
    assert base64.b64decode(letter["value_b64"]) == value
    assert base64.b64decode(letter["key_b64"]) == key == b'{"id":1004}'
    assert letter["position"] == {"stream": CHANGELOG, "partition": 0, "offset": BROKEN_LINE}
    assert letter["step"] == "decode"
    assert letter["error_type"] == "DecodeError"
    assert "not valid JSON" in letter["reason"]


def test_summary(first: Run) -> None:
    out = first.result.stdout
    directory = first.directory.resolve()
    assert "pipeline 'shop-quickstart' finished in " in out
    assert "records read: 23" in out
    assert "events written to mirror: 18" in out
    assert f"sink 'mirror': SQLite database {directory / 'output' / 'shop.sqlite'}" in out
    for line in ("customers: 2 rows", "products: 4 rows", "orders: 2 rows", "articles: 1 row"):
        assert f"    {line}\n" in out, line
    assert f"dead letters: 1 in {directory / 'output' / 'dead-letters.jsonl'}" in out


def test_second_run_reads_nothing_and_changes_nothing(second: tuple[Run, list[str], bytes]) -> None:
    run, before_dump, before_letters = second
    assert _dump(run.db) == before_dump
    assert run.dead_letters.read_bytes() == before_letters
    assert "records read: 0" in run.result.stdout
    assert "customers: 2 rows" in run.result.stdout
    assert "dead letters: 1 in " in run.result.stdout
    assert sqlite_rows(run.db, "customers") == CUSTOMERS


def test_beam_runner_in_process_gives_the_same_database(first: Run, example_copy: Any) -> None:
    """The same pipeline through the Beam runner API, in this process, in a fresh copy."""
    from cdcflow.beam.runner import run
    from cdcflow.pipelines.config import load_pipeline

    directory = example_copy("quickstart")
    report = run(load_pipeline(directory / "pipeline.yaml"))
    assert report.records_read == 23
    assert report.written == {"mirror": 18}
    assert report.dead_letters == 1
    assert report.sink_lines[0].endswith(str(directory / "output" / "shop.sqlite"))
    fresh = directory / "output" / "shop.sqlite"
    assert _dump(fresh, with_timestamps=False) == _dump(first.db, with_timestamps=False)


def test_interrupted_run_resumes_to_the_same_database(first: Run, example_copy: Any) -> None:
    """Half the changelog, then all of it: the result equals one full run (resume by offset)."""
    from cdcflow.beam.runner import run
    from cdcflow.pipelines.config import load_pipeline

    directory = example_copy("quickstart")
    changelog = directory / CHANGELOG
    full = changelog.read_bytes()
    changelog.write_bytes(b"".join(full.splitlines(keepends=True)[:12]))
    config = load_pipeline(directory / "pipeline.yaml")
    assert run(config).records_read == 12
    changelog.write_bytes(full)
    assert run(config).records_read == 11
    assert _dump(directory / "output" / "shop.sqlite", with_timestamps=False) == _dump(
        first.db, with_timestamps=False
    )
    assert len((directory / "output" / "dead-letters.jsonl").read_bytes().splitlines()) == 1


def test_rows_the_sink_rejects_reach_the_dead_letter_file(example_copy: Any) -> None:
    """A row SQLite refuses (text in an INTEGER key) is a dead letter; the rest is written."""
    from cdcflow.beam.runner import run
    from cdcflow.pipelines.config import load_pipeline

    directory = example_copy("quickstart")
    bad = {
        "before": None,
        "after": {"id": "A-77", "customer_id": 1, "status": "placed"},
        "source": {"connector": "postgresql", "db": "shop", "schema": "public", "table": "orders"},
        "op": "c",
        "ts_ms": 1718000099000,
    }
    good = dict(bad, after={"id": 1005, "customer_id": 2, "status": "placed"})
    with (directory / CHANGELOG).open("a") as handle:
        handle.write('{"id":"A-77"}\t' + json.dumps(bad) + "\n")
        handle.write('{"id":1005}\t' + json.dumps(good) + "\n")
    report = run(load_pipeline(directory / "pipeline.yaml"))
    assert report.records_read == 25
    assert report.dead_letters == 2
    letters = [
        json.loads(line)
        for line in (directory / "output" / "dead-letters.jsonl").read_bytes().splitlines()
    ]
    assert [(d["step"], d["position"]["offset"]) for d in letters] == [
        ("decode", BROKEN_LINE),
        ("sink:mirror", 23),
    ]
    rejected = letters[1]
    assert "datatype mismatch" in rejected["reason"]
    assert rejected["event"]["after"] == {"id": "A-77", "customer_id": 1, "status": "placed"}
    orders = sqlite_rows(directory / "output" / "shop.sqlite", "orders")
    assert [o["id"] for o in orders] == [1001, 1003, 1005]
