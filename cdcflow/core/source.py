"""The source contract shared by every connector, independent of any engine.

A source lists its partitions and reads one partition from a start offset as a sequence of
:class:`~cdcflow.schemas.model.RawBatch` values. ``start_offset`` is the first offset to read
(``committed + 1`` when resuming); ``None`` means the source's own default start.

Engines and commands ask the contract, never the concrete type: :attr:`Source.bounded` says
whether reading ends by itself (a file) or streams until stopped (Kafka; Kinesis and DynamoDB
Streams next), :meth:`Source.end_offsets` where an unbounded read stops for
``--until-caught-up``, :attr:`Source.ride_through_outages` whether a restarting streaming run
should wait out an outage of the source's servers, and :meth:`Source.describe_positions` what
the source itself stores about progress (for ``cdcflow status``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from cdcflow.schemas.model import RawBatch

#: A partition as positions store it: ``(stream, partition)``, the partition as text.
PartitionKey = tuple[str, str]


class Source:
    """Base class for engine-neutral, bounded-or-not partitioned sources."""

    #: True when a position's stream is a topic name that may identify the table.
    stream_is_topic: bool = False
    #: True when reading a partition ends at its end (a file); False for a stream that never
    #: ends by itself: an engine reads it until stopped, or up to :meth:`end_offsets` seen at
    #: start (``--until-caught-up``), and offers a graceful stop (SIGINT/SIGTERM).
    bounded: bool = True
    #: Set by a streaming run when it restarts the read: requests to the source's servers then
    #: ride through an outage (retried for a while) instead of failing at once. False for the
    #: first start, ``--until-caught-up`` and ``validate``. Sources without servers ignore it.
    ride_through_outages: bool = False

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

        Used by ``cdcflow status`` for the lag, and by the engines as the end of an unbounded
        source's read for ``--until-caught-up``. Sources that can tell override it.
        """
        return None

    def describe_positions(self, partitions: Sequence[PartitionKey]) -> list[str]:
        """Lines describing the positions the source itself stores for ``partitions``.

        For ``cdcflow status`` (e.g. a Kafka consumer group's committed offsets), which
        indents them under the sinks' lines; empty for a source that stores none (the
        default). Raises a ``CdcflowError`` when they cannot be read.
        """
        return []
