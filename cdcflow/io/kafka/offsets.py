"""Where each Kafka partition starts and ends.

Start (:func:`start_offsets`; the resume rule that feeds it is
:func:`cdcflow.pipelines.plan.resume_points`, applied by
:func:`cdcflow.pipelines.plan.kafka_start_offsets`)
    1. every position-keeping sink has a position for a partition: one past the lowest of them
       (given in ``resume``);
    2. some position-keeping sink has none (``backfill``: a sink added later, or one whose
       positions were deleted to backfill it): ``start``, so that sink is backfilled while the
       others skip what they hold; the group's committed offset does not count here;
    3. no sink keeps positions: the consumer group's committed offset, else ``start``.

    In 1 and 2 the start is lowered to the group's committed offset when some sink keeps no
    positions (``group_is_a_sink_position``: the group is that sink's position). ``start`` is
    ``earliest``, ``latest``, epoch milliseconds (the first offset whose record timestamp is at
    or after it), or ``committed`` (the group's committed offset, and without one librdkafka's
    ``auto.offset.reset``, ``latest`` unless set in ``consumer_config``).

End (:func:`end_offsets`)
    One past the last record of each partition, seen now. Some Kafka-protocol brokers (Tansu)
    under-report the end in ListOffsets while the data is readable, so the end is the larger of
    ListOffsets and the high watermark a fetch at that offset returns.

Contract: both take the partitions to resolve as ``(topic, partition)`` pairs, create and close
their own consumer, and raise :class:`~cdcflow.io.kafka.client.KafkaError` (or
:class:`~cdcflow.io.kafka.client.KafkaAuthError` for refused access) when the brokers fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from cdcflow.core.source import PartitionKey
from cdcflow.io.kafka import client, logs
from cdcflow.io.kafka.client import KafkaAuthError, KafkaError, refused_access
from cdcflow.io.kafka.settings import KafkaSettings, TopicPartitionKey

log = logging.getLogger(__name__)
logs.install(log)


def start_offsets(
    settings: KafkaSettings,
    partitions: Sequence[TopicPartitionKey],
    resume: Mapping[PartitionKey, int],
    group_is_a_sink_position: bool,
    backfill: Collection[PartitionKey],
    ends: Callable[[], Mapping[TopicPartitionKey, int]],
) -> dict[TopicPartitionKey, int]:
    """The first offset to read of each of ``partitions`` (see the module docstring).

    ``resume`` holds the sinks' resume offsets (``(topic, "partition") -> offset``);
    ``ends`` returns the end offsets, called only when a partition starts at its end.
    """
    kafka = client.confluent()
    from_start = {(str(t), int(p)) for t, p in backfill}
    result: dict[TopicPartitionKey, int] = {}
    pending = []
    for topic, part in partitions:
        sink_offset = resume.get((topic, str(part)))
        if sink_offset is not None and (topic, part) not in from_start:
            result[(topic, part)] = sink_offset
        if sink_offset is None or group_is_a_sink_position or (topic, part) in from_start:
            pending.append((topic, part))
    if not pending:
        return result
    consumer = client.new_consumer(settings)
    try:
        timeout = settings.metadata_timeout_s
        committed = consumer.committed(
            [kafka.TopicPartition(t, p) for t, p in pending], timeout=timeout
        )
        unknown = []
        group: dict[TopicPartitionKey, int] = {}
        start = settings.start
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
            start = settings.auto_offset_reset()
        # "The end" is the corrected end of end_offsets(), not ListOffsets' high watermark: a
        # broker that under-reports it (Tansu) would otherwise make a `latest` start re-read
        # records that were there before the run.
        seen_ends: Mapping[TopicPartitionKey, int] = {}
        if isinstance(start, int):
            found = consumer.offsets_for_times(
                [kafka.TopicPartition(t, p, start) for t, p in unknown], timeout=timeout
            )
            for tp in found:
                if tp.offset is not None and tp.offset >= 0:
                    result[(tp.topic, tp.partition)] = tp.offset
                else:  # no record at or after the timestamp: start at the end
                    seen_ends = seen_ends or ends()
                    result[(tp.topic, tp.partition)] = seen_ends[(tp.topic, tp.partition)]
        else:
            for topic, part in unknown:
                if start == "earliest":
                    low, _ = consumer.get_watermark_offsets(
                        kafka.TopicPartition(topic, part), timeout=timeout
                    )
                    result[(topic, part)] = low
                else:
                    seen_ends = seen_ends or ends()
                    result[(topic, part)] = seen_ends[(topic, part)]
        if group_is_a_sink_position:  # a backfill starts no later than the group
            for key in unknown:
                if key in group:
                    result[key] = min(result[key], group[key])
    except kafka.KafkaException as exc:
        kind = KafkaAuthError if refused_access(exc) else KafkaError
        raise kind(f"cannot read offsets for group {settings.group_id!r}: {exc}") from None
    finally:
        consumer.close()
    return result


def end_offsets(
    settings: KafkaSettings, partitions: Sequence[TopicPartitionKey], timeout: float | None = None
) -> dict[TopicPartitionKey, int]:
    """The end offset (one past the last record) of each of ``partitions``, seen now.

    The larger of ListOffsets' high watermark and the high watermark a fetch at that offset
    returns (see the module docstring); ``timeout`` defaults to ``metadata_timeout_s``.
    """
    kafka = client.confluent()
    eof_code = kafka.KafkaError._PARTITION_EOF
    timeout = settings.metadata_timeout_s if timeout is None else timeout
    parts = list(partitions)
    consumer = client.new_consumer(settings, **{"enable.partition.eof": True})
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
            # As many as the partitions still waiting: returns as soon as their ends are seen
            # (asking for more would always wait the whole timeout).
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
