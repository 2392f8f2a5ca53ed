"""Dead letters are redacted at the dead-letter sink, once, whatever produced them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdcflow.core.step import event_dead_letter, raw_dead_letter
from cdcflow.io.files import DeadLetterFileWriter
from cdcflow.pipelines.config import parse_pipeline
from cdcflow.pipelines.plan import plan_pipeline
from cdcflow.schemas.model import ChangeEvent, DeadLetter, Op, Position, TableId
from cdcflow.testing import MemoryDeadLetterWriter
from cdcflow.transforms.redact import RedactConfig, RedactStep
from cdcflow.transforms.redact.dead_letters import (
    RedactingDeadLetterWriter,
    protect_dead_letters,
)

KEY = "dead-letter-test-key-0123456789"
TABLE = TableId("shop", "public", "customers")


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


def redact(name: str = "redact", **extra: Any) -> RedactStep:
    return RedactStep(
        RedactConfig.model_validate(
            {
                "type": "redact",
                "name": name,
                "key": KEY,
                "rules": [{"columns": ["email"], "strategy": "tokenize"}],
                **extra,
            }
        )
    )


def letter(step: str, email: str = "ada@example.com") -> DeadLetter:
    event = ChangeEvent(
        op=Op.CREATE,
        table=TABLE,
        position=Position("t", 0, 1),
        key={"id": 1},
        after={"id": 1, "email": email},
    )
    return event_dead_letter(step, event, ValueError("failed"))


def test_without_redact_steps_the_writer_is_unchanged() -> None:
    inner = MemoryDeadLetterWriter()
    assert protect_dead_letters(inner, [Named("decode"), Named("route")]) is inner


def test_letters_from_before_the_step_are_redacted_once_and_later_ones_kept() -> None:
    inner = MemoryDeadLetterWriter()
    step = redact(raw_dead_letters="drop")
    writer = protect_dead_letters(inner, [Named("decode"), Named("early"), step, Named("late")])
    assert isinstance(writer, RedactingDeadLetterWriter)
    token = step.redact_dead_letter(letter("early")).event["after"]["email"]  # type: ignore[index]
    already = letter("sink:mirror", email=token)
    raw = raw_dead_letter("decode", ValueError("starts with 'ada@example.com'"), None, b"x", b"k")
    writer.open()
    writer.write([letter("early"), letter("late", email=token), already, raw])
    writer.close()
    assert inner.opened and inner.closed
    assert writer.describe() == ["4 dead letters in memory"]  # delegated to the inner writer
    early, late, sink, dropped = inner.letters
    assert early.event is not None and early.event["after"]["email"] == token
    assert late.event == letter("late", email=token).event  # not tokenized twice
    assert sink.event == already.event
    assert dropped.value is None and dropped.key is None and "ada@" not in dropped.reason


def test_two_redact_steps_apply_in_order() -> None:
    inner = MemoryDeadLetterWriter()
    first = redact("first")
    second = RedactStep(
        RedactConfig.model_validate(
            {"type": "redact", "name": "second", "rules": [{"columns": ["id"], "strategy": "null"}]}
        )
    )
    writer = protect_dead_letters(inner, [Named("decode"), first, second])
    writer.write([letter("decode"), letter("first")])
    from_decode, from_first = inner.letters
    assert from_decode.event is not None and from_first.event is not None
    assert from_decode.event["after"]["email"].startswith("tok_")
    assert from_decode.event["after"]["id"] is None
    assert from_first.event["after"] == {"id": None, "email": "ada@example.com"}


def test_plan_pipeline_protects_the_dead_letter_sink(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("")
    text = (
        "pipeline: p\n"
        "source: {type: file, path: in.jsonl}\n"
        "transforms:\n"
        f"  - {{type: redact, key: {KEY}, raw_dead_letters: drop, "
        "rules: [{columns: [email], strategy: tokenize}]}\n"
        "sinks: [{name: n, type: 'null'}]\n"
        "dead_letter: {type: file, path: dlq.jsonl}\n"
    )
    plan = plan_pipeline(parse_pipeline(text, tmp_path / "p.yaml", env={}))
    assert isinstance(plan.dead_letters, RedactingDeadLetterWriter)
    assert isinstance(plan.dead_letters.inner, DeadLetterFileWriter)
    plan.dead_letters.open()
    plan.dead_letters.write(
        [letter("decode"), raw_dead_letter("decode", ValueError("x"), None, b"raw")]
    )
    plan.dead_letters.close()
    stored = [json.loads(line) for line in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    assert stored[0]["event"]["after"]["email"].startswith("tok_")
    assert stored[1]["value_b64"] is None
    assert "ada@example.com" not in (tmp_path / "dlq.jsonl").read_text()
