"""Redaction at the dead-letter sink: every engine stores dead letters through one writer.

Dead letters are redacted where they are stored, not where they travel, so the rule holds on
every engine and for every origin (the Beam engine carries them inside batches, the Flink
operator collects them beside the batch, sinks hand rejected rows straight to the writer):

* letters produced **before** a redact step (by ``decode`` or an earlier transform) get that
  step's full dead-letter redaction: the ``event`` is redacted with its policy;
* letters produced by the redact step itself, by later steps or by sinks already carry
  redacted events and are not redacted twice (a token of a token would no longer match the
  sinks' values);
* every letter's reason is scrubbed and raw bytes follow ``raw_dead_letters``, whatever its
  origin (both are idempotent).

:func:`protect_dead_letters` wraps a pipeline's dead-letter writer when it has redact steps;
:func:`cdcflow.pipelines.plan.plan_pipeline` calls it, so engines need nothing special.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdcflow.core.writer import DeadLetterWriter
from cdcflow.schemas.model import DeadLetter


class RedactingDeadLetterWriter(DeadLetterWriter):
    """A dead-letter writer that redacts each letter, then writes it with ``inner``.

    ``stages`` pairs each redact step (anything with ``redact_dead_letter(letter, event)``)
    with the names of the steps that run before it; a letter whose ``step`` is one of those
    names has its event redacted by that step.
    """

    def __init__(self, inner: DeadLetterWriter, stages: Sequence[tuple[Any, frozenset[str]]]):
        self.inner = inner
        self.stages = list(stages)

    def open(self) -> None:
        """Open the wrapped writer."""
        self.inner.open()

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Redact ``letters`` and write them with the wrapped writer."""
        if not letters:
            return
        self.inner.write([self.redact(letter) for letter in letters])

    def redact(self, letter: DeadLetter) -> DeadLetter:
        """One letter, redacted by every stage that applies to it."""
        for step, before in self.stages:
            letter = step.redact_dead_letter(letter, event=letter.step in before)
        return letter

    def close(self) -> None:
        """Close the wrapped writer."""
        self.inner.close()

    def check(self) -> list[str]:
        """The wrapped writer's check."""
        return self.inner.check()

    def describe(self) -> list[str]:
        """The wrapped writer's summary."""
        return self.inner.describe()

    def __repr__(self) -> str:
        return f"RedactingDeadLetterWriter({self.inner!r}, stages={len(self.stages)})"


def protect_dead_letters(writer: DeadLetterWriter, steps: Sequence[Any]) -> DeadLetterWriter:
    """Wrap ``writer`` so dead letters are redacted by the redact steps among ``steps``.

    ``steps`` is the pipeline's step chain in order, starting with the decode step. Returns
    ``writer`` itself when no step redacts.
    """
    stages: list[tuple[Any, frozenset[str]]] = []
    seen: list[str] = []
    for step in steps:
        if callable(getattr(step, "redact_dead_letter", None)):
            stages.append((step, frozenset(seen)))
        seen.append(str(getattr(step, "name", type(step).__name__)))
    if not stages:
        return writer
    return RedactingDeadLetterWriter(writer, stages)
