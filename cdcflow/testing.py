"""Test doubles that ship with cdcflow: in-memory source, writers and a fault-injecting writer.

Use them to test a custom step or a hand-written Beam pipeline without servers::

    source = MemorySource.from_values("shop.public.orders", [b'{"payload": ...}', ...])
    writer = MemoryWriter()
    ...
    assert writer.rows("shop.public.orders") == [{"id": 1, ...}]

They follow the contracts of :mod:`cdcflow.core.writer`: :class:`MemoryWriter` keeps positions
(``keeps_positions``) atomically with its rows, skips replayed events, keeps unavailable
(TOAST) columns' stored values, applies deletes and truncates, and reports rejected rows
(events without a key) through ``reject`` before it commits the position.
:class:`FaultyWriter` wraps any writer to fail a chosen batch or reject chosen rows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from cdcflow.core.source import PartitionKey, Source
from cdcflow.core.step import event_dead_letter
from cdcflow.core.writer import (
    MIRROR,
    Capabilities,
    DeadLetterWriter,
    RejectSink,
    Writer,
    WriteResult,
    skipped,
)
from cdcflow.errors import RowRejectedError, SinkError, TransientSinkError
from cdcflow.schemas.model import (
    ChangeEvent,
    DeadLetter,
    EventBatch,
    Op,
    Position,
    RawBatch,
    RawRecord,
)

__all__ = [
    "FaultyWriter",
    "MemoryDeadLetterWriter",
    "MemorySource",
    "MemoryWriter",
]

Key = tuple[Any, ...]


class MemorySource(Source):
    """A bounded source over records held in memory.

    ``records`` are :class:`RawRecord` values of any streams and partitions; each partition is
    read in offset order in batches of up to ``batch_size`` records, from ``start_offset``
    (inclusive). Each :class:`RawBatch`'s ``last_offset`` is its last record's offset.
    """

    def __init__(
        self, records: Iterable[RawRecord], batch_size: int = 100, stream_is_topic: bool = False
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {batch_size!r})")
        self.batch_size = batch_size
        self.stream_is_topic = stream_is_topic
        self._parts: dict[tuple[str, int | str], list[RawRecord]] = {}
        for record in records:
            part = (record.position.stream, record.position.partition)
            self._parts.setdefault(part, []).append(record)
        for held in self._parts.values():
            held.sort(key=lambda r: r.position.offset)

    @classmethod
    def from_values(
        cls,
        stream: str,
        values: Sequence[bytes | None],
        partition: int | str = 0,
        keys: Sequence[bytes | None] | None = None,
        batch_size: int = 100,
    ) -> MemorySource:
        """One partition whose records have offsets 0, 1, 2... and the given values (and keys)."""
        if keys is not None and len(keys) != len(values):
            raise ValueError(f"keys and values differ in length ({len(keys)} != {len(values)})")
        records = [
            RawRecord(
                key=keys[i] if keys is not None else None,
                value=value,
                position=Position(stream=stream, partition=partition, offset=i),
            )
            for i, value in enumerate(values)
        ]
        return cls(records, batch_size=batch_size)

    def partitions(self) -> list[tuple[str, int | str]]:
        """The ``(stream, partition)`` pairs that have records."""
        return list(self._parts)

    def read(
        self, stream: str, partition: int | str, start_offset: int | None
    ) -> Iterator[RawBatch]:
        """The partition's records from ``start_offset`` (all when None), batch by batch."""
        records = self._parts.get((stream, partition), [])
        if start_offset is not None:
            records = [r for r in records if r.position.offset >= start_offset]
        for start in range(0, len(records), self.batch_size):
            chunk = records[start : start + self.batch_size]
            yield RawBatch(
                stream=stream,
                partition=partition,
                records=chunk,
                last_offset=chunk[-1].position.offset,
            )


class MemoryWriter(Writer):
    """A mirror sink in memory: rows per table (``str(TableId)``) by primary key.

    * ``c``/``u``/``r`` upsert by ``event.key``; columns in ``event.unavailable`` keep their
      stored value; ``d`` deletes; ``t`` empties the table (``truncate="apply"``) or is
      ignored (``"ignore"``).
    * An event without a key is rejected: it becomes a dead letter.
    * A batch and its ``last_offset`` are applied atomically; events at or below the stored
      position of their partition are skipped, so a replayed batch changes nothing.
    * ``reject`` optionally names more rows to reject (a predicate on the event).
    * ``positions`` seeds the stored positions (as if earlier runs had written them);
      ``keeps_positions=False`` makes it behave like a sink without positions;
      ``capabilities`` what it declares (a mirror: :data:`~cdcflow.core.writer.MIRROR`).
    * :attr:`calls` logs ``open``, ``committed``, ``write`` and ``close`` in call order.
    """

    def __init__(
        self,
        name: str = "memory",
        truncate: Literal["apply", "ignore"] = "apply",
        reject: Callable[[ChangeEvent], bool] | None = None,
        positions: Mapping[PartitionKey, int] | None = None,
        keeps_positions: bool = True,
        capabilities: Capabilities = MIRROR,
    ) -> None:
        self.name = name
        self.truncate = truncate
        self.reject = reject
        self.keeps_positions = keeps_positions
        self.capabilities = capabilities
        self.tables: dict[str, dict[Key, dict[str, Any]]] = {}
        self.positions: dict[PartitionKey, int] = dict(positions or {})
        self.calls: list[str] = []
        self.batches_written = 0
        #: The markers (transaction, schema-change, tombstone, heartbeat) of the batches
        #: written, in order: schema changes reach writers with the rows.
        self.markers: list[Any] = []

    def open(self) -> None:
        """Nothing to connect to (logged in :attr:`calls`)."""
        self.calls.append("open")

    def close(self) -> None:
        """Nothing to release (logged in :attr:`calls`)."""
        self.calls.append("close")

    def committed_positions(self) -> dict[PartitionKey, int]:
        """The stored last offset per ``(stream, partition)`` (empty without positions)."""
        self.calls.append("committed")
        return dict(self.positions) if self.keeps_positions else {}

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The stored rows of ``table`` (``db.schema.table``) ordered by key."""
        stored = self.tables.get(table, {})
        return [dict(stored[k]) for k in sorted(stored, key=repr)]

    def write(self, batch: EventBatch, reject: RejectSink | None = None) -> WriteResult:
        """Apply ``batch`` and store its position atomically (see the class docstring)."""
        self.calls.append("write")
        key = batch.partition_key
        committed = self.positions.get(key, -1) if self.keeps_positions else -1
        if batch.last_offset <= committed:
            return skipped()
        events = [e for e in batch.events if e.position.offset > committed]
        tables = copy.deepcopy(self.tables)
        dead: list[DeadLetter] = []
        for event in events:
            error = self._apply(tables, event)
            if error is not None:
                dead.append(event_dead_letter(f"sink:{self.name}", event, error))
        if dead and reject is not None:
            reject(dead)  # before the position commits
        self.tables = tables
        self.positions[key] = batch.last_offset
        self.batches_written += 1
        self.markers.extend(m for m in batch.markers if m.position.offset > committed)
        return WriteResult(len(events) - len(dead), dead)

    def _apply(
        self, tables: dict[str, dict[Key, dict[str, Any]]], event: ChangeEvent
    ) -> Exception | None:
        table = tables.setdefault(str(event.table), {})
        if event.op is Op.TRUNCATE:
            if self.truncate == "apply":
                table.clear()
            return None
        if self.reject is not None and self.reject(event):
            return RowRejectedError(f"sink {self.name!r}: row rejected by the test's predicate")
        if not event.key:
            return RowRejectedError(
                f"sink {self.name!r}: event of {event.table} has no key; cannot upsert or delete"
            )
        row_key = tuple(sorted(event.key.items()))
        if event.op is Op.DELETE:
            table.pop(row_key, None)
            return None
        row = dict(event.after or {})
        stored = table.get(row_key, {})
        for column in event.unavailable:
            row[column] = stored.get(column)
        table[row_key] = row
        return None

    def describe(self) -> list[str]:
        """One line per table with its row count."""
        return [f"{name}: {len(rows)} rows" for name, rows in sorted(self.tables.items())]


class MemoryDeadLetterWriter(DeadLetterWriter):
    """Keeps dead letters in :attr:`letters`; ``fail=True`` makes every write raise.

    ``opened``/``closed`` say whether :meth:`open`/:meth:`close` were called.
    """

    def __init__(self, fail: bool = False) -> None:
        self.letters: list[DeadLetter] = []
        self.fail = fail
        self.opened = self.closed = False

    def open(self) -> None:
        """Mark the writer opened."""
        self.opened = True

    def close(self) -> None:
        """Mark the writer closed."""
        self.closed = True

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Append ``letters`` (or raise :class:`SinkError` when ``fail`` is set)."""
        if self.fail:
            raise SinkError("dead-letter writer configured to fail")
        self.letters.extend(letters)

    def describe(self) -> list[str]:
        """How many letters are held."""
        return [f"{len(self.letters)} dead letters in memory"]


class FaultyWriter(Writer):
    """Wraps a writer to inject faults.

    * ``fail_on``: the 1-based numbers of the ``write`` calls that raise before anything
      reaches the inner writer (so no row and no position is stored), with a
      :class:`TransientSinkError` (``error="transient"``) or a terminal :class:`SinkError`.
      Each listed call fails once; the next call goes through.
    * ``reject``: a predicate naming rows to reject; they are taken out of the batch and
      reported as dead letters (through ``reject`` when given) before the inner writer
      writes the rest and commits the position.
    """

    def __init__(
        self,
        inner: Writer,
        fail_on: Iterable[int] = (),
        error: Literal["transient", "terminal"] = "transient",
        reject: Callable[[ChangeEvent], bool] | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.keeps_positions = inner.keeps_positions
        self.capabilities = inner.capabilities
        self.fail_on = set(fail_on)
        self.error = error
        self.reject = reject
        self.calls = 0
        self.failures = 0

    def open(self) -> None:
        """Open the inner writer."""
        self.inner.open()

    def close(self) -> None:
        """Close the inner writer."""
        self.inner.close()

    def committed_positions(self) -> dict[PartitionKey, int]:
        """The inner writer's positions."""
        return self.inner.committed_positions()

    def write(self, batch: EventBatch, reject: RejectSink | None = None) -> WriteResult:
        """Fail, reject, or delegate (see the class docstring)."""
        self.calls += 1
        if self.calls in self.fail_on:
            self.failures += 1
            message = f"sink {self.name!r}: injected failure of write #{self.calls}"
            if self.error == "transient":
                raise TransientSinkError(message)
            raise SinkError(message)
        dead: list[DeadLetter] = []
        if self.reject is not None:
            committed = self.inner.committed_positions().get(batch.partition_key, -1)
            kept: list[ChangeEvent] = []
            for event in batch.events:
                if event.position.offset > committed and self.reject(event):
                    error = RowRejectedError(f"sink {self.name!r}: injected rejection")
                    dead.append(event_dead_letter(f"sink:{self.name}", event, error))
                else:
                    kept.append(event)
            batch = EventBatch(
                stream=batch.stream,
                partition=batch.partition,
                last_offset=batch.last_offset,
                events=kept,
                markers=batch.markers,
                dead_letters=batch.dead_letters,
            )
            if dead and reject is not None:
                reject(dead)
        inner = self.inner.write(batch, reject)
        return WriteResult(inner.applied, dead + inner.rejected)


def rows_by_table(writer: MemoryWriter) -> Mapping[str, list[dict[str, Any]]]:
    """Every table's rows (for assertions that compare whole states)."""
    return {name: writer.rows(name) for name in sorted(writer.tables)}
