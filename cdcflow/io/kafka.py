"""Kafka: the source for Debezium change topics (engine-neutral part).

This module holds the configuration model and everything about talking to Kafka that does not
depend on an engine: partition discovery, resolving where each partition starts, the end
offsets for ``--until-caught-up``, a per-partition poller that turns messages into
:class:`~cdcflow.schemas.model.RawBatch` values, and committing offsets to the consumer group.
The Beam reader (a splittable DoFn) lives in :mod:`cdcflow.beam.kafka`.

Where a partition starts (worked out by :func:`cdcflow.pipelines.plan.kafka_start_offsets`)
    1. every position-keeping sink has a position for it: one past the lowest of them;
    2. some position-keeping sink has none (a sink added later, or one whose positions were
       deleted to backfill it): ``start``, so that sink is backfilled while the others skip
       what they hold; the group's committed offset does not count here;
    3. no sink keeps positions: the consumer group's committed offset, else ``start``.
    In 1 and 2 the start is lowered to the group's committed offset when some sink keeps no
    positions (the group is that sink's position). ``start`` is ``earliest`` (the default),
    ``latest``, an ISO-8601 timestamp (the first offset whose record timestamp is at or after
    it), or ``committed`` (pure consumer-group behaviour: the group's committed offset, and
    without one librdkafka's ``auto.offset.reset``, ``latest`` unless set in ``consumer_config``).

Offsets and the group
    cdcflow assigns partitions itself (no group membership, no rebalancing); the group only
    stores offsets. The committed offset is the *next* offset to read (Kafka's convention), and
    it is committed only after every sink wrote the records below it. Partitions are discovered
    when the pipeline starts; partitions or topics created later are read after a restart.

End offsets
    For ``--until-caught-up`` each partition is read up to the end offset seen at start. Some
    Kafka-protocol brokers (Tansu) under-report the end in ListOffsets while the data is
    readable, so the end is the larger of ListOffsets and the high watermark returned by a
    fetch at that offset (see :meth:`KafkaSource.end_offsets`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import msgspec
from pydantic import Field, SecretStr, field_validator, model_validator

from cdcflow.core.components import BuildContext, DecodeSpec, SourceConfig
from cdcflow.core.source import PartitionKey, Source
from cdcflow.errors import (
    CdcflowError,
    ConfigError,
    TerminalError,
    TransientError,
    missing_extra,
)
from cdcflow.io import kafka_logs
from cdcflow.io.retry import RetryPolicy, call_with_retry
from cdcflow.schemas.model import Position, RawBatch, RawRecord, TableId
from cdcflow.schemas.registry import SchemaRegistryConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
#: librdkafka's own log lines (connection failures, ...), routed through Python logging.
client_log = logging.getLogger(kafka_logs.CLIENT_LOGGER)
# Repeated lines (a refused connection is retried and logged every few ms) are summarised.
kafka_logs.install(client_log, log)

#: Consumer settings cdcflow manages itself; ``consumer_config`` may not set them.
MANAGED_KEYS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
    }
)
_SECRET_MARKERS = ("password", "secret", "passphrase", "ssl.key.pem", "oauthbearer.config")

ConfigValue = str | int | float | bool
TopicPartitionKey = tuple[str, int]


def is_secret_key(name: str) -> bool:
    """True for librdkafka settings that hold secrets (passwords, private keys, tokens)."""
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def checked_client_config(value: Any, managed: frozenset[str], why: str) -> Any:
    """Validate a YAML ``*_config`` mapping of librdkafka settings (for pydantic validators).

    Refuses keys in ``managed`` (``why`` says what to use instead) and wraps the values of
    secret keys in :class:`SecretStr` so that they never print. Non-mappings pass through for
    pydantic to reject.
    """
    if not isinstance(value, dict):
        return value
    refused = sorted(k for k in value if k in managed)
    if refused:
        raise ValueError(f"{refused} are managed by cdcflow: {why}")
    return {
        k: SecretStr(str(v)) if is_secret_key(str(k)) and not isinstance(v, SecretStr) else v
        for k, v in value.items()
    }


def client_settings(config: Mapping[str, ConfigValue | SecretStr]) -> dict[str, ConfigValue]:
    """Unwrap :class:`SecretStr` values for handing to librdkafka (never log the result)."""
    return {
        key: value.get_secret_value() if isinstance(value, SecretStr) else value
        for key, value in config.items()
    }


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client config safe to log or show in errors."""
    return {k: ("**********" if is_secret_key(k) else v) for k, v in config.items()}


def parse_start(value: str) -> str | int:
    """``earliest``/``latest``/``committed``, or an ISO-8601 timestamp as epoch milliseconds.

    A timestamp must carry a zone (``Z`` or an offset): a naive time is ambiguous.
    """
    if value in ("earliest", "latest", "committed"):
        return value
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be earliest, latest, committed or an ISO-8601 timestamp with a zone "
            f"such as 2026-01-01T00:00:00Z (got {value!r})"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"the timestamp {value!r} has no zone: add Z or an offset such as +02:00"
        )
    return int(moment.timestamp() * 1000)


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise missing_extra("confluent-kafka", "kafka") from exc
    return confluent_kafka


class KafkaError(TransientError):
    """Kafka could not be reached or answered with an error (retrying may help)."""


class KafkaAuthError(TerminalError):
    """The brokers refused the credentials or the access (never retried)."""


#: librdkafka / Kafka error codes of refused credentials or access: terminal.
AUTH_ERROR_CODES = frozenset(
    {
        -169,  # _AUTHENTICATION (SASL/SSL handshake refused)
        58,  # SASL_AUTHENTICATION_FAILED
        29,  # TOPIC_AUTHORIZATION_FAILED
        30,  # GROUP_AUTHORIZATION_FAILED
        31,  # CLUSTER_AUTHORIZATION_FAILED
    }
)


def refused_access(exc: BaseException) -> bool:
    """True when ``exc`` (a ``KafkaException``) is the brokers refusing credentials or access."""
    error = exc.args[0] if exc.args else None
    code = getattr(error, "code", None)
    return callable(code) and code() in AUTH_ERROR_CODES


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a worker needs to read (picklable; secrets stay wrapped)."""

    bootstrap_servers: str
    group_id: str
    topics: tuple[str, ...] = ()
    topic_pattern: str | None = None
    start: str | int = "earliest"
    client_config: dict[str, Any] = {}
    max_batch_size: int = 10_000
    poll_timeout_s: float = 0.5
    commit_offsets: bool = True
    metadata_timeout_s: float = 15.0
    #: Seconds a streaming run's restart rides through an unreachable broker (see KafkaSource).
    streaming_retry_s: float = 300.0

    def consumer_config(self, **extra: ConfigValue) -> dict[str, ConfigValue]:
        """The librdkafka consumer settings (secrets unwrapped: hand to the client only)."""
        base: dict[str, ConfigValue] = {
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "queued.min.messages": 100_000,
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 10,
        }
        base.update(client_settings(self.client_config))
        base.update(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        base.update(extra)
        return base


def new_consumer(settings: KafkaSettings, **extra: ConfigValue) -> Any:
    """Create a confluent-kafka ``Consumer`` (not subscribed; partitions are assigned)."""
    kafka = _kafka()
    config = settings.consumer_config(**extra)
    log.debug("creating a Kafka consumer with %s", redacted(config))
    try:
        return kafka.Consumer(config, logger=client_log)
    except kafka.KafkaException as exc:
        raise ConfigError(f"source: invalid Kafka consumer settings: {exc}") from None


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
        kafka = _kafka()
        if self._consumer is None:
            self._consumer = new_consumer(self.settings, **{"enable.partition.eof": True})
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
        kafka = _kafka()
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

    def commit(self, next_offset: int) -> bool:
        """Commit ``next_offset`` (the next offset to read) to the group; False on failure.

        An offset equal to the last one this poller committed is not sent again.
        """
        if self._consumer is None or not self.settings.commit_offsets:
            return False
        if next_offset == self.last_committed:
            return True
        kafka = _kafka()
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


class KafkaSource(Source):
    """Debezium change topics on Kafka (see the module docstring for the start rules)."""

    stream_is_topic = True

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
        consumer = new_consumer(self.settings)
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
        kafka = _kafka()
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
                client = kafka_logs.last_client_error()
                seen = f"; last client error: {client}" if client else ""
                raise KafkaError(
                    f"source: no Kafka broker at {self.settings.bootstrap_servers} answered "
                    f"within {timeout:g}s (source.metadata_timeout_ms){seen} "
                    f"[{exc.args[0].str() if exc.args else exc}]"
                ) from None

    # -- where to start and end -----------------------------------------------------------

    def start_offsets(
        self,
        resume: Mapping[PartitionKey, int] | None = None,
        group_is_a_sink_position: bool = False,
        backfill: Collection[PartitionKey] = (),
    ) -> dict[TopicPartitionKey, int]:
        """The first offset to read per partition (see the module docstring).

        ``resume`` holds the sinks' resume offsets (``(topic, "partition") -> offset``).
        ``backfill`` names partitions some position-keeping sink has no position for: they
        start from ``start`` whatever the group committed (``start: committed`` excepted).
        ``group_is_a_sink_position`` says that some sink keeps no positions of its own: the
        group's committed offset is then its position, and a partition starts at the lower
        of the sinks' resume offset (or ``start``) and the group's offset (so that sink misses
        nothing written by the others just before a crash).
        """
        return self._retrying(
            lambda: self._start_offsets(resume, group_is_a_sink_position, backfill),
            "reading offsets",
        )

    def _start_offsets(
        self,
        resume: Mapping[PartitionKey, int] | None,
        group_is_a_sink_position: bool,
        backfill: Collection[PartitionKey],
    ) -> dict[TopicPartitionKey, int]:
        kafka = _kafka()
        resume = resume or {}
        from_start = {(str(t), int(p)) for t, p in backfill}
        parts = [(str(t), int(p)) for t, p in self.partitions()]
        result: dict[TopicPartitionKey, int] = {}
        pending = []
        for topic, part in parts:
            sink_offset = resume.get((topic, str(part)))
            if sink_offset is not None and (topic, part) not in from_start:
                result[(topic, part)] = sink_offset
            if sink_offset is None or group_is_a_sink_position or (topic, part) in from_start:
                pending.append((topic, part))
        if not pending:
            return result
        consumer = new_consumer(self.settings)
        try:
            timeout = self.settings.metadata_timeout_s
            committed = consumer.committed(
                [kafka.TopicPartition(t, p) for t, p in pending], timeout=timeout
            )
            unknown = []
            group: dict[TopicPartitionKey, int] = {}
            start = self.settings.start
            for tp in committed:
                key = (tp.topic, tp.partition)
                has_offset = tp.error is None and tp.offset is not None and tp.offset >= 0
                if has_offset:
                    group[key] = tp.offset
                if key in result:  # a sink position exists: the group can only lower it
                    if has_offset:
                        result[key] = min(result[key], tp.offset)
                elif has_offset and (key not in from_start or start == "committed"):
                    result[key] = tp.offset
                else:
                    unknown.append(key)
            if start == "committed":
                reset = str(client_settings(self.settings.client_config).get(
                    "auto.offset.reset", "latest"
                ))
                start = "earliest" if reset in ("earliest", "smallest", "beginning") else "latest"
            # "The end" is the corrected end of end_offsets(), not ListOffsets' high
            # watermark: a broker that under-reports it (Tansu) would otherwise make a
            # `latest` start re-read records that were there before the run.
            ends: dict[TopicPartitionKey, int] = {}
            if isinstance(start, int):
                found = consumer.offsets_for_times(
                    [kafka.TopicPartition(t, p, start) for t, p in unknown], timeout=timeout
                )
                for tp in found:
                    if tp.offset is not None and tp.offset >= 0:
                        result[(tp.topic, tp.partition)] = tp.offset
                    else:  # no record at or after the timestamp: start at the end
                        ends = ends or self.end_offsets()
                        result[(tp.topic, tp.partition)] = ends[(tp.topic, tp.partition)]
            else:
                for topic, part in unknown:
                    if start == "earliest":
                        low, _ = consumer.get_watermark_offsets(
                            kafka.TopicPartition(topic, part), timeout=timeout
                        )
                        result[(topic, part)] = low
                    else:
                        ends = ends or self.end_offsets()
                        result[(topic, part)] = ends[(topic, part)]
            if group_is_a_sink_position:  # a backfill starts no later than the group
                for key in unknown:
                    if key in group:
                        result[key] = min(result[key], group[key])
        except kafka.KafkaException as exc:
            kind = KafkaAuthError if refused_access(exc) else KafkaError
            raise kind(
                f"cannot read offsets for group {self.settings.group_id!r}: {exc}"
            ) from None
        finally:
            consumer.close()
        return result

    def end_offsets(self, timeout: float | None = None) -> dict[TopicPartitionKey, int]:
        """The end offset (one past the last record) of every partition, seen now.

        The larger of ListOffsets' high watermark and the high watermark a fetch at that
        offset returns (brokers such as Tansu under-report the first while data is readable).
        """
        kafka = _kafka()
        eof_code = kafka.KafkaError._PARTITION_EOF
        timeout = self.settings.metadata_timeout_s if timeout is None else timeout
        parts = [(str(t), int(p)) for t, p in self.partitions()]
        consumer = new_consumer(self.settings, **{"enable.partition.eof": True})
        try:
            ends: dict[TopicPartitionKey, int] = {}
            for topic, part in parts:
                low, high = consumer.get_watermark_offsets(
                    kafka.TopicPartition(topic, part), timeout=timeout
                )
                ends[(topic, part)] = max(low, high)
            consumer.assign([kafka.TopicPartition(t, p, ends[(t, p)]) for t, p in parts])
            waiting = set(parts)
            deadline = time.monotonic() + timeout
            while waiting and time.monotonic() < deadline:
                # As many as the partitions still waiting: returns as soon as their ends are
                # seen (asking for more would always wait the whole timeout).
                for message in consumer.consume(len(waiting), 0.2):
                    key = (message.topic(), message.partition())
                    error = message.error()
                    if error is not None and error.code() != eof_code:
                        continue
                    offset = message.offset()
                    if offset is not None:
                        ends[key] = max(ends[key], offset + (0 if error is not None else 1))
                    if error is not None:
                        waiting.discard(key)
            for topic, part in parts:
                _, cached = consumer.get_watermark_offsets(
                    kafka.TopicPartition(topic, part), cached=True
                )
                if cached is not None and cached > ends[(topic, part)]:
                    ends[(topic, part)] = cached
            if waiting:
                log.warning(
                    "end offsets of %s not confirmed by a fetch within %.0fs; using ListOffsets",
                    sorted(waiting), timeout,
                )
            return ends
        except kafka.KafkaException as exc:
            raise KafkaError(f"cannot read end offsets: {exc}") from None
        finally:
            consumer.close()

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
            client = self.schema_registry.client()
            try:
                problems.extend(client.check())
            finally:
                client.close()
        return problems


class KafkaSourceConfig(SourceConfig):
    """``type: kafka`` — Debezium change topics (see docs/kafka.md for every option)."""

    type: Literal["kafka"]
    bootstrap_servers: str = Field(min_length=1)
    topics: list[str] = []
    topic_pattern: str | None = Field(default=None, min_length=1)
    group_id: str | None = Field(default=None, min_length=1)
    start: str = "earliest"
    format: Literal["debezium-json", "debezium-avro"] = "debezium-json"
    schema_registry: SchemaRegistryConfig | None = None
    consumer_config: dict[str, ConfigValue | SecretStr] = Field(default={}, repr=False)
    max_batch_size: int = Field(default=10_000, ge=1, le=1_000_000)
    poll_timeout_ms: int = Field(default=500, ge=10, le=60_000)
    commit_offsets: bool = True
    metadata_timeout_ms: int = Field(default=15_000, ge=100, le=600_000)
    streaming_retry_s: float = Field(default=300.0, ge=0, le=7 * 86400)
    key_columns: dict[str, list[str]] = {}
    tombstones: Literal["marker", "delete"] = "marker"

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        parse_start(value)
        return value

    @field_validator("topic_pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("consumer_config", mode="before")
    @classmethod
    def _wrap_secrets(cls, value: Any) -> Any:
        return checked_client_config(
            value,
            MANAGED_KEYS,
            "use bootstrap_servers / group_id, offsets are committed after the sinks write",
        )

    @model_validator(mode="after")
    def _check_shape(self) -> KafkaSourceConfig:
        if bool(self.topics) == (self.topic_pattern is not None):
            raise ValueError("give exactly one of 'topics' (a list) or 'topic_pattern' (a regex)")
        if self.format == "debezium-avro" and self.schema_registry is None:
            raise ValueError("format debezium-avro needs a 'schema_registry' section (url, ...)")
        return self

    def settings(self, context: BuildContext) -> KafkaSettings:
        """The worker settings for this source."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id or f"cdcflow.{context.pipeline}",
            topics=tuple(self.topics),
            topic_pattern=self.topic_pattern,
            start=parse_start(self.start),
            client_config=dict(self.consumer_config),
            max_batch_size=self.max_batch_size,
            poll_timeout_s=self.poll_timeout_ms / 1000,
            commit_offsets=self.commit_offsets,
            metadata_timeout_s=self.metadata_timeout_ms / 1000,
            streaming_retry_s=self.streaming_retry_s,
        )

    def build(self, context: BuildContext) -> KafkaSource:
        """Build the source (nothing connects until partitions are listed)."""
        return KafkaSource(self.settings(context), schema_registry=self.schema_registry)

    def decoding(self) -> DecodeSpec:
        """How this source's records are decoded (a position's stream is the topic)."""
        return DecodeSpec(
            format=self.format,
            key_columns=self.key_columns,
            tombstones=self.tombstones,
            stream_is_topic=True,
            schema_registry=self.schema_registry,
        )


def describe_partitions(parts: Sequence[tuple[str, int | str]]) -> str:
    """A short human-readable summary of partitions (``orders[0-2], customers[0]``)."""
    by_topic: dict[str, list[int]] = {}
    for topic, part in parts:
        by_topic.setdefault(str(topic), []).append(int(part))
    return ", ".join(
        f"{topic}[{min(ps)}-{max(ps)}]" if len(ps) > 1 else f"{topic}[{ps[0]}]"
        for topic, ps in sorted(by_topic.items())
    )
