"""The per-partition consumer loop: one :class:`~cdcflow.schemas.model.RawBatch`'s records per poll.

Contract: a :class:`PartitionPoller` owns one consumer assigned to one partition (created on
the worker by :meth:`PartitionPoller.open`, never pickled). :meth:`PartitionPoller.poll`
returns the records in offset order, at most ``max_batch_size``, none below the requested
position; a fatal broker error raises :class:`~cdcflow.io.kafka.client.KafkaError`, other
errors are logged. :meth:`PartitionPoller.commit` stores the *next* offset to read in the
consumer group (Kafka's convention) and is called only after every sink wrote the records
below it.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from cdcflow.io.kafka import client, logs
from cdcflow.io.kafka.client import KafkaError
from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.schemas.model import Position, RawRecord

log = logging.getLogger(__name__)
# A partition's error repeats on every poll: summarised (see cdcflow.io.kafka.logs).
logs.install(log)
class PollResult(msgspec.Struct):
    """What one poll of one partition returned.

    ``records`` are in offset order; ``next_offset`` is the offset after the last record (or
    the end offset the broker reported at end of partition); ``at_end`` is true when the
    consumer is at the partition's current end (it stays true, poll after poll, until a new
    record arrives).
    """

    records: list[RawRecord]
    next_offset: int
    at_end: bool


class PartitionPoller:
    """Reads one partition with its own consumer, a batch per poll.

    The consumer is created on the worker (:meth:`open`), never pickled. ``poll`` returns at
    most ``max_batch_size`` records; records below the requested position (stale prefetch
    after a seek) are dropped.
    """

    def __init__(self, settings: KafkaSettings, topic: str, partition: int) -> None:
        self.settings = settings
        self.topic = topic
        self.partition = partition
        self._consumer: Any = None
        self._next: int | None = None
        self._at_end = False
        self.last_committed: int | None = None

    def open(self, offset: int) -> None:
        """Create the consumer (if needed) and position it at ``offset``."""
        kafka = client.confluent()
        if self._consumer is None:
            self._consumer = client.new_consumer(self.settings, **{"enable.partition.eof": True})
        if self._next != offset:
            self._consumer.assign([kafka.TopicPartition(self.topic, self.partition, offset)])
            self._next = offset
            self._at_end = False

    @property
    def position(self) -> int | None:
        """The next offset this poller will return."""
        return self._next

    def poll(self, max_records: int | None = None, timeout: float | None = None) -> PollResult:
        """Poll once; raises :class:`KafkaError` for a broker error on this partition."""
        if self._consumer is None or self._next is None:
            raise RuntimeError("PartitionPoller.open() must be called before poll()")
        kafka = client.confluent()
        eof_code = kafka.KafkaError._PARTITION_EOF
        limit = max_records or self.settings.max_batch_size
        consume = self._consumer.consume
        # Take what the background fetcher has queued; only when nothing is queued, wait for
        # the first message (consume(n, t) would otherwise wait the full timeout for n).
        messages = consume(limit, 0)
        if not messages:
            messages = consume(1, self.settings.poll_timeout_s if timeout is None else timeout)
            if messages and limit > 1:
                messages.extend(consume(limit - 1, 0))
        topic = self.topic
        part = self.partition
        expected = self._next
        # Hot path: one comprehension over the data messages (errors are rare events).
        records = [
            RawRecord(
                m.key(),
                m.value(),
                Position(topic, part, m.offset()),
                m.timestamp()[1],
                tuple(h) if (h := m.headers()) else (),
            )
            for m in messages
            if m.error() is None
        ]
        if records and records[0].position.offset < expected:  # stale prefetch after a seek
            records = [r for r in records if r.position.offset >= expected]
        next_offset = records[-1].position.offset + 1 if records else expected
        # "At the end" sticks until a record arrives: the broker signals the end only once.
        at_end = self._at_end and not records
        if len(records) != len(messages):
            for message in messages:
                error = message.error()
                if error is None:
                    continue
                if error.code() == eof_code:
                    end = message.offset()
                    if end is not None and end >= next_offset:
                        at_end = True
                        next_offset = end
                    continue
                if error.fatal():
                    raise KafkaError(f"Kafka {topic}[{part}]: {error}")
                log.warning("Kafka %s[%d]: %s", topic, part, error)
        self._next = next_offset
        self._at_end = at_end
        return PollResult(records=records, next_offset=next_offset, at_end=at_end)

    def stop_fetching(self) -> None:
        """Unassign the partition: the consumer stops fetching but stays open for :meth:`commit`.

        For a range that is read to its end: an idle consumer otherwise keeps sending fetch
        requests until it is closed (240 idle consumers cost the broker about 3x the CPU of
        the reading, see docs/kafka.md). A later :meth:`open` assigns the partition again.
        """
        if self._consumer is not None and self._next is not None:
            self._consumer.unassign()
            self._next = None
            self._at_end = False

    def commit(self, next_offset: int) -> bool:
        """Commit ``next_offset`` (the next offset to read) to the group; False on failure.

        An offset equal to the last one this poller committed is not sent again.
        """
        if self._consumer is None or not self.settings.commit_offsets:
            return False
        if next_offset == self.last_committed:
            return True
        kafka = client.confluent()
        try:
            self._consumer.commit(
                offsets=[kafka.TopicPartition(self.topic, self.partition, next_offset)],
                asynchronous=False,
            )
        except kafka.KafkaException as exc:
            log.warning(
                "could not commit offset %d for %s[%d] to group %r: %s (the sinks' own "
                "positions still prevent duplicates; the next commit catches up)",
                next_offset, self.topic, self.partition, self.settings.group_id, exc,
            )
            return False
        self.last_committed = next_offset
        return True

    def close(self) -> None:
        """Close the consumer."""
        if self._consumer is not None:
            try:
                self._consumer.close()
            finally:
                self._consumer = None
                self._next = None
