"""Turning the Flink operator's window rows into raw batches.

The Flink operator (:mod:`cdcflow.flink.job`) converts each window row with :func:`raw_batch`
and hands it to the engine-neutral :class:`~cdcflow.core.executor.BatchExecutor`, the same
write path the Beam engine runs. This module holds no Flink types, so unit tests call it
directly.

:func:`raw_batch` runs once per record of every batch, so it is written for speed: the order
check and the type check are single C-level passes, the records are built positionally, and
nothing is sorted or copied when the arrays are already in offset order and hold ``bytes``
(what Flink's ``ARRAY_AGG`` hands over in practice).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import islice

from cdcflow.schemas.model import Position, RawBatch, RawRecord

_PLAIN = frozenset({bytes, type(None)})


def _as_bytes(items: Sequence[object]) -> Sequence[bytes | None]:
    """``items`` unchanged when each is ``bytes`` or None, else a list with each one converted.

    Raises :class:`TypeError` for an item that is neither None nor convertible by ``bytes()``.
    """
    if set(map(type, items)) <= _PLAIN:
        return items  # type: ignore[return-value]
    return [None if item is None else bytes(item) for item in items]  # type: ignore[call-overload]


def raw_batch(
    topic: str,
    partition: int,
    offsets: Sequence[int],
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
) -> RawBatch:
    """A :class:`RawBatch` from parallel arrays of offsets, keys and values, in any order.

    Flink's ``ARRAY_AGG`` does not promise an order, so the records are sorted by offset when
    they are not already ascending; the batch's ``last_offset`` is the highest offset. Keys and
    values must be ``bytes`` (or anything ``bytes()`` accepts) or None; offsets integers.
    Raises :class:`ValueError` when the arrays differ in length or are empty.
    """
    count = len(offsets)
    if not count == len(keys) == len(values):
        raise ValueError(
            f"batch for {topic}[{partition}] has {count} offsets, {len(keys)} keys "
            f"and {len(values)} values"
        )
    if not count:
        raise ValueError(f"empty batch for {topic}[{partition}]")
    if set(map(type, offsets)) != {int}:
        offsets = [int(offset) for offset in offsets]
    keys = _as_bytes(keys)
    values = _as_bytes(values)
    if not all(map(operator.lt, offsets, islice(offsets, 1, None))):
        order = sorted(range(count), key=offsets.__getitem__)
        offsets = [offsets[i] for i in order]
        keys = [keys[i] for i in order]
        values = [values[i] for i in order]
    record, position = RawRecord, Position
    out = [
        record(key, value, position(topic, partition, offset))
        for offset, key, value in zip(offsets, keys, values, strict=True)
    ]
    return RawBatch(stream=topic, partition=partition, records=out, last_offset=offsets[-1])
