"""Beam PTransforms wrapping sources, steps, writers and dead-letter sinks."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from cdcflow.core.source import PartitionKey, Source
from cdcflow.core.writer import DeadLetterWriter, Writer
from cdcflow.metrics import Counters, flat_name
from cdcflow.schemas.canonical import dead_letter_dict, dumps
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
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None

    def setup(self) -> None:
        super().setup()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cdcflow-ahead")

    def start_bundle(self) -> None:
        self._pending = None

    def _take(self) -> EventBatch | None:
        """The finished result of the batch in flight (None when there is none)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        result = pending.result()  # re-raises the step's exception here
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
        assert self._executor is not None
        previous = self._take()
        self._pending = self._executor.submit(self.step.process, batch)
        if previous is not None:
            yield previous

    def finish_bundle(self) -> Iterator[Any]:
        last = self._take()
        if last is not None:
            yield WindowedValue(last, MIN_TIMESTAMP, (GlobalWindow(),))

    def teardown(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
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
            _store(self.writer, batch.dead_letters)
            self.stored.inc(len(batch.dead_letters))
            batch = msgspec.structs.replace(batch, dead_letters=[])
        yield batch

    def teardown(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _store(writer: DeadLetterWriter | None, letters: list[DeadLetter]) -> None:
    if writer is not None:
        writer.write(letters)
        return
    # No dead-letter sink configured: never drop silently, log every letter as JSON.
    for letter in letters:
        log.error("dead letter: %s", dumps(dead_letter_dict(letter)).decode())


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
            _store(self.writer, self._buffer)
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


class _WriteFn(beam.DoFn):  # type: ignore[misc]
    """Writes each batch with an engine-neutral writer; rejected rows go to the dead letters."""

    def __init__(self, writer: Writer, dead_letters: DeadLetterWriter | None) -> None:
        self.writer = writer
        self.dead_letters = dead_letters
        self.written = Metrics.counter(NAMESPACE, f"events_written:{writer.name}")
        self.rejected = Metrics.counter(NAMESPACE, f"rejected:{writer.name}")

    def setup(self) -> None:
        self.writer.open()
        if self.dead_letters is not None:
            self.dead_letters.open()

    def process(self, batch: EventBatch) -> Iterator[DeadLetter]:
        if batch.dead_letters:
            # Dead letters must be stored before a position covering them is committed.
            _store(self.dead_letters, batch.dead_letters)
        rejected: list[DeadLetter] = []

        def on_rejected(letters: list[DeadLetter]) -> None:
            _store(self.dead_letters, letters)
            rejected.extend(letters)

        counts = self.writer.last_applied is not None
        if counts:
            self.writer.last_applied = 0  # a fully replayed batch returns before counting
        leftover = self.writer.write(batch, on_rejected=on_rejected)
        if leftover:
            _store(self.dead_letters, leftover)
            rejected.extend(leftover)
        applied = self.writer.last_applied if counts else None
        self.rejected.inc(len(rejected))
        self.written.inc((len(batch.events) if applied is None else applied) - len(rejected))
        yield from rejected

    def teardown(self) -> None:
        self.writer.close()
        if self.dead_letters is not None:
            self.dead_letters.close()


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
