"""The source contract shared by every connector, independent of any engine.

A source lists its partitions and reads one partition from a start offset as a sequence of
:class:`~cdcflow.schemas.model.RawBatch` values. ``start_offset`` is the first offset to read
(``committed + 1`` when resuming); ``None`` means the source's own default start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cdcflow.schemas.model import RawBatch

#: A partition as positions store it: ``(stream, partition)``, the partition as text.
PartitionKey = tuple[str, str]


class Source:
    """Base class for engine-neutral, bounded-or-not partitioned sources."""

    #: True when a position's stream is a topic name that may identify the table.
    stream_is_topic: bool = False

    def partitions(self) -> list[tuple[str, int | str]]:
        """The ``(stream, partition)`` pairs to read."""
        raise NotImplementedError

    def read(
        self, stream: str, partition: int | str, start_offset: int | None
    ) -> Iterator[RawBatch]:
        """Yield the batches of one partition from ``start_offset`` to its current end."""
        raise NotImplementedError

    def check(self) -> list[str]:
        """Problems that would stop a run (missing file, unreachable server); empty when fine."""
        return []

    def discover_tables(self, decode: Any) -> set[str] | None:
        """The tables (``db.schema.table``) this source can deliver; None when it cannot tell.

        Used by ``cdcflow validate`` and by ``strict``/``require_match`` to find table
        patterns that match nothing (docs/redaction.md). ``decode`` is the pipeline's decode
        step, for sources that must read their contents to name the tables. Sources that can
        tell override it; the default says "unknown".
        """
        return None

    def end_offsets(self, timeout: float | None = None) -> dict[tuple[str, int], int] | None:
        """The end (one past the last offset) of every partition, now; None when unknown.

        Used by ``cdcflow status`` for the lag. Sources that can tell override it.
        """
        return None
