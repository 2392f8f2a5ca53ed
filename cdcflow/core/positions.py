"""The position-store contract, for sinks that cannot keep positions with their data.

Transactional sinks (SQLite, PostgreSQL) write a batch's rows and its position in one
transaction. Sinks that cannot (EventBridge, search indexes, object stores) keep their
positions in a :class:`PositionStore` instead: one row per ``(pipeline, sink, stream,
partition)`` holding the last offset the sink has delivered.

The write protocol of a writer using a position store, and what it guarantees::

    stored = store.read(pipeline, sink)            # once, when the writer opens
    for batch in batches:
        events = [e for e in batch.events if not is_covered(stored, e.position)]
        deliver(events)                            # 1. write the batch to the sink
        store.commit(pipeline, sink, {batch.partition_key: batch.last_offset})   # 2. then commit
        stored[batch.partition_key] = batch.last_offset

The batch is written **first** and its position committed **after**: a crash between the two
leaves the old position, so the batch is delivered again on restart. The effect is therefore
**at-least-once** unless the sink is idempotent (a deterministic event id the destination
deduplicates on, or the position used as an external version that an older replay cannot
overwrite); only then is it exactly-once. Committing first would lose the batch instead.

Positions of any size and shape
    A :data:`PartitionKey` is ``(stream, partition)`` as text (``("orders", "0")``,
    ``("shop-stream", "shardId-000000000001")``). Offsets are Python ``int`` values of any size
    (Kinesis and DynamoDB Streams sequence numbers have up to 129 decimal digits, typically 56):
    stores keep them exactly (never as a 64-bit integer or a float) and compare them
    numerically, never as text (``10**60 > 9 * 10**59``, though ``"9..." > "1..."``).

Positions only move forward: :meth:`PositionStore.commit` keeps, per partition, the higher of
the stored and the given offset, so a late or replayed commit never moves a partition back.
:meth:`PositionStore.reset` forgets positions explicitly (to re-deliver from the source's
``start:``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import TracebackType

from cdcflow.core.source import PartitionKey
from cdcflow.errors import SinkError
from cdcflow.schemas.model import Position

__all__ = [
    "MemoryPositionStore",
    "PartitionKey",
    "PositionStore",
    "check_positions",
    "is_covered",
    "merge_positions",
    "max_offset",
    "offset_to_text",
    "stored_offset",
]


def check_positions(positions: Mapping[PartitionKey, int]) -> dict[PartitionKey, int]:
    """Validate positions to store and return them as a plain dict.

    Keys must be ``(stream, partition)`` tuples of two strings, offsets ``int`` values (any
    size, negative allowed; ``bool`` is refused). Raises ``TypeError`` otherwise, before
    anything is written.
    """
    out: dict[PartitionKey, int] = {}
    for key, offset in positions.items():
        if (
            not isinstance(key, tuple)
            or len(key) != 2
            or not isinstance(key[0], str)
            or not isinstance(key[1], str)
        ):
            raise TypeError(
                f"a position key must be a (stream, partition) tuple of two strings, got {key!r}"
            )
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"the offset of {key!r} must be an int, got {type(offset).__name__}")
        out[(key[0], key[1])] = offset
    return out


def merge_positions(
    stored: Mapping[PartitionKey, int], new: Mapping[PartitionKey, int]
) -> dict[PartitionKey, int]:
    """The positions of ``new`` that move a partition forward (compared as integers).

    Returns only the partitions whose offset changes: those absent from ``stored`` and those
    whose new offset is numerically higher than the stored one.
    """
    changed: dict[PartitionKey, int] = {}
    for key, offset in new.items():
        current = stored.get(key)
        if current is None or offset > current:
            changed[key] = offset
    return changed


def is_covered(stored: Mapping[PartitionKey, int], position: Position) -> bool:
    """True when ``position`` is at or below the stored offset of its partition.

    A writer (or a stateful step) skips covered events on replay: they were already applied.
    """
    committed = stored.get(position.partition_key)
    return committed is not None and position.offset <= committed


def offset_to_text(offset: int) -> str:
    """An offset as exact decimal text (how durable stores keep it)."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"an offset must be an int, got {type(offset).__name__}")
    return str(offset)


def stored_offset(value: object, where: str) -> int:
    """An offset read back from a positions table, as the exact ``int`` it was written as.

    Position tables keep offsets of any size exactly (ARCHITECTURE §2: Kinesis sequence
    numbers have up to 129 digits): as an integer, a ``NUMERIC`` (a :class:`~decimal.Decimal`
    without a fraction) or decimal text. Anything inexact (a float, a fraction) means the
    table was changed by hand or by a lossy tool: :class:`~cdcflow.errors.SinkError` naming
    ``where``, rather than resuming from a rounded position.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, (str, bytes)):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        stripped = text.strip()
        digits = stripped[1:] if stripped[:1] in ("-", "+") else stripped
        if digits.isascii() and digits.isdigit():
            return int(stripped)
    raise SinkError(f"{where}: stored offset {value!r} is not an exact integer")


def max_offset(values: Iterable[object], where: str) -> int:
    """The numerically highest of the offsets ``values`` (see :func:`stored_offset`)."""
    return max(stored_offset(value, where) for value in values)


class PositionStore(abc.ABC):
    """Durable positions of ``(pipeline, sink)`` pairs; see the module docstring for the protocol.

    Implementations must:

    * keep offsets exactly, at any size, and compare them numerically;
    * make :meth:`commit` atomic: either every given position is stored or none is (a crash
      during a commit leaves the previous positions);
    * keep each ``(pipeline, sink)`` pair apart: one never sees or changes another's rows;
    * have :meth:`read` create nothing (a store that was never written reports ``{}``), so
      ``cdcflow status`` can call it without side effects.

    A store is opened lazily by its first call, or explicitly with :meth:`open`, and can be
    used as a context manager. Instances must be picklable before they are opened (engines
    ship writers to workers).
    """

    def open(self) -> None:  # noqa: B027 - optional hook; memory stores need nothing
        """Create or connect to the storage (optional: every method opens when needed)."""

    @abc.abstractmethod
    def read(self, pipeline: str, sink: str) -> dict[PartitionKey, int]:
        """The committed last offset per ``(stream, partition)`` of ``sink`` in ``pipeline``."""

    @abc.abstractmethod
    def commit(self, pipeline: str, sink: str, positions: Mapping[PartitionKey, int]) -> None:
        """Store ``positions`` atomically (all or nothing), after the batch was delivered.

        Partitions not named keep their position. A partition only moves forward: an offset
        at or below the stored one leaves it unchanged. Raises ``TypeError`` for malformed
        positions (nothing is stored) and :class:`~cdcflow.errors.SinkError` when the
        storage fails.
        """

    @abc.abstractmethod
    def reset(self, pipeline: str, sink: str, partitions: list[PartitionKey] | None = None) -> None:
        """Forget the positions of ``partitions`` (all of the sink's when None), atomically."""

    def close(self) -> None:  # noqa: B027 - optional hook; memory stores need nothing
        """Release the storage (the store may be opened again)."""

    def __enter__(self) -> PositionStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemoryPositionStore(PositionStore):
    """A position store in process memory, for tests and examples.

    ``backend`` plays the role of the disk: two stores sharing one backend dict see the same
    committed positions, which is how a test simulates a restart. Nothing survives the process.
    """

    def __init__(
        self, backend: dict[tuple[str, str], dict[PartitionKey, int]] | None = None
    ) -> None:
        self.backend: dict[tuple[str, str], dict[PartitionKey, int]] = (
            {} if backend is None else backend
        )

    def read(self, pipeline: str, sink: str) -> dict[PartitionKey, int]:
        """The committed positions of ``(pipeline, sink)`` (a copy)."""
        return dict(self.backend.get((pipeline, sink), {}))

    def commit(self, pipeline: str, sink: str, positions: Mapping[PartitionKey, int]) -> None:
        """Validate first, then merge in one step (so a bad position stores nothing)."""
        checked = check_positions(positions)
        stored = self.backend.get((pipeline, sink), {})
        changed = merge_positions(stored, checked)
        if changed:
            self.backend[(pipeline, sink)] = {**stored, **changed}

    def reset(self, pipeline: str, sink: str, partitions: list[PartitionKey] | None = None) -> None:
        """Forget some or all of the sink's positions."""
        if partitions is None:
            self.backend.pop((pipeline, sink), None)
            return
        stored = dict(self.backend.get((pipeline, sink), {}))
        for key in partitions:
            stored.pop(key, None)
        self.backend[(pipeline, sink)] = stored
