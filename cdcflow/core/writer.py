"""The writer and dead-letter writer contracts shared by every sink, independent of any engine.

A writer writes whole :class:`~cdcflow.schemas.model.EventBatch` values and, when it keeps
positions (``keeps_positions``), stores the batch's ``last_offset`` for its partition in the
same atomic step as the rows, so a replayed batch is skipped. ``write`` returns a
:class:`WriteResult`: how many events it applied and the dead letters of the rows it rejected,
which it has handed to the ``reject`` sink before committing the position. It raises for
failures that must stop the pipeline (:class:`~cdcflow.errors.TransientSinkError` after
retries, or a terminal error).

Engines do not call writers directly: :class:`cdcflow.core.executor.BatchExecutor` does, and
passes a ``reject`` sink that stores dead letters durably.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import NamedTuple

from cdcflow.core.source import PartitionKey
from cdcflow.schemas.model import DeadLetter, EventBatch, TableId

#: Stores the dead letters of rejected rows durably; raises when it cannot.
RejectSink = Callable[[list[DeadLetter]], None]


class WriteResult(NamedTuple):
    """What one :meth:`Writer.write` did.

    ``applied``: the events the sink applied (past its stored position, kept by its table
    filter, rejected rows *not* included); 0 for a batch skipped as replayed. ``rejected``: the
    dead letters of the rows the destination refused, already handed to the ``reject`` sink.
    """

    applied: int
    rejected: list[DeadLetter]


class Capabilities(NamedTuple):
    """What a writer can do with the events it gets; the plan checks a pipeline against it.

    * ``upsert``: creates and updates are applied by key (a mirror), not appended;
    * ``delete``: deletes remove the row;
    * ``truncate``: truncate events empty the table (``truncate: apply``);
    * ``keeps_unavailable``: columns Debezium marks unavailable (TOAST) keep their stored
      value instead of being overwritten by the placeholder;
    * ``schema_changes``: schema-change markers are applied to the destination;
    * ``idempotent``: writing the same batch twice has the effect of writing it once, even
      without stored positions.

    Whether the writer stores positions with its rows is :attr:`Writer.keeps_positions`.
    """

    upsert: bool = False
    delete: bool = False
    truncate: bool = False
    keeps_unavailable: bool = False
    schema_changes: bool = False
    idempotent: bool = False


#: A sink mirroring tables by key (SQLite, PostgreSQL, ClickHouse in their default mode):
#: everything but schema changes.
MIRROR = Capabilities(
    upsert=True, delete=True, truncate=True, keeps_unavailable=True, idempotent=True
)


def skipped() -> WriteResult:
    """The result of a batch at or below the stored position: nothing applied or rejected."""
    return WriteResult(0, [])


class Writer:
    """Base class for engine-neutral sinks."""

    #: The sink's name in the pipeline (positions are stored under it).
    name: str = "sink"
    #: True when the writer stores positions atomically with its rows.
    keeps_positions: bool = False
    #: What the writer can do (see :class:`Capabilities`), set per class or per instance (a
    #: history-mode table sink appends, so it is not idempotent); the plan refuses a pipeline
    #: that asks a sink for more.
    capabilities: Capabilities = Capabilities()
    #: True in a streaming run: transient failures are retried for the sink's streaming retry
    #: span rather than a number of attempts (:mod:`cdcflow.io.retry`). Set by the engine.
    streaming: bool = False

    def open(self) -> None:
        """Connect and prepare (called on the worker, or in the driver to read positions)."""

    def committed_positions(self) -> dict[PartitionKey, int]:
        """The last offset written per ``(stream, partition)``; ``open`` must be called first."""
        return {}

    def stored_positions(self) -> dict[PartitionKey, int]:
        """The last offset written per ``(stream, partition)``, read for ``cdcflow status``.

        Unlike :meth:`open`, this should create nothing (no database, schema or table): a sink
        that has never written reports ``{}``. The default opens, reads and closes; sinks
        override it to read without side effects. Raises when the destination cannot be read.
        """
        if not self.keeps_positions:
            return {}
        self.open()
        try:
            return self.committed_positions()
        finally:
            self.close()

    def write(self, batch: EventBatch, reject: RejectSink | None = None) -> WriteResult:
        """Write one batch (and its position) atomically; say what was applied and rejected.

        Rows the destination rejects become dead letters. They are always listed in the
        result's ``rejected``; when ``reject`` is given (the executor always gives it) it is
        called with them *before* the batch's position is committed, so a crash between the
        two cannot lose them. A writer must not commit a position when ``reject`` raises.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def check(self) -> list[str]:
        """Problems that would stop a run (unreachable, no permission); empty when fine."""
        return []

    def describe(self) -> list[str]:
        """Human-readable lines summarising what the sink holds (for ``cdcflow run``)."""
        return []


class DeadLetterWriter:
    """Base class for dead-letter sinks."""

    def open(self) -> None:
        """Prepare the destination."""

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Write dead letters durably; raise when they cannot be written."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources."""

    def check(self) -> list[str]:
        """Problems that would stop a run (cannot create, unreachable); empty when fine.

        Must not create or write anything. Messages start with ``dead_letter:``.
        """
        return []

    def describe(self) -> list[str]:
        """Human-readable summary lines."""
        return []


class TableFilter:
    """Matches :class:`TableId` values against glob patterns (``shop.public.*``)."""

    def __init__(self, patterns: str | Sequence[str]) -> None:
        self.patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        self._cache: dict[TableId, bool] = {}
        #: The patterns that matched some table seen so far.
        self.matched: set[str] = set()

    def __call__(self, table: TableId) -> bool:
        """True when ``table`` matches any of the patterns (cached per table)."""
        hit = self._cache.get(table)
        if hit is None:
            name = str(table)
            found = [p for p in self.patterns if fnmatch.fnmatchcase(name, p)]
            self.matched.update(found)
            hit = bool(found)
            self._cache[table] = hit
        return hit

    def unmatched(self) -> list[str]:
        """The patterns no table seen so far has matched."""
        return [p for p in self.patterns if p not in self.matched]
