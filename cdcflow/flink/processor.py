"""Turning the Flink operator's window rows into raw batches.

The Flink operator (:mod:`cdcflow.flink.job`) converts each window row with :func:`raw_batch`
and hands it to the engine-neutral :class:`~cdcflow.core.executor.BatchExecutor`, the same
write path the Beam engine runs. This module holds no Flink types, so unit tests call it
directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cdcflow.schemas.model import Position, RawBatch, RawRecord


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
