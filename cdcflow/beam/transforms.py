"""Beam PTransforms wrapping sources, steps, writers and dead-letter sinks.

The runner's pipeline is ``Read -> Execute``: :class:`Execute` runs the engine-neutral
:class:`~cdcflow.core.executor.BatchExecutor` (decode, steps, dead letters, every writer) in one
DoFn, the same write path the Flink operator runs. The other transforms (:class:`Decode`,
:class:`Redact`, :class:`ApplyStep`, :class:`WriteTo`, :class:`StoreDeadLetters`,
:class:`WriteDeadLetters`) compose the same components in a hand-written Beam pipeline;
:class:`WriteTo` also writes through an executor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from cdcflow.core.executor import BatchExecutor, BatchOutcome, store_dead_letters
from cdcflow.core.source import PartitionKey, Source
from cdcflow.core.writer import DeadLetterWriter, Writer
from cdcflow.metrics import Counters, Labels, flat_name
from cdcflow.schemas.model import DeadLetter, EventBatch, RawBatch

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
NAMESPACE = "cdcflow"

log = logging.getLogger(__name__)


class _ReadFn(beam.DoFn):  # type: ignore[misc]
    """Reads one partition of an engine-neutral source, batch by batch."""

    def __init__(self, source: Source, start_offsets: Mapping[PartitionKey, int]) -> None:
        self.source = source
        self.start_offsets = dict(start_offsets)
        self.records = Metrics.counter(NAMESPACE, "records_read")

    def process(self, partition: tuple[str, int | str]) -> Iterator[RawBatch]:
        stream, part = partition
        start = self.start_offsets.get((stream, str(part)))
        for batch in self.source.read(stream, part, start):
            self.records.inc(len(batch.records))
            yield batch


class ReadFromSource(beam.PTransform):  # type: ignore[misc]
    """Read every partition of a bounded engine-neutral source as ``RawBatch`` elements.

    ``start_offsets`` maps ``(stream, partition)`` to the first offset to read; partitions not
    in it start at the source's default.
    """

    def __init__(
        self, source: Source, start_offsets: Mapping[PartitionKey, int] | None = None
    ) -> None:
        super().__init__()
        self.source = source
        self.start_offsets = dict(start_offsets or {})

    def expand(self, pbegin: Any) -> Any:
        """One ``RawBatch`` element per read batch of every partition."""
        return (
            pbegin
            | "Partitions" >> beam.Create(self.source.partitions())
            | "ReadPartition" >> beam.ParDo(_ReadFn(self.source, self.start_offsets))
        )


def export_counters(counters: Counters | None) -> None:
    """Add a step's engine-neutral counter increments to Beam counters (``name{labels}``)."""
    if counters is None:
        return
    for name, labels, amount in counters.drain():
        Metrics.counter(NAMESPACE, flat_name(name, labels)).inc(amount)


class _StepFn(beam.DoFn):  # type: ignore[misc]
    """Runs an engine-neutral step on each batch."""

    def __init__(self, step: Any, carry: bool) -> None:
        self.step = step
        self.carry = carry
        name = getattr(step, "name", "step")
        self.dead = Metrics.counter(NAMESPACE, f"dead_letters:{name}")
        self.events = Metrics.counter(NAMESPACE, f"events:{name}")

    def setup(self) -> None:
        self.step.setup()

    def process(self, batch: Any) -> Iterator[Any]:
        result = self.step.process(batch)
        out: EventBatch = result.batch
        self.events.inc(len(out.events))
        if result.dead_letters:
            self.dead.inc(len(result.dead_letters))
        export_counters(getattr(self.step, "metrics", None))
        if self.carry:
            if result.dead_letters:
                out = msgspec.structs.replace(
                    out, dead_letters=[*out.dead_letters, *result.dead_letters]
                )
            yield out
            return
        yield out
        for letter in result.dead_letters:
            yield TaggedOutput(DEAD_LETTERS, letter)

    def teardown(self) -> None:
        self.step.teardown()


class _OneAhead:
    """One worker thread running a function one element ahead of the caller.

    ``swap(x)`` returns the finished result of the element in flight
    (``None`` when there is none) and starts ``fn(x)``; ``take()`` returns the last one.

    Order is kept (one thread); an exception of ``fn`` is re-raised by the ``swap``/``take``
    that collects its result. Used by the DoFns that run a step or the executor ahead.
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cdcflow-ahead")
        self._pending: Future[Any] | None = None

    def take(self) -> Any | None:
        """The result of the element in flight (waiting for it), or ``None``."""
        pending, self._pending = self._pending, None
        return None if pending is None else pending.result()

    def swap(self, element: Any) -> Any | None:
        """Collect the element in flight, then start ``fn(element)``."""
        previous = self.take()
        self._pending = self._pool.submit(self.fn, element)
        return previous

    def discard(self) -> None:
        """Forget the element in flight (a new bundle starts)."""
        self._pending = None

    def shutdown(self) -> None:
        """Cancel what has not started and stop the thread."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        self._pool.shutdown(wait=True)


class _AheadStepFn(_StepFn):
    """Runs the step on a background thread, one batch ahead of the rest of the stage.

    ``process(batch N)`` hands batch N to the thread and emits the result of batch N-1, so
    the step works on N while the sinks downstream (same fused stage, same thread as this
    call) write N-1: a sink waiting for its server releases the GIL and the step runs in
    that time. Batches keep their order (one worker thread), the last one is emitted in
    ``finish_bundle``, so a bundle (and the commit its finalization triggers) still
    covers every batch written. Main output only (``carry=True``); the step's counters are
    updated on the bundle's thread.
    """

    def __init__(self, step: Any) -> None:
        super().__init__(step, carry=True)
        self._ahead: _OneAhead | None = None

    def setup(self) -> None:
        super().setup()
        self._ahead = _OneAhead(self.step.process)

    def start_bundle(self) -> None:
        if self._ahead is not None:
            self._ahead.discard()

    def _counted(self, result: Any) -> EventBatch | None:
        """The finished result of a batch as the output batch, counted (None for none)."""
        if result is None:
            return None
        out: EventBatch = result.batch
        self.events.inc(len(out.events))
        if result.dead_letters:
            self.dead.inc(len(result.dead_letters))
            out = msgspec.structs.replace(
                out, dead_letters=[*out.dead_letters, *result.dead_letters]
            )
        export_counters(getattr(self.step, "metrics", None))
        return out

    def process(self, batch: Any) -> Iterator[Any]:
        assert self._ahead is not None
        previous = self._counted(self._ahead.swap(batch))  # re-raises the step's error here
        if previous is not None:
            yield previous

    def finish_bundle(self) -> Iterator[Any]:
        last = self._counted(self._ahead.take()) if self._ahead is not None else None
        if last is not None:
            yield WindowedValue(last, MIN_TIMESTAMP, (GlobalWindow(),))

    def teardown(self) -> None:
        if self._ahead is not None:
            self._ahead.shutdown()
            self._ahead = None
        super().teardown()


class ApplyStep(beam.PTransform):  # type: ignore[misc]
    """Apply an engine-neutral step (``process(batch) -> StepResult``) to batches.

    Returns outputs ``events`` (batches) and ``dead_letters`` (``DeadLetter`` elements); with
    ``carry=True`` dead letters stay inside each batch (``EventBatch.dead_letters``) and the
    ``dead_letters`` output is empty. ``ahead=True`` (needs ``carry``) runs the step on a
    background thread one batch ahead of the sinks (see ``_AheadStepFn``): use it for a
    CPU-heavy step such as decoding, in front of sinks that wait for a server.
    """

    def __init__(self, step: Any, carry: bool = False, ahead: bool = False) -> None:
        super().__init__()
        if ahead and not carry:
            raise ValueError("ahead=True needs carry=True (dead letters inside the batches)")
        self.step = step
        self.carry = carry
        self.ahead = ahead

    def expand(self, pcoll: Any) -> Any:
        """Apply the step; outputs ``events`` and ``dead_letters``."""
        fn = _AheadStepFn(self.step) if self.ahead else _StepFn(self.step, self.carry)
        return pcoll | beam.ParDo(fn).with_outputs(DEAD_LETTERS, main=EVENTS)


class _StoreDeadLettersFn(beam.DoFn):  # type: ignore[misc]
    """Writes the dead letters carried in each batch, then passes the batch on without them."""

    def __init__(self, writer: DeadLetterWriter | None) -> None:
        self.writer = writer
        self.stored = Metrics.counter(NAMESPACE, "dead_letters_stored")

    def setup(self) -> None:
        if self.writer is not None:
            self.writer.open()

    def process(self, batch: EventBatch) -> Iterator[EventBatch]:
        if batch.dead_letters:
            store_dead_letters(self.writer, batch.dead_letters)
            self.stored.inc(len(batch.dead_letters))
            batch = msgspec.structs.replace(batch, dead_letters=[])
        yield batch

    def teardown(self) -> None:
        if self.writer is not None:
            self.writer.close()


class StoreDeadLetters(beam.PTransform):  # type: ignore[misc]
    """Store the dead letters carried inside batches; output the batches without them."""

    def __init__(self, writer: DeadLetterWriter | None) -> None:
        super().__init__()
        self.writer = writer

    def expand(self, pcoll: Any) -> Any:
        """Store each batch's dead letters; output the batches."""
        return pcoll | beam.ParDo(_StoreDeadLettersFn(self.writer))


class _WriteDeadLettersFn(beam.DoFn):  # type: ignore[misc]
    """Writes ``DeadLetter`` elements, a bundle at a time."""

    def __init__(self, writer: DeadLetterWriter | None) -> None:
        self.writer = writer
        self._buffer: list[DeadLetter] = []

    def setup(self) -> None:
        if self.writer is not None:
            self.writer.open()

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, letter: DeadLetter) -> None:
        self._buffer.append(letter)

    def finish_bundle(self) -> None:
        if self._buffer:
            store_dead_letters(self.writer, self._buffer)
            self._buffer = []

    def teardown(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WriteDeadLetters(beam.PTransform):  # type: ignore[misc]
    """Write a PCollection of ``DeadLetter`` elements to a dead-letter sink."""

    def __init__(self, writer: DeadLetterWriter | None) -> None:
        super().__init__()
        self.writer = writer

    def expand(self, pcoll: Any) -> Any:
        """Write the dead letters, a bundle at a time."""
        return pcoll | beam.ParDo(_WriteDeadLettersFn(self.writer))


def export_outcome(outcome: BatchOutcome) -> None:
    """Add what the executor did with one batch to Beam counters.

    ``dead_letters_stored`` (dead letters of decode and the steps), and per sink
    ``events_written:<sink>`` and ``rejected:<sink>``; the run summary reads them.
    """
    if outcome.dead_letters:
        Metrics.counter(NAMESPACE, "dead_letters_stored").inc(outcome.dead_letters)
    for sink, result in outcome.results.items():
        Metrics.counter(NAMESPACE, f"events_written:{sink}").inc(result.applied)
        if result.rejected:
            Metrics.counter(NAMESPACE, f"rejected:{sink}").inc(len(result.rejected))


def export_metrics(drained: list[tuple[str, Labels, int]]) -> None:
    """Add drained engine-neutral counter increments to Beam counters (``name{labels}``)."""
    for name, labels, amount in drained:
        Metrics.counter(NAMESPACE, flat_name(name, labels)).inc(amount)


class _ExecuteFn(beam.DoFn):  # type: ignore[misc]
    """Runs the executor on each raw batch; with ``ahead``, transforms one batch ahead.

    ``process(batch N)`` hands decode and the steps of batch N to a background thread and
    writes batch N-1 (already transformed) on the bundle's thread, so decoding overlaps the
    sinks' server round trips. Batches keep their order (one worker thread) and the last one
    is written in ``finish_bundle``, so a bundle (and the commit its finalization triggers)
    still covers every batch written.
    """

    def __init__(self, executor: BatchExecutor, ahead: bool) -> None:
        self.executor = executor
        self.ahead = ahead
        self._ahead: _OneAhead | None = None

    def setup(self) -> None:
        self.executor.open()
        if self.ahead:
            self._ahead = _OneAhead(self.executor.transform)

    def start_bundle(self) -> None:
        if self._ahead is not None:
            self._ahead.discard()

    def _write(self, batch: EventBatch | None) -> Iterator[DeadLetter]:
        if batch is None:
            return
        outcome = self.executor.write(batch)
        export_outcome(outcome)
        export_metrics(self.executor.drain_step_metrics())  # no transform is running now
        yield from outcome.rejected

    def process(self, raw: RawBatch) -> Iterator[DeadLetter]:
        if self._ahead is None:
            yield from self._write(self.executor.transform(raw))
            return
        # the transform of the batch in flight re-raises its error here
        yield from self._write(self._ahead.swap(raw))

    def finish_bundle(self) -> Iterator[Any]:
        if self._ahead is None:
            return
        for letter in self._write(self._ahead.take()):
            yield WindowedValue(letter, MIN_TIMESTAMP, (GlobalWindow(),))

    def teardown(self) -> None:
        if self._ahead is not None:
            self._ahead.shutdown()
            self._ahead = None
        self.executor.close()


class Execute(beam.PTransform):  # type: ignore[misc]
    """Run ``RawBatch`` elements through an engine-neutral executor, end to end.

    Decode, every step, the dead letters and every writer, in the exactly-once order of
    :mod:`cdcflow.core.executor`. The output holds the dead letters of rows a writer rejected
    (already stored). ``ahead=True`` runs decode and the steps one batch ahead on a thread.
    """

    def __init__(self, executor: BatchExecutor, ahead: bool = True) -> None:
        super().__init__()
        self.executor = executor
        self.ahead = ahead

    def expand(self, pcoll: Any) -> Any:
        """Execute each raw batch; output the rejected rows' dead letters."""
        return pcoll | beam.ParDo(_ExecuteFn(self.executor, self.ahead))


class _WriteFn(beam.DoFn):  # type: ignore[misc]
    """Writes each batch through an executor holding one writer (no decode, no steps)."""

    def __init__(self, writer: Writer, dead_letters: DeadLetterWriter | None) -> None:
        self.executor = BatchExecutor(None, [], [writer], dead_letters)

    def setup(self) -> None:
        self.executor.open()

    def process(self, batch: EventBatch) -> Iterator[DeadLetter]:
        outcome = self.executor.write(batch)
        export_outcome(outcome)
        export_metrics(self.executor.drain_step_metrics())
        yield from outcome.rejected

    def teardown(self) -> None:
        self.executor.close()


class WriteTo(beam.PTransform):  # type: ignore[misc]
    """Write ``EventBatch`` elements with an engine-neutral writer.

    Rows the writer rejects are stored in ``dead_letters`` (before the batch's position is
    committed) and also returned as the output PCollection of ``DeadLetter`` elements.
    """

    def __init__(self, writer: Writer, dead_letters: DeadLetterWriter | None = None) -> None:
        super().__init__()
        self.writer = writer
        self.dead_letters = dead_letters

    def expand(self, pcoll: Any) -> Any:
        """Write each batch; output the rows the writer rejected."""
        return pcoll | beam.ParDo(_WriteFn(self.writer, self.dead_letters))


class Decode(beam.PTransform):  # type: ignore[misc]
    """Decode ``RawBatch`` elements into ``EventBatch`` elements plus dead letters.

    Outputs ``events`` and ``dead_letters`` like :class:`ApplyStep`; undecodable records
    become dead letters with their original bytes. Pass a configured
    :class:`~cdcflow.transforms.decode.DecodeStep`, or its keyword arguments::

        decoded = raw | "Decode" >> Decode(format="debezium-json", stream_is_topic=False)
        decoded.events | ...; decoded.dead_letters | ...
    """

    def __init__(self, step: Any | None = None, *, carry: bool = False, **options: Any) -> None:
        super().__init__()
        from cdcflow.transforms.decode import DecodeStep

        if step is not None and options:
            raise ValueError(f"pass a DecodeStep or its options, not both (got {sorted(options)})")
        self.step = step if step is not None else DecodeStep(**options)
        self.carry = carry

    def expand(self, pcoll: Any) -> Any:
        """Apply the decode step; outputs ``events`` and ``dead_letters``."""
        return pcoll | "DecodeStep" >> ApplyStep(self.step, carry=self.carry)


class Redact(beam.PTransform):  # type: ignore[misc]
    """Redact ``EventBatch`` elements with a policy; outputs ``events`` and ``dead_letters``.

    ``policy`` is a :class:`~cdcflow.transforms.redact.step.RedactStep`, a
    :class:`~cdcflow.transforms.redact.config.RedactConfig`, or a list of rules (mappings as
    in YAML), in which case ``options`` are the other ``type: redact`` keys (``salt``,
    ``tables``...)::

        redacted = decoded.events | "Redact" >> Redact(
            [{"columns": ["email"], "strategy": "hash-sha256"}], salt=SALT)

    Events that cannot be redacted safely are dead letters whose event is itself redacted.
    """

    def __init__(self, policy: Any, *, carry: bool = False, **options: Any) -> None:
        super().__init__()
        from cdcflow.transforms.redact import RedactConfig, RedactStep

        if isinstance(policy, RedactStep):
            step = policy
        elif isinstance(policy, RedactConfig):
            step = RedactStep(policy)
        elif isinstance(policy, (list, tuple)):
            tables = options.pop("tables", ())
            step = RedactStep.from_rules(policy, tables, **options)
        else:
            raise ValueError(
                "policy must be a RedactStep, a RedactConfig or a list of rules "
                f"(got {type(policy).__name__})"
            )
        if options and not isinstance(policy, (list, tuple)):
            raise ValueError(f"options are only for a list of rules (got {sorted(options)})")
        self.step = step
        self.carry = carry

    def expand(self, pcoll: Any) -> Any:
        """Apply the redact step; outputs ``events`` and ``dead_letters``."""
        return pcoll | "RedactStep" >> ApplyStep(self.step, carry=self.carry)
