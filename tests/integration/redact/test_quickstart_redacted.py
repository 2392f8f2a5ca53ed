"""The redacted quick start end to end: ``cdcflow run examples/quickstart-redacted``.

Runs the installed console script (a subprocess, as a user would) on a copy of the example
with its own key and salt in the environment, then reads the SQLite mirror and the dead-letter
file: e-mails are masked keeping the domain, phones tokenized (deterministically under the
key), names HMAC'ed, birth dates generalized to the year, ``credit_limit``/``last_login``
absent (allow-list), free text scanned, and no original value anywhere in the outputs. A run
with another key gives other tokens. No servers are needed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.console import REPO, run_cdcflow, sqlite_rows

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "quickstart-redacted"
KEY = "integration-test-key-7f3a9c21d4"
SALT = "integration-test-salt-5b8e0f63a2"
ORIGINALS = [
    "ada@example.com",
    "grace@example.org",
    "grace.hopper@example.org",
    "linus@example.net",
    "+44 20 7946 0018",
    "+1 202 555 0143",
    "+358 9 123 4567",
    "Ada Lovelace",
    "Grace Hopper",
    "4111 1111 1111 1111",
    "ada.l@example.com",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "abcDEF123ghiJKL456mnoPQR789",
    "(202) 555-0143",
    "203.0.113.7",
    "2001:db8::42",
]


def _run(
    directory: Path, key: str = KEY, salt: str = SALT, command: str = "run"
) -> subprocess.CompletedProcess[str]:
    """``cdcflow <command>`` of the copied example with ``key`` and ``salt`` in the environment."""
    env = {**os.environ, "REDACT_KEY": key, "REDACT_SALT": salt}
    return run_cdcflow(directory, command, env=env, timeout=300 if command == "run" else 120)


def _rows(db: Path, table: str) -> list[dict[str, Any]]:
    return sqlite_rows(db, table, order="id")


def _token(value: str, key: str = KEY) -> str:
    return (
        "tok_" + hmac.new(key.encode(), b"tokenize\x00" + value.encode(), "sha256").hexdigest()[:24]
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    directory = tmp_path_factory.mktemp("redacted") / "quickstart-redacted"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("output"))
    return directory, _run(directory)


def test_the_run_succeeds(ran: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, result = ran
    assert result.returncode == 0, result.stderr
    assert "customers: 2 rows" in result.stdout
    assert "support_tickets: 3 rows" in result.stdout
    assert KEY not in result.stdout + result.stderr
    assert SALT not in result.stdout + result.stderr


def test_customers_are_masked_tokenized_and_allow_listed(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, _ = ran
    rows = _rows(directory / "output" / "shop.sqlite", "customers")
    assert set(rows[0]) == {"id", "email", "full_name", "phone", "created_at", "birth_date"}
    ada, grace = rows
    assert ada["id"] == 1 and grace["id"] == 2  # the key is kept: upserts matched
    assert ada["email"] == "a**@example.com"
    assert grace["email"] == "g***********@example.org"  # the update was applied
    assert ada["phone"] == _token("+44 20 7946 0018")
    assert grace["phone"] == _token("+1 202 555 0143")
    assert ada["full_name"] == hmac.new(KEY.encode(), b"Ada Lovelace", "sha256").hexdigest()
    assert ada["birth_date"] == "1954-01-01"
    assert grace["birth_date"] == "1963-01-01"
    assert ada["created_at"] == "2024-01-01T00:00:00"


def test_support_tickets_free_text_is_scanned(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, _ = ran
    rows = _rows(directory / "output" / "shop.sqlite", "support_tickets")
    assert [r["id"] for r in rows] == [1, 2, 3]  # ticket 4 has an undatable 'created'
    assert rows[0]["body"] == ("Hi, my card [CARD] was declined. Reach me at [EMAIL] or [PHONE].")
    assert rows[1]["body"] == "Please refund to IBAN [IBAN]. My SSN is [SSN] if needed."
    assert rows[2]["body"] == "Our integration sends Authorization: Bearer [BEARER] and fails."
    assert rows[0]["created"] == "2024-06-01T00:00:00Z"
    salted = hashlib.sha256(SALT.encode() + b"\x00" + b"203.0.113.7").hexdigest()
    assert rows[0]["client_ip"] == salted


def test_dead_letters_are_redacted_too(ran: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    directory, _ = ran
    letters = [
        json.loads(line)
        for line in (directory / "output" / "dead-letters.jsonl").read_text().splitlines()
    ]
    by_step = {letter["step"]: letter for letter in letters}
    assert set(by_step) == {"decode", "redact"}
    raw = by_step["decode"]
    assert raw["value_b64"] is None and raw["key_b64"] is None  # raw_dead_letters: drop
    assert "withheld" in raw["reason"]
    failed = by_step["redact"]
    assert failed["error_type"] == "RedactionError"
    assert "rules[4]" in failed["reason"]
    after = failed["event"]["after"]
    assert after["created"] is None
    assert after["body"] == "Where is order 1001? Call me on [PHONE]."


def test_no_original_value_or_secret_is_left_anywhere(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, _ = ran
    conn = sqlite3.connect(directory / "output" / "shop.sqlite")
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    everything = dump + (directory / "output" / "dead-letters.jsonl").read_text()
    for value in [*ORIGINALS, KEY, SALT]:
        assert value not in everything, value


def test_another_key_gives_other_tokens(tmp_path: Path) -> None:
    directory = tmp_path / "quickstart-redacted"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("output"))
    other = "a-completely-different-key-91c2"
    result = _run(directory, key=other)
    assert result.returncode == 0, result.stderr
    ada = _rows(directory / "output" / "shop.sqlite", "customers")[0]
    assert ada["phone"] == _token("+44 20 7946 0018", other) != _token("+44 20 7946 0018")


def test_validate_never_prints_the_secrets(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, _ = ran
    good = _run(directory, KEY, command="validate")
    assert good.returncode == 0, good.stderr
    assert KEY not in good.stdout + good.stderr and SALT not in good.stdout + good.stderr
    short = "tooShort-7c1e"
    bad = _run(directory, short, command="validate")
    assert bad.returncode == 2
    assert "key must be at least 16 characters" in bad.stdout + bad.stderr
    assert short not in bad.stdout + bad.stderr
