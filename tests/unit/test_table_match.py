"""Table patterns that match nothing (issue 10 item 2): validate warns; strict and
require_match make it an error before any data flows; the run logs and counts them."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main
from cdcflow.schemas.model import EventBatch
from tests.unit.test_redact_step import CUSTOMERS, event, step


def _line(table: str, ident: int) -> str:
    return json.dumps(
        {
            "op": "c",
            "before": None,
            "after": {"id": ident, "email": f"user{ident}@example.com"},
            "source": {"db": "myshop", "schema": "public", "table": table},
            "ts_ms": 1,
        }
    )


def _project(tmp_path: Path, redact: str, top: str = "", sink_tables: str = "") -> Path:
    lines = [_line("customers", 1), _line("orders", 2)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""\
pipeline: shop
{top}source:
  type: file
  path: data.jsonl
  key_columns:
    "myshop.public.*": [id]
transforms:
  - type: redact
{redact}sinks:
  - name: mirror
    type: sqlite
    path: out.sqlite
{sink_tables}"""
    )
    return path


TYPO = """\
    rules:
      - table: myshop.pubic.customers
        columns: [email]
        strategy: drop
"""


def test_validate_warns_for_a_rule_that_matches_no_table(tmp_path: Path) -> None:
    path = _project(tmp_path, TYPO)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        f"warning: {path}:10: transforms[0].rules[0].table: table pattern "
        "'myshop.pubic.customers' matches none of the tables the source names "
        "(myshop.public.customers, myshop.public.orders)"
    ) in result.stderr


def test_validate_warns_for_allow_lists_and_sink_patterns(tmp_path: Path) -> None:
    redact = """\
    tables:
      - table: myshop.public.custmers
        allow: [id]
"""
    path = _project(tmp_path, redact, sink_tables="    tables: [shop.*]\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "transforms[0].tables[0].table: table pattern 'myshop.public.custmers'" in (
        result.stderr
    )
    assert "sinks[0].tables: table pattern 'shop.*'" in result.stderr


def test_validate_is_quiet_when_every_pattern_matches(tmp_path: Path) -> None:
    path = _project(tmp_path, TYPO.replace("pubic", "public"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    ("redact", "top"),
    [(TYPO + "    require_match: true\n", ""), (TYPO, "strict: true\n")],
    ids=["require_match", "strict"],
)
def test_required_patterns_fail_validate_and_run_before_writing(
    tmp_path: Path, redact: str, top: str
) -> None:
    path = _project(tmp_path, redact, top)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "error: 1 required table pattern match nothing" in result.stderr
    assert "transforms[0].rules[0].table: table pattern 'myshop.pubic.customers'" in (result.stderr)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "'myshop.pubic.customers'" in result.stderr
    assert not (tmp_path / "out.sqlite").exists(), "nothing may be written"


def test_a_required_pattern_that_matches_runs(tmp_path: Path) -> None:
    path = _project(tmp_path, TYPO.replace("pubic", "public"), "strict: true\n")
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "out.sqlite") as db:
        names = [r[1] for r in db.execute("pragma table_info('customers')")]
    assert "email" not in names and "id" in names


def test_the_run_logs_and_counts_a_rule_that_matched_nothing_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cdcflow.transforms.redact.step import WARN_AFTER_BATCHES

    redact = step(
        rules=[
            {"table": "shop.public.custmers", "columns": ["email"], "strategy": "drop"},
            {"table": "shop.public.customers", "columns": ["phone"], "strategy": "drop"},
        ]
    )
    batch = EventBatch(
        stream="s", partition=0, last_offset=0, events=[event(CUSTOMERS, after={"id": 1})]
    )
    with caplog.at_level(logging.WARNING, logger="cdcflow.transforms.redact"):
        for _ in range(WARN_AFTER_BATCHES * 2):
            redact.process(batch)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert "rules[0] table pattern 'shop.public.custmers' has matched no table" in messages[0]
    counts = {
        (name, dict(labels).get("rule")): value
        for (name, labels), value in redact.metrics.totals().items()
        if name == "redact_unmatched_patterns"
    }
    assert counts == {("redact_unmatched_patterns", "rules[0]"): 1}


# -- unknown keys inside a redact rule (issue 10 item 9) -----------------------------------


def test_an_unknown_key_in_a_redact_rule_gets_a_suggestion_and_the_redaction_page(
    tmp_path: Path,
) -> None:
    path = _project(tmp_path, TYPO.replace("columns:", "colums:"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    line = next(x for x in result.stderr.splitlines() if "rules[0].colums" in x)
    assert f"{path}:11: transforms[0].rules[0].colums: is not a known key here; " in line
    assert "did you mean 'columns'?" in line
    assert line.endswith("(see docs/redaction.md)")


def test_an_unknown_key_in_a_detect_block_gets_a_suggestion(tmp_path: Path) -> None:
    redact = """\
    tables:
      - table: "myshop.public.*"
        scan: true
        detect:
          stratgy: mask
"""
    path = _project(tmp_path, redact)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "transforms[0].tables[0].detect.stratgy: is not a known key here; did you mean " in (
        result.stderr
    )
    assert "'strategy'?" in result.stderr


def test_a_sink_pattern_that_matched_nothing_is_logged_and_counted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cdcflow.io.sink_common import WARN_AFTER_BATCHES
    from cdcflow.io.sqlite import SqliteWriter

    writer = SqliteWriter(
        "mirror", tmp_path / "m.sqlite", "p", tables=["shop.public.*", "shop.pubic.orders"]
    )
    writer.open()
    try:
        with caplog.at_level(logging.WARNING, logger="cdcflow.sinks"):
            for offset in range(WARN_AFTER_BATCHES * 2):
                batch = EventBatch(
                    stream="s",
                    partition=0,
                    last_offset=offset,
                    events=[event(CUSTOMERS, key={"id": 1}, after={"id": 1}, offset=offset)],
                )
                writer.write(batch)
    finally:
        writer.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "cdcflow.sinks"]
    assert len(messages) == 1, messages
    assert "sink mirror: tables pattern 'shop.pubic.orders' has matched no table" in messages[0]
    assert writer.metrics.totals() == {
        ("sink_unmatched_patterns", (("sink", "mirror"), ("pattern", "shop.pubic.orders"))): 1
    }
