"""The engine-neutral work one Flink Python operator does for one batch.

:class:`BatchProcessor` runs, for one partition's :class:`~cdcflow.schemas.model.RawBatch`,
exactly what the Beam engine's fused stage runs: decode, every transform step, dead letters to
the dead-letter writer, then every writer in turn. Dead letters are stored *before* any writer
commits the batch's position, so a crash can never lose them. Writers skip events at or below
the position they stored, so a batch replayed after a restore from a checkpoint changes nothing.

It holds no Flink types: the Flink operator (:mod:`cdcflow.flink.job`) converts rows to raw
batches with :func:`raw_batch` and calls :meth:`BatchProcessor.process`; unit tests call it
directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cdcflow.core.writer import DeadLetterWriter, Writer
from cdcflow.metrics import Counters as StepCounters
from cdcflow.metrics import Labels
from cdcflow.schemas.canonical import dead_letter_dict, dumps
from cdcflow.schemas.model import DeadLetter, EventBatch, Position, RawBatch, RawRecord

log = logging.getLogger(__name__)


def raw_batch(
    topic: str,
    partition: int,
    offsets: Sequence[int],
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
) -> RawBatch:
    """A :class:`RawBatch` from parallel arrays of offsets, keys and values, in any order.

    Flink's ``ARRAY_AGG`` does not promise an order, so the records are sorted by offset; the
    batch's ``last_offset`` is the highest offset.
    """
    if not len(offsets) == len(keys) == len(values):
        raise ValueError(
            f"batch for {topic}[{partition}] has {len(offsets)} offsets, {len(keys)} keys "
            f"and {len(values)} values"
        )
    records: Iterable[tuple[int, bytes | None, bytes | None]] = zip(
        offsets, keys, values, strict=True
    )
    ordered = sorted(records, key=lambda r: r[0])
    if not ordered:
        raise ValueError(f"empty batch for {topic}[{partition}]")
    out = [
        RawRecord(
            key=bytes(key) if key is not None else None,
            value=bytes(value) if value is not None else None,
            position=Position(topic, partition, int(offset)),
        )
        for offset, key, value in ordered
    ]
    return RawBatch(
        stream=topic, partition=partition, records=out, last_offset=out[-1].position.offset
    )


@dataclass
class Counters:
    """What a processor did since it was opened."""

    batches: int = 0
    records: int = 0
    dead_letters: int = 0
    written: dict[str, int] = field(default_factory=dict)


class BatchProcessor:
    """Decode, transform and write batches (see the module docstring).

    ``decode`` and ``steps`` follow the step contract (``setup``/``process``/``teardown``);
    ``writers`` the :class:`~cdcflow.core.writer.Writer` contract. Call :meth:`open` on the worker
    before the first batch and :meth:`close` at the end.
    """

    def __init__(
        self,
        decode: Any,
        steps: Sequence[Any],
        writers: Sequence[Writer],
        dead_letters: DeadLetterWriter | None,
    ) -> None:
        self.decode = decode
        self.steps = list(steps)
        self.writers = list(writers)
        self.dead_letters = dead_letters
        self.counters = Counters()
        self._open = False
        self._last: dict[tuple[str, str], int] = {}

    def open(self) -> None:
        """Set up the steps and connect the writers (on the worker)."""
        if self._open:
            return
        self.decode.setup()
        for step in self.steps:
            step.setup()
        if self.dead_letters is not None:
            self.dead_letters.open()
        for writer in self.writers:
            writer.open()
        self._open = True

    def process(self, raw: RawBatch) -> EventBatch:
        """Run one raw batch through decode, the steps, the dead-letter sink and the writers.

        Returns the batch as written (without its dead letters, which are stored). Raises when
        a writer or the dead-letter sink fails: the Flink job then restarts from its last
        checkpoint and the batch is replayed.
        """
        if not self._open:
            self.open()
        self._check_order(raw)
        result = self.decode.process(raw)
        batch: EventBatch = result.batch
        dead: list[DeadLetter] = list(result.dead_letters)
        for step in self.steps:
            stepped = step.process(batch)
            batch = stepped.batch
            dead.extend(stepped.dead_letters)
        if batch.dead_letters:
            dead = [*batch.dead_letters, *dead]
            batch = msgspec.structs.replace(batch, dead_letters=[])
        if dead:
            self._store(dead)
        for writer in self.writers:
            rejected: list[DeadLetter] = []

            def on_rejected(letters: list[DeadLetter], sink: list[DeadLetter] = rejected) -> None:
                self._store(letters)
                sink.extend(letters)

            counts = writer.last_applied is not None
            if counts:
                writer.last_applied = 0  # a fully replayed batch returns before counting
            leftover = writer.write(batch, on_rejected=on_rejected)
            if leftover:
                self._store(leftover)
                rejected.extend(leftover)
            applied = writer.last_applied if counts else None
            self.counters.written[writer.name] = (
                self.counters.written.get(writer.name, 0)
                + (len(batch.events) if applied is None else applied)
                - len(rejected)
            )
        self.counters.batches += 1
        self.counters.records += len(raw.records)
        return batch

    def drain_step_metrics(self) -> list[tuple[str, Labels, int]]:
        """The increments of the steps' engine-neutral counters since the previous call.

        Steps that count (``redact``'s ``redacted_values``) own a
        :class:`cdcflow.metrics.Counters` as ``metrics``; the Flink operator adds these
        deltas to its metric group after each batch.
        """
        drained: list[tuple[str, Labels, int]] = []
        for step in (self.decode, *self.steps):
            counters = getattr(step, "metrics", None)
            if isinstance(counters, StepCounters):
                drained.extend(counters.drain())
        return drained

    def _check_order(self, raw: RawBatch) -> None:
        """Refuse a batch that goes back in its partition: writers would skip it as replayed.

        Within one operator instance a partition's batches must arrive in offset order (a
        restore builds a new instance, and replays there are skipped by the writers).
        """
        key = raw.partition_key
        first = raw.records[0].position.offset if raw.records else raw.last_offset
        previous = self._last.get(key)
        if previous is not None and first <= previous:
            raise RuntimeError(
                f"batch of {key[0]}[{key[1]}] starting at offset {first} arrived after offset "
                f"{previous}: batches of a partition must reach the writers in order"
            )
        self._last[key] = raw.last_offset

    def _store(self, letters: list[DeadLetter]) -> None:
        self.counters.dead_letters += len(letters)
        if self.dead_letters is not None:
            self.dead_letters.write(letters)
            return
        for letter in letters:  # never drop silently
            log.error("dead letter: %s", dumps(dead_letter_dict(letter)).decode())

    def close(self) -> None:
        """Close the writers and tear the steps down (errors are logged, all are closed)."""
        if not self._open:
            return
        self._open = False
        for closer in [
            *(w.close for w in self.writers),
            *([self.dead_letters.close] if self.dead_letters is not None else []),
            *(s.teardown for s in self.steps),
            self.decode.teardown,
        ]:
            try:
                closer()
            except Exception:  # close everything, report every failure
                log.exception("closing a cdcflow component failed")
