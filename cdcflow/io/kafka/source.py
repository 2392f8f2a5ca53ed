"""``KafkaSource``: Debezium change topics on Kafka, as a :class:`~cdcflow.core.source.Source`.

Contract (beyond :class:`~cdcflow.core.source.Source`): the source is unbounded
(``bounded = False``): an engine reads it until stopped, or, for ``--until-caught-up``, up to
:meth:`KafkaSource.end_offsets` seen at start. Partitions are discovered once and cached;
partitions or topics created later are read after a restart. cdcflow assigns partitions itself
(no group membership, no rebalancing); the consumer group only stores offsets, committed after
every sink wrote the records below them. Where each partition starts and ends is
:mod:`cdcflow.io.kafka.offsets`. The source object is picklable (no client is kept open).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from cdcflow.core.source import PartitionKey, Source
from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.io.kafka import client, logs, offsets
from cdcflow.io.kafka.client import KafkaAuthError, KafkaError, refused_access
from cdcflow.io.kafka.poller import PartitionPoller
from cdcflow.io.kafka.settings import KafkaSettings, TopicPartitionKey
from cdcflow.io.retry import RetryPolicy, call_with_retry
from cdcflow.schemas.model import RawBatch, TableId
from cdcflow.schemas.registry import SchemaRegistryConfig

T = TypeVar("T")


class KafkaSource(Source):
    """Debezium change topics on Kafka (see the module docstring)."""

    stream_is_topic = True
    bounded = False

    def __init__(
        self, settings: KafkaSettings, schema_registry: SchemaRegistryConfig | None = None
    ) -> None:
        self.settings = settings
        self.schema_registry = schema_registry
        self._partitions: list[tuple[str, int]] | None = None
        #: True when metadata requests should ride through a broker outage (a streaming run's
        #: restart): :class:`KafkaError` is then retried for ``settings.streaming_retry_s``.
        #: False (the first start, ``--until-caught-up``, ``validate``): one bounded wait of
        #: ``settings.metadata_timeout_s``, then the error.
        self.ride_through_outages = False

    def _retrying(self, operation: Callable[[], T], what: str) -> T:
        if not self.ride_through_outages:
            return operation()
        span = self.settings.streaming_retry_s
        policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=15.0, streaming_span_s=span)
        return call_with_retry(
            operation,
            lambda exc: isinstance(exc, KafkaError),
            policy,
            f"source: {what} on {self.settings.bootstrap_servers}",
            streaming=True,
        )

    # -- discovery ------------------------------------------------------------------------

    def partitions(self) -> list[tuple[str, int | str]]:
        """The ``(topic, partition)`` pairs to read, discovered once and then cached."""
        if self._partitions is None:
            self._partitions = self._retrying(self._discover, "listing topics")
        return list(self._partitions)

    def discover_tables(self, decode: Any) -> set[str] | None:
        """The subscribed topics' names as table ids, mapped as the decoder maps a topic.

        A message whose source block names its table is filed under that name instead; the
        topic is what can be known without reading (Debezium names topics after tables).
        """
        return {str(TableId.parse(topic)) for topic, _ in self.partitions()}

    def _discover(self) -> list[tuple[str, int]]:
        consumer = client.new_consumer(self.settings)
        try:
            metadata = self._list_topics(consumer)
        finally:
            consumer.close()
        available = {
            name: sorted(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and topic.partitions
        }
        if self.settings.topic_pattern is not None:
            pattern = re.compile(self.settings.topic_pattern)
            names = sorted(n for n in available if pattern.fullmatch(n) and not n.startswith("__"))
            if not names:
                raise self._missing_topics_error(
                    f"source.topic_pattern: no topic on {self.settings.bootstrap_servers} "
                    f"matches {self.settings.topic_pattern!r}"
                )
        else:
            missing = [t for t in self.settings.topics if t not in available]
            if missing:
                raise self._missing_topics_error(
                    f"source.topics: topic(s) {missing} do not exist on "
                    f"{self.settings.bootstrap_servers}"
                )
            names = list(self.settings.topics)
        return [(name, p) for name in names for p in available[name]]

    def _missing_topics_error(self, message: str) -> CdcflowError:
        """A configuration error at a first start; transient while riding through an outage.

        A restarting broker (or cluster) can answer metadata before its topics are back, or with
        a leader error for them: a streaming restart then retries rather than ending the run.
        """
        if self.ride_through_outages:
            return KafkaError(f"{message} (yet)")
        return ConfigError(message)

    def _list_topics(self, consumer: Any) -> Any:
        """Topic metadata, waiting at most ``metadata_timeout_s`` for a broker to answer.

        Asks in slices of a second and serves the client's log in between, so that the first
        connection error is logged when it happens (not after the whole wait).
        """
        kafka = client.confluent()
        timeout = self.settings.metadata_timeout_s
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return consumer.list_topics(timeout=max(0.05, min(1.0, left)))
            except kafka.KafkaException as exc:
                if refused_access(exc):
                    raise KafkaAuthError(
                        f"source: the Kafka brokers at {self.settings.bootstrap_servers} refused "
                        f"access (check consumer_config's security settings): {exc.args[0].str()}"
                    ) from None
                if deadline - time.monotonic() > 0:
                    consumer.poll(0)  # deliver librdkafka's queued log lines
                    continue
                last = logs.last_client_error()
                seen = f"; last client error: {last}" if last else ""
                raise KafkaError(
                    f"source: no Kafka broker at {self.settings.bootstrap_servers} answered "
                    f"within {timeout:g}s (source.metadata_timeout_ms){seen} "
                    f"[{exc.args[0].str() if exc.args else exc}]"
                ) from None

    # -- where to start and end -----------------------------------------------------------


    # -- where to start and end -----------------------------------------------------------

    def start_offsets(
        self,
        resume: Mapping[PartitionKey, int] | None = None,
        group_is_a_sink_position: bool = False,
        backfill: Collection[PartitionKey] = (),
    ) -> dict[TopicPartitionKey, int]:
        """The first offset to read per partition (rules: :mod:`cdcflow.io.kafka.offsets`).

        ``resume`` holds the sinks' resume offsets (``(topic, "partition") -> offset``).
        ``backfill`` names partitions some position-keeping sink has no position for: they
        start from ``start`` whatever the group committed (``start: committed`` excepted).
        ``group_is_a_sink_position`` says that some sink keeps no positions of its own: the
        group's committed offset is then its position, and a partition starts at the lower
        of the sinks' resume offset (or ``start``) and the group's offset (so that sink misses
        nothing written by the others just before a crash).
        """
        return self._retrying(
            lambda: offsets.start_offsets(
                self.settings,
                self._topic_partitions(),
                resume or {},
                group_is_a_sink_position,
                backfill,
                self.end_offsets,
            ),
            "reading offsets",
        )

    def end_offsets(self, timeout: float | None = None) -> dict[TopicPartitionKey, int]:
        """The end offset (one past the last record) of every partition, seen now.

        Corrected for brokers that under-report it
        (see :func:`cdcflow.io.kafka.offsets.end_offsets`).
        """
        return offsets.end_offsets(self.settings, self._topic_partitions(), timeout)

    def _topic_partitions(self) -> list[TopicPartitionKey]:
        return [(str(t), int(p)) for t, p in self.partitions()]

    def describe_positions(self, partitions: Sequence[PartitionKey]) -> list[str]:
        """The consumer group's committed offsets (the next offset to read), one line each.

        Empty when the source does not commit offsets (``commit_offsets: false``).
        """
        if not self.settings.commit_offsets:
            return []
        kafka = client.confluent()
        consumer = client.new_consumer(self.settings)
        try:
            found = consumer.committed(
                [kafka.TopicPartition(t, int(p)) for t, p in partitions],
                timeout=self.settings.metadata_timeout_s,
            )
        except kafka.KafkaException as exc:
            raise KafkaError(
                f"cannot read offsets for group {self.settings.group_id!r}: {exc}"
            ) from None
        finally:
            consumer.close()
        lines = [f"consumer group {self.settings.group_id!r}:"]
        for tp in sorted(found, key=lambda tp: (tp.topic, tp.partition)):
            has_offset = tp.error is None and tp.offset is not None and tp.offset >= 0
            committed = f"committed {tp.offset}" if has_offset else "no committed offset"
            lines.append(f"  {tp.topic}[{tp.partition}]: {committed}")
        return lines

    # -- engine-neutral bounded read --------------------------------------------------------

    def read(
        self, stream: str, partition: int | str, start_offset: int | None
    ) -> Iterator[RawBatch]:
        """Yield batches of one partition from ``start_offset`` to the end seen now.

        Without ``start_offset`` the partition starts where :meth:`start_offsets` says. This
        bounded read serves engine-neutral use and tests; the Beam reader is
        :class:`cdcflow.beam.kafka.ReadFromKafka`.
        """
        part = int(partition)
        if start_offset is None:
            start_offset = self.start_offsets().get((stream, part), 0)
        end = self.end_offsets().get((stream, part), 0)
        poller = PartitionPoller(self.settings, stream, part)
        try:
            poller.open(start_offset)
            position = start_offset
            while position < end:
                result = poller.poll()
                records = [r for r in result.records if r.position.offset < end]
                if records:
                    yield RawBatch(stream, part, records, records[-1].position.offset)
                position = result.next_offset
        finally:
            poller.close()

    def check(self) -> list[str]:
        """The brokers answer, the topics exist and the schema registry (if any) answers."""
        problems: list[str] = []
        try:
            self._partitions = None
            self.partitions()
        except CdcflowError as exc:
            problems.append(str(exc))
        if self.schema_registry is not None:
            registry = self.schema_registry.client()
            try:
                problems.extend(registry.check())
            finally:
                registry.close()
        return problems


def describe_partitions(parts: Sequence[tuple[str, int | str]]) -> str:
    """A short human-readable summary of partitions (``orders[0-2], customers[0]``)."""
    by_topic: dict[str, list[int]] = {}
    for topic, part in parts:
        by_topic.setdefault(str(topic), []).append(int(part))
    return ", ".join(
        f"{topic}[{min(ps)}-{max(ps)}]" if len(ps) > 1 else f"{topic}[{ps[0]}]"
        for topic, ps in sorted(by_topic.items())
    )
