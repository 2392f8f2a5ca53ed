"""The step contract shared by every transform, independent of any engine.

A step works on whole batches (ARCHITECTURE §3): ``process`` takes an
:class:`~cdcflow.schemas.model.EventBatch` and returns the batch to pass on plus the dead
letters of the events it could not handle. Steps are built from configuration in the driver,
pickled to workers, and ``setup``/``teardown`` are called there: open clients in ``setup``,
never in ``__init__``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from cdcflow.schemas.canonical import event_dict
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch, Position


class StepResult(msgspec.Struct):
    """What a step returns for one batch."""

    batch: EventBatch
    dead_letters: list[DeadLetter]


class Step:
    """Base class for batch steps. Subclasses implement :meth:`process`."""

    #: Stable step id; names metrics and dead letters.
    name: str = "step"

    def setup(self) -> None:
        """Acquire resources on the worker (called once before the first batch)."""

    def process(self, batch: EventBatch) -> StepResult:
        """Transform one batch. Must not raise for a bad event: dead-letter it instead."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Release resources acquired in :meth:`setup`."""


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return int(time.time() * 1000)


def event_dead_letter(step: str, event: ChangeEvent, error: BaseException) -> DeadLetter:
    """A dead letter for a decoded event: it carries the canonical event, not raw bytes."""
    return DeadLetter(
        step=step,
        reason=str(error) or type(error).__name__,
        error_type=type(error).__name__,
        position=event.position,
        event=event_dict(event),
        failed_at_ms=now_ms(),
    )


def raw_dead_letter(
    step: str,
    error: BaseException,
    position: Position | None,
    value: bytes | None,
    key: bytes | None = None,
) -> DeadLetter:
    """A dead letter for an undecoded record: it carries the original key and value bytes."""
    return DeadLetter(
        step=step,
        reason=str(error) or type(error).__name__,
        error_type=type(error).__name__,
        position=position,
        value=value,
        key=key,
        failed_at_ms=now_ms(),
    )


def describe(value: Any) -> str:
    """A short, safe description of a value for error messages (never the value itself)."""
    return type(value).__name__
