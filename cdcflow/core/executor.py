"""The one exactly-once write path: what every engine runs for a batch.

:class:`BatchExecutor` takes a partition's :class:`~cdcflow.schemas.model.RawBatch` through
decode and every step (:meth:`BatchExecutor.transform`), then stores the dead letters and has
every writer write the batch (:meth:`BatchExecutor.write`). The order is the exactly-once
contract (docs/architecture.md):

1. the dead letters of decode and the steps are stored *before* any writer runs, so no writer
   can commit a position that covers a record whose dead letter is not yet durable;
2. each writer hands the rows it rejects to the dead-letter store *before* it commits its
   position (the ``reject`` sink of :meth:`~cdcflow.core.writer.Writer.write`);
3. writers skip events at or below the position they stored, so a batch replayed after a
   crash or a restore changes nothing.

The executor holds no engine types. The Beam engine runs it in one DoFn
(:mod:`cdcflow.beam.transforms`), the Flink engine in its Python operator
(:mod:`cdcflow.flink.job`); both only convert elements and export :attr:`counters`.

When a component raises, the exception gets a note ``cdcflow component: NAME`` (``decode``,
``transforms[0] (redact)``, ``sink 'mirror'``, ``dead_letter``) so the CLI can say which part
of the pipeline failed without an engine's step labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

import msgspec

from cdcflow.core.step import Step, StepResult
from cdcflow.core.writer import DeadLetterWriter, Writer, WriteResult
from cdcflow.metrics import Counters as MetricCounters
from cdcflow.metrics import Labels
from cdcflow.schemas.canonical import dead_letter_dict, dumps
from cdcflow.schemas.model import DeadLetter, EventBatch, RawBatch

log = logging.getLogger("cdcflow.executor")

#: The prefix of the note an executor adds to an exception a component raised.
COMPONENT_NOTE = "cdcflow component: "

T = TypeVar("T")


class Decoder(Protocol):
    """What the executor needs of a decode step (``transforms.decode.DecodeStep`` is one)."""

    name: str

    def setup(self) -> None:
        """Acquire resources on the worker."""

    def process(self, raw: RawBatch) -> StepResult:
        """Decode one raw batch; undecodable records are dead letters, never exceptions."""
        ...

    def teardown(self) -> None:
        """Release resources."""


def store_dead_letters(writer: DeadLetterWriter | None, letters: list[DeadLetter]) -> None:
    """Store ``letters`` durably with ``writer``; without one, log each as a JSON line.

    Nothing is dropped silently: a pipeline without a dead-letter sink logs every letter at
    error level. Raises when the writer cannot store them.
    """
    if not letters:
        return
    if writer is not None:
        writer.write(letters)
        return
    for letter in letters:
        log.error("dead letter: %s", dumps(dead_letter_dict(letter)).decode())


@dataclass
class ExecutorCounters:
    """What an executor did since it was built (monotonic; engines export the deltas)."""

    #: Batches written (every writer done).
    batches: int = 0
    #: Raw records taken through :meth:`BatchExecutor.transform`.
    records: int = 0
    #: Dead letters of decode and the steps that were stored.
    dead_letters: int = 0
    #: Per sink: events applied (rejected rows not included).
    written: dict[str, int] = field(default_factory=dict)
    #: Per sink: rows rejected (stored as dead letters).
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def all_dead_letters(self) -> int:
        """Every dead letter stored: decode, steps and the rows sinks rejected."""
        return self.dead_letters + sum(self.rejected.values())


@dataclass
class BatchOutcome:
    """What :meth:`BatchExecutor.write` did with one batch."""

    #: The batch as the writers got it (its dead letters taken out and stored).
    batch: EventBatch
    #: How many carried dead letters (from decode and the steps) were stored.
    dead_letters: int
    #: Each writer's result, by sink name, in writer order.
    results: dict[str, WriteResult]

    @property
    def rejected(self) -> list[DeadLetter]:
        """The dead letters of every row a writer rejected, in writer order."""
        return [letter for result in self.results.values() for letter in result.rejected]


class BatchExecutor:
    """Decode, transform and write batches with the exactly-once order (module docstring).

    ``decode`` is the step turning raw batches into event batches (``None`` when the engine
    hands over event batches already decoded: use :meth:`write` only). ``steps`` follow the
    :class:`~cdcflow.core.step.Step` contract, ``writers`` the
    :class:`~cdcflow.core.writer.Writer` contract; ``dead_letters`` stores dead letters (``None``
    logs them). Call :meth:`open` on the worker before the first batch and :meth:`close` at
    the end. ``check_order`` refuses a batch that goes back in its partition (an engine that
    delivers a partition's batches in order to one instance, like the Flink operator, turns a
    bug into an error instead of silently skipped rows).

    Not thread-safe: an engine may run :meth:`transform` of one batch on another thread while
    :meth:`write` of the previous one runs, never two transforms or two writes at once.
    """

    def __init__(
        self,
        decode: Decoder | None,
        steps: Sequence[Step],
        writers: Sequence[Writer],
        dead_letters: DeadLetterWriter | None,
        check_order: bool = False,
    ) -> None:
        self.decode = decode
        self.steps = list(steps)
        self.writers = list(writers)
        self.dead_letters = dead_letters
        self.check_order = check_order
        self.counters = ExecutorCounters()
        self._open = False
        self._last: dict[tuple[str, str], int] = {}
        self._step_labels = [
            f"transforms[{index}] ({getattr(step, 'name', type(step).__name__)})"
            for index, step in enumerate(self.steps)
        ]

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Set up decode and the steps, open the dead-letter sink and the writers."""
        if self._open:
            return
        if self.decode is not None:
            _named("decode", self.decode.setup)
        for label, step in zip(self._step_labels, self.steps, strict=True):
            _named(label, step.setup)
        if self.dead_letters is not None:
            _named("dead_letter", self.dead_letters.open)
        for writer in self.writers:
            _named(f"sink {writer.name!r}", writer.open)
        self._open = True

    def close(self) -> None:
        """Close the writers and the dead-letter sink, tear the steps down.

        Every component is closed even when some fail; failures are logged.
        """
        if not self._open:
            return
        self._open = False
        closers: list[Callable[[], None]] = [w.close for w in self.writers]
        if self.dead_letters is not None:
            closers.append(self.dead_letters.close)
        closers.extend(s.teardown for s in self.steps)
        if self.decode is not None:
            closers.append(self.decode.teardown)
        for closer in closers:
            try:
                closer()
            except Exception:  # close everything, report every failure
                log.exception("closing a cdcflow component failed")

    # -- one batch -------------------------------------------------------------------------

    def process(self, raw: RawBatch) -> BatchOutcome:
        """:meth:`transform` then :meth:`write` one raw batch."""
        return self.write(self.transform(raw))

    def transform(self, raw: RawBatch) -> EventBatch:
        """Decode ``raw`` and run every step; dead letters travel in ``batch.dead_letters``.

        Stores nothing and writes nothing, so an engine may run it ahead of :meth:`write`.
        Steps must not raise for a bad event (they dead-letter it); an exception here is a
        bug or an outage and stops the batch.
        """
        if not self._open:
            self.open()
        if self.check_order:
            self._check_order(raw)
        if self.decode is None:
            raise TypeError("this executor has no decode step: hand it event batches (write)")
        decode = self.decode
        result = _named("decode", lambda: decode.process(raw))
        batch: EventBatch = result.batch
        dead: list[DeadLetter] = []
        if batch.dead_letters:
            dead.extend(batch.dead_letters)
            batch = msgspec.structs.replace(batch, dead_letters=[])
        dead.extend(result.dead_letters)
        for label, step in zip(self._step_labels, self.steps, strict=True):
            stepped = _named(label, partial(step.process, batch))
            batch = stepped.batch
            if batch.dead_letters:  # a step that carries letters in the batch
                dead.extend(batch.dead_letters)
                batch = msgspec.structs.replace(batch, dead_letters=[])
            dead.extend(stepped.dead_letters)
        self.counters.records += len(raw.records)
        return msgspec.structs.replace(batch, dead_letters=dead) if dead else batch

    def write(self, batch: EventBatch) -> BatchOutcome:
        """Store the batch's carried dead letters, then have every writer write it.

        Raises when the dead-letter sink or a writer fails (after the writer's own retries):
        the engine then fails or restarts, and the batch is replayed from the positions the
        writers stored.
        """
        if not self._open:
            self.open()
        carried = batch.dead_letters
        if carried:
            _named("dead_letter", lambda: store_dead_letters(self.dead_letters, carried))
            self.counters.dead_letters += len(carried)
            batch = msgspec.structs.replace(batch, dead_letters=[])
        results: dict[str, WriteResult] = {}
        for writer in self.writers:
            label = f"sink {writer.name!r}"
            result = _named(label, partial(writer.write, batch, self._store_rejected))
            results[writer.name] = result
            written = self.counters.written
            written[writer.name] = written.get(writer.name, 0) + result.applied
            if result.rejected:
                rejected = self.counters.rejected
                rejected[writer.name] = rejected.get(writer.name, 0) + len(result.rejected)
        self.counters.batches += 1
        return BatchOutcome(batch=batch, dead_letters=len(carried), results=results)

    def drain_step_metrics(self) -> list[tuple[str, Labels, int]]:
        """The increments of the steps' engine-neutral counters since the previous call.

        Steps that count (``redact``'s ``redacted_values``) and writers that count
        (``sink_unmatched_patterns``) own a :class:`cdcflow.metrics.Counters` as ``metrics``.
        Call it when no :meth:`transform` is running.
        """
        drained: list[tuple[str, Labels, int]] = []
        for component in (self.decode, *self.steps, *self.writers):
            counters = getattr(component, "metrics", None)
            if isinstance(counters, MetricCounters):
                drained.extend(counters.drain())
        return drained

    # -- internals -------------------------------------------------------------------------

    def _store_rejected(self, letters: list[DeadLetter]) -> None:
        """The ``reject`` sink handed to writers: store the letters durably, now."""
        _named("dead_letter", lambda: store_dead_letters(self.dead_letters, letters))

    def _check_order(self, raw: RawBatch) -> None:
        """Refuse a batch that goes back in its partition: writers would skip it as replayed."""
        key = raw.partition_key
        first = raw.records[0].position.offset if raw.records else raw.last_offset
        previous = self._last.get(key)
        if previous is not None and first <= previous:
            raise RuntimeError(
                f"batch of {key[0]}[{key[1]}] starting at offset {first} arrived after offset "
                f"{previous}: batches of a partition must reach the writers in order"
            )
        self._last[key] = raw.last_offset


def _named(component: str, call: Callable[[], T]) -> T:
    """Run ``call``; an exception leaving it gets a note naming ``component`` (once)."""
    try:
        return call()
    except BaseException as exc:
        if not any(n.startswith(COMPONENT_NOTE) for n in getattr(exc, "__notes__", ())):
            exc.add_note(COMPONENT_NOTE + component)
        raise


def component_of(exc: BaseException) -> str | None:
    """The component an executor named on ``exc`` (see :func:`_named`), or ``None``."""
    for note in getattr(exc, "__notes__", ()):
        if note.startswith(COMPONENT_NOTE):
            return note.removeprefix(COMPONENT_NOTE)
    return None
