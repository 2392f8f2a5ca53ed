"""Content scanning covers the keys of JSON objects, at any depth (issue 9 item 9)."""

from __future__ import annotations

from typing import Any

import pytest

from cdcflow.schemas.model import EventBatch
from tests.unit.test_redact_step import CUSTOMERS, event, step

TABLES = [
    {
        "table": "shop.public.*",
        "scan": True,
        "detect": {"strategy": "redact", "replacement": "[{detector}]"},
    }
]


def scan_after(value: Any, tables: list[dict[str, Any]] = TABLES) -> Any:
    redact = step(tables=tables)
    result = redact.process(
        EventBatch(
            stream="s",
            partition=0,
            last_offset=0,
            events=[event(CUSTOMERS, key={"id": 1}, after={"id": 1, "doc": value})],
        )
    )
    assert result.dead_letters == []
    (out,) = result.batch.events
    assert out.after is not None
    return out.after["doc"]


def test_an_email_in_a_nested_key_is_redacted() -> None:
    doc = {"verified_emails": {"ada@example.com": True}}
    assert scan_after(doc) == {"verified_emails": {"[EMAIL]": True}}


def test_a_phone_number_as_a_key_is_redacted() -> None:
    assert scan_after({"+44 20 7946 0958": "home"}) == {"[PHONE]": "home"}


def test_keys_inside_lists_and_deep_objects_are_redacted() -> None:
    doc = [{"a": {"b": [{"call +1 415 555 2671 now": 1}]}}]
    assert scan_after(doc) == [{"a": {"b": [{"call [PHONE] now": 1}]}}]


def test_keys_redacted_alike_do_not_collapse_entries() -> None:
    doc = {"ada@example.com": 1, "grace@example.org": 2, "plain": 3}
    out = scan_after(doc)
    assert out == {"[EMAIL]": 1, "[EMAIL]#2": 2, "plain": 3}
    assert list(out) == ["[EMAIL]", "[EMAIL]#2", "plain"]  # the object's order is kept


def test_an_unchanged_key_keeps_its_name_when_a_redacted_key_would_take_it() -> None:
    doc = {"ada@example.com": 1, "[EMAIL]": 2, "[EMAIL]#2": 3}
    assert scan_after(doc) == {"[EMAIL]#3": 1, "[EMAIL]": 2, "[EMAIL]#2": 3}


def test_key_redaction_is_deterministic() -> None:
    doc = {"b@example.com": 1, "a@example.com": 2}
    assert scan_after(doc) == scan_after(dict(doc))


@pytest.mark.parametrize("strategy", ["hash-sha256", "tokenize", "mask"])
def test_keys_are_redacted_with_every_substring_strategy(strategy: str) -> None:
    tables = [{"table": "shop.public.*", "scan": True, "detect": {"strategy": strategy}}]
    out = scan_after({"ada@example.com": {"+44 20 7946 0958": "home"}}, tables)
    (key,) = out
    (inner,) = out[key].keys()
    assert "ada@example.com" not in key and "7946" not in inner
    assert out[key][inner] == "home"


def test_a_detection_only_in_a_key_triggers_whole_value_strategies() -> None:
    tables = [{"table": "shop.public.*", "scan": True, "detect": {"strategy": "null"}}]
    assert scan_after({"ada@example.com": True}, tables) is None
    assert scan_after({"plain": True}, tables) == {"plain": True}
