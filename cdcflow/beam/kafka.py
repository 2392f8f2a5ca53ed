"""Reading Kafka on Beam: a splittable DoFn over each partition's offset range.

Where each partition starts and stops
    :class:`ReadFromKafka` works it out itself when the pipeline is built: each partition starts
    where the resume rule puts it over the given writers' stored positions
    (:func:`cdcflow.pipelines.plan.kafka_start_offsets`, the one implementation both engines
    use), and stops at the end offset seen then (``until_caught_up``) or never (streaming).

Element and restriction
    One input element per partition: ``(topic, partition, start, stop)``; the restriction is
    the offset range ``[start, stop)``, with ``stop`` the end offset seen at start for
    ``--until-caught-up`` or "unbounded" when streaming. One output element per poll of a
    partition: a :class:`~cdcflow.schemas.model.RawBatch` (never one element per message).
    The tracker accepts only checkpoints (``defer_remainder``), never a split of a partition's
    range into parallel pieces, so a partition's batches reach the sinks in offset order. A
    bounded range read to its end unassigns its partition
    (:meth:`~cdcflow.io.kafka.poller.PartitionPoller.stop_fetching`): the consumer stays open
    for the commit but no longer fetches, which idle consumers otherwise do until teardown.

Commit order
    Offsets are committed to the consumer group by bundle finalization: the callback runs only
    after the runner has finished the bundle. The pipeline keeps read, decode, transforms and
    every sink in one fused stage (:mod:`cdcflow.beam.runner`), so a finished bundle
    means every sink has written its batches. Each ``process`` call reads for at most
    ``bundle_seconds`` (or until the partition is idle) and then checkpoints, which ends the
    bundle and lets the commit happen.

Stopping
    :func:`request_stop` (called by the runner's SIGINT/SIGTERM handler) makes every reader
    finish the batch in hand and close its restriction, so the pipeline drains and ends
    normally (bundles are finalized, offsets committed). This works for runners that execute
    the DoFns in the driver process (DirectRunner, PortableRunner with LOOPBACK); on a remote
    runner, drain the job with the runner's own tools.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider

from cdcflow.beam import coders
from cdcflow.beam.transforms import NAMESPACE
from cdcflow.core.writer import Writer
from cdcflow.io.kafka.poller import PartitionPoller
from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.io.kafka.source import KafkaSource, describe_partitions
from cdcflow.pipelines.plan import kafka_start_offsets
from cdcflow.schemas.model import RawBatch

log = logging.getLogger(__name__)

#: The restriction end of a streaming read.
UNBOUNDED = sys.maxsize

PartitionSpec = tuple[str, int, int, int]

_STOP = threading.Event()
_EPOCH_OVER = threading.Event()
# Bundles the readers started in this epoch, and the count that ends the epoch (0: no limit).
_BUNDLES = [0, 0]
# The epoch's length in seconds (0: unbounded) and its deadline, set at its first bundle.
_EPOCH_TIME = [0.0, 0.0]


def request_stop() -> None:
    """Ask every Kafka reader in this process to finish its batch and end its range."""
    _STOP.set()


def reset_stop() -> None:
    """Clear a previous stop request (before starting a new pipeline in this process)."""
    _STOP.clear()
    _EPOCH_OVER.clear()


def stop_requested() -> bool:
    """True once :func:`request_stop` was called."""
    return _STOP.is_set()


def reset_epoch(max_bundles: int = 0, seconds: float = 0.0) -> None:
    """Start a new epoch, ending after ``seconds`` or ``max_bundles`` reader bundles (0: never).

    The time counts from the readers' first bundle, not from the start of the runner: a slow
    start (a loaded machine) cannot use up an epoch before anything was read.
    """
    _EPOCH_OVER.clear()
    _BUNDLES[0], _BUNDLES[1] = 0, max(0, max_bundles)
    _EPOCH_TIME[0], _EPOCH_TIME[1] = max(0.0, seconds), 0.0


def epoch_bundles() -> int:
    """Bundles the Kafka readers of this process started since the epoch began."""
    return _BUNDLES[0]


def _bundle_started() -> None:
    _BUNDLES[0] += 1
    if _BUNDLES[0] == 1 and _EPOCH_TIME[0]:
        _EPOCH_TIME[1] = time.monotonic() + _EPOCH_TIME[0]
    if _BUNDLES[1] and _BUNDLES[0] >= _BUNDLES[1]:
        _EPOCH_OVER.set()


def _should_stop() -> bool:
    if _STOP.is_set() or _EPOCH_OVER.is_set():
        return True
    if _EPOCH_TIME[1] and time.monotonic() >= _EPOCH_TIME[1]:
        _EPOCH_OVER.set()
        return True
    return False


class _CheckpointOnlyTracker(OffsetRestrictionTracker):  # type: ignore[misc]
    """An offset tracker that allows checkpoints but refuses to split a range in parallel."""

    def try_split(self, fraction_of_remainder: float) -> Any:
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)


class _PartitionRanges(RestrictionProvider):  # type: ignore[misc]
    """Restrictions for partition specs: one whole offset range each, never split up front."""

    def initial_restriction(self, element: PartitionSpec) -> OffsetRange:
        _, _, start, stop = element
        return OffsetRange(start, max(start, stop))

    def create_tracker(self, restriction: OffsetRange) -> _CheckpointOnlyTracker:
        return _CheckpointOnlyTracker(restriction)

    def split(self, element: PartitionSpec, restriction: OffsetRange) -> Iterator[OffsetRange]:
        yield restriction

    def restriction_size(self, element: PartitionSpec, restriction: OffsetRange) -> int:
        if restriction.stop == UNBOUNDED:
            return 1 << 20
        return max(0, restriction.stop - restriction.start)


_TRACKER = beam.DoFn.RestrictionParam(_PartitionRanges())


class _ReadKafkaPartitionFn(beam.DoFn):  # type: ignore[misc]
    """Reads one partition's offset range, one ``RawBatch`` per poll; commits on finalization."""

    def __init__(
        self, settings: KafkaSettings, bundle_seconds: float, specs: Sequence[PartitionSpec] = ()
    ) -> None:
        self.settings = settings
        self.bundle_seconds = bundle_seconds
        # Idle partitions are visited in turn, each waiting this long for a first record, so
        # one round over all of them takes about ``poll_timeout`` (the idle latency bound).
        self.idle_wait = max(0.01, settings.poll_timeout_s / max(1, len(specs)))
        self.records = Metrics.counter(NAMESPACE, "records_read")
        self._pollers: dict[tuple[str, int], PartitionPoller] = {}
        # Bounded, non-empty ranges: the one after each (in spec order) and where it starts.
        # Its consumer is opened when the range before it starts being read, so its first
        # fetch is under way by the time it is read (see ``_open_next``).
        bounded = [s for s in specs if s[3] != UNBOUNDED and s[2] < s[3]]
        self._next_of: dict[tuple[str, int], tuple[str, int, int]] = {
            (a[0], a[1]): (b[0], b[1], b[2]) for a, b in itertools.pairwise(bounded)
        }

    def setup(self) -> None:
        self._pollers = {}

    def start_bundle(self) -> None:
        _bundle_started()

    def _poller(self, topic: str, partition: int) -> PartitionPoller:
        poller = self._pollers.get((topic, partition))
        if poller is None:
            poller = PartitionPoller(self.settings, topic, partition)
            self._pollers[(topic, partition)] = poller
        return poller

    def _open_next(self, topic: str, partition: int) -> None:
        """Open the consumer of the range after ``(topic, partition)`` if none was opened yet.

        A new consumer needs a few milliseconds to connect and fetch; with many small
        partitions read one after the other that wait added up (measured: 240 partitions of
        ~1,250 records, about 1.3 s of a 10 s run). A range resumed from a checkpoint never
        uses this: its partition already has a poller, and :meth:`PartitionPoller.open`
        reassigns whenever the requested offset differs.
        """
        following = self._next_of.get((topic, partition))
        if following is not None and (following[0], following[1]) not in self._pollers:
            self._poller(following[0], following[1]).open(following[2])

    def process(
        self,
        element: PartitionSpec,
        finalizer: Any = beam.DoFn.BundleFinalizerParam,
        tracker: Any = _TRACKER,
    ) -> Iterator[RawBatch]:
        # Beam fills special parameters placed after the restriction tracker positionally,
        # so the finalizer must come before the tracker.
        topic, partition, _, _ = element
        restriction = tracker.current_restriction()
        start, stop = restriction.start, restriction.stop
        poller = self._poller(topic, partition)
        poller.open(start)
        self._open_next(topic, partition)
        committed: list[int] = []

        def commit() -> None:
            if committed:
                poller.commit(committed[-1] + 1)
            elif poller.last_committed is None and start > 0:
                # Everything below ``start`` is written (the start came from the sinks'
                # positions, the group or the start mode): bring the group up to date once.
                poller.commit(start)

        finalizer.register(commit)
        if start >= stop:
            poller.stop_fetching()  # nothing to read; the consumer stays for the commit
            return
        claimed = start - 1
        deadline = time.monotonic() + self.bundle_seconds
        while True:
            if _should_stop():
                if claimed < stop - 1:
                    tracker.try_claim(stop - 1)  # close the range: the run is ending
                return
            result = poller.poll(timeout=self.idle_wait)
            records = result.records
            if records and records[-1].position.offset >= stop:
                records = [r for r in records if r.position.offset < stop]
            if records:
                last = records[-1].position.offset
                if not tracker.try_claim(last):
                    poller.close()  # the runner checkpointed: refetch from the claimed end
                    return
                claimed = last
                committed.append(last)
                self.records.inc(len(records))
                yield RawBatch(topic, partition, records, last)
            if result.next_offset >= stop:
                if claimed < stop - 1:
                    tracker.try_claim(stop - 1)  # offsets up to the end are gaps (markers)
                poller.stop_fetching()  # the range is read; the consumer stays for the commit
                return
            idle = result.at_end and not records
            if time.monotonic() >= deadline or (idle and stop == UNBOUNDED):
                tracker.defer_remainder()
                return

    def teardown(self) -> None:
        for poller in self._pollers.values():
            try:
                poller.close()
            except Exception as exc:  # noqa: BLE001 - closing must not mask the run's outcome
                log.warning("closing a Kafka consumer failed: %s", exc)
        self._pollers = {}


class ReadFromKafka(beam.PTransform):  # type: ignore[misc]
    """Read a Kafka source as ``RawBatch`` elements, resuming where ``writers`` left off.

    ``source``: a :class:`~cdcflow.io.kafka.source.KafkaSource` (``KafkaSourceConfig.build``,
    or ``KafkaSource(KafkaSettings(...))``). ``writers``: the sinks the pipeline writes the
    batches to; when the pipeline is built, each partition's start is worked out from their
    stored positions by :func:`cdcflow.pipelines.plan.kafka_start_offsets` (docs/kafka.md,
    "Where each partition starts"; with no writers: the group's committed offset, else
    ``start:``). The consumer group's offset counts as the position of writers that keep
    none when the source commits offsets (``commit_offsets``, the default).

    ``until_caught_up``: read each partition up to the end offset seen when the pipeline is
    built, then end; otherwise stream until :func:`request_stop` (the runner's SIGINT/SIGTERM
    handler). ``bundle_seconds`` bounds how long one bundle reads a partition (the commit
    interval). Offsets are committed to the group after the bundle that carried them finished.
    """

    def __init__(
        self,
        source: KafkaSource,
        writers: Sequence[Writer] = (),
        until_caught_up: bool = False,
        bundle_seconds: float = 2.0,
    ) -> None:
        super().__init__()
        if bundle_seconds <= 0:
            raise ValueError(f"bundle_seconds must be positive (got {bundle_seconds!r})")
        self.source = source
        self.writers = list(writers)
        self.until_caught_up = until_caught_up
        self.bundle_seconds = bundle_seconds

    def partition_specs(self) -> list[PartitionSpec]:
        """``(topic, partition, start, stop)`` per partition, worked out now (see the class).

        ``stop`` is the end seen now with ``until_caught_up`` (never below ``start``), else
        :data:`UNBOUNDED`. Asks the brokers and opens and closes every position-keeping writer.
        """
        source = self.source
        starts = kafka_start_offsets(
            source, self.writers, group_holds_positions=source.settings.commit_offsets
        )
        ends = source.end_offsets() if self.until_caught_up else {}
        specs: list[PartitionSpec] = []
        for (topic, part), first in sorted(starts.items()):
            stop = max(first, ends.get((topic, part), first)) if self.until_caught_up else UNBOUNDED
            specs.append((topic, part, first, stop))
        log.info(
            "reading %s %s",
            describe_partitions(source.partitions()),
            "until caught up" if self.until_caught_up else "until stopped (SIGINT/SIGTERM)",
        )
        for topic, part, first, stop in specs:
            log.debug("partition %s[%d]: offsets %d..%s", topic, part, first,
                      "end" if stop == UNBOUNDED else stop)
        return specs

    def expand(self, pbegin: Any) -> Any:
        """Work out the partitions' ranges, then read each with the splittable DoFn."""
        specs = self.partition_specs()
        settings: KafkaSettings = self.source.settings
        read = _ReadKafkaPartitionFn(settings, self.bundle_seconds, specs)
        partitions = pbegin | "Partitions" >> beam.Create(specs)
        coders.register()
        return partitions | "ReadPartition" >> beam.ParDo(read).with_output_types(RawBatch)
