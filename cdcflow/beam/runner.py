"""Build and run a pipeline config on Apache Beam.

Shape (ARCHITECTURE §3)::

    Read -> Execute (decode, transforms, dead letters, every sink: cdcflow.core.executor)

Read, decode, transforms, dead-letter storage and writing stay in one fused stage (no shuffle),
so the batches of a partition reach every sink in offset order: a sink's stored position then
always means "everything up to here is written". For Kafka this is also what makes the commit
order hold: offsets are committed by bundle finalization, after the fused stage (every sink)
finished the bundle (see :mod:`cdcflow.beam.kafka`).

Modes (unbounded sources, ``Source.bounded`` false: Kafka): with ``until_caught_up`` each
partition is read to the end offset seen at start, then the run ends. Otherwise the run
streams until SIGINT or SIGTERM: the first signal makes the readers finish the batch in hand,
the bundles finish (sinks write, offsets are committed) and :func:`run` returns normally; a
second signal aborts at once. Bounded sources (files) always stop at their end.

``--runner=DirectRunner`` (the default) runs on Beam's FnApiRunner directly: the switching
DirectRunner would first try to download the Prism runner, and the SDF reader's checkpointing
and bundle finalization are verified on the FnApiRunner.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from cdcflow.beam import coders
from cdcflow.beam.fnapi import STATE_SAMPLING_PERIOD_MS as STATE_SAMPLING_PERIOD_MS
from cdcflow.beam.fnapi import eager_metric_merges
from cdcflow.beam.fnapi import short_state_sampling as _short_state_sampling
from cdcflow.beam.transforms import NAMESPACE, Execute, ReadFromSource
from cdcflow.core.executor import BatchExecutor
from cdcflow.pipelines.config import PipelineConfig
from cdcflow.pipelines.inputs import PlannedSource
from cdcflow.pipelines.plan import Plan, plan_pipeline, resume_offsets
from cdcflow.schemas.model import RawBatch

log = logging.getLogger(__name__)

#: Seconds one streaming run lasts before it is restarted in a fresh runner (see run()).
STREAMING_EPOCH_S = 600.0


@dataclass
class RunReport:
    """What a finished run did, for the CLI summary."""

    records_read: int = 0
    dead_letters: int = 0
    written: dict[str, int] = field(default_factory=dict)
    sink_lines: list[str] = field(default_factory=list)
    dead_letter_lines: list[str] = field(default_factory=list)
    stopped_by_signal: bool = False
    streaming: bool = False


def _read(
    pipeline: beam.Pipeline, planned: PlannedSource, plan: Plan, until_caught_up: bool, label: str
) -> Any:
    """One source's read transform; each partition starts where the sinks left off.

    A bounded source is read by :class:`ReadFromSource`; an unbounded one (Kafka, the only
    unbounded source so far) by :class:`cdcflow.beam.kafka.ReadFromKafka`, which applies the
    resume rule itself.
    """
    source = planned.source
    if source.bounded:
        start = resume_offsets(plan.writers, source.partitions())
        return pipeline | label >> ReadFromSource(source, start)
    from cdcflow.beam.kafka import ReadFromKafka

    # The Beam reader of the unbounded sources there are: Kafka's (a KafkaSource).
    read = ReadFromKafka(source, plan.writers, until_caught_up)  # type: ignore[arg-type]
    return pipeline | label >> read


def build(pipeline: beam.Pipeline, plan: Plan, until_caught_up: bool = False) -> None:
    """Add the plan's transforms to ``pipeline``: ``Read -> Execute``.

    ``Execute`` runs the engine-neutral executor (decode, steps, dead letters, every writer;
    :mod:`cdcflow.core.executor`) on the bundle's thread, one batch after the other. (Decoding
    one batch ahead on a second thread, ``Execute(ahead=True)``, was measured slower here: on
    the hot-path benchmark it cost 21 % more CPU and 6 % more wall time, see
    docs/benchmarks.md "Decode ahead".) ``until_caught_up`` bounds an unbounded source (Kafka) at
    the end offsets seen now; bounded sources (files) always stop at their end.

    With several sources (``sources:``) each is read by its own transform (``Read:<name>``)
    and the batches are flattened into the one executor, whose decode step routes each batch
    to the decode step of the source that read it (:class:`cdcflow.pipelines.inputs.RoutedDecode`).
    Batches of one partition still reach the executor in order: only batches of different
    sources interleave.
    """
    coders.register()
    if len(plan.inputs) == 1:
        raw = _read(pipeline, plan.inputs[0], plan, until_caught_up, "Read")
        decode = plan.decode
    else:
        reads = [
            _read(pipeline, planned, plan, until_caught_up, f"Read:{planned.name}")
            for planned in plan.inputs
        ]
        for read in reads:
            read.element_type = RawBatch
        raw = tuple(reads) | "Sources" >> beam.Flatten()
        decode = plan.routed_decode([i.source.partitions() for i in plan.inputs])
    # Declared element types select the batch coders: Beam samples element sizes on every
    # PCollection, and for untyped elements that means pickling whole batches.
    raw.element_type = RawBatch
    executor = BatchExecutor(decode, plan.steps, plan.writers, plan.dead_letters)
    _ = raw | "Execute" >> Execute(executor, ahead=False)


@contextmanager
def _stop_on_signals(enabled: bool) -> Iterator[None]:
    """While running, the first SIGINT/SIGTERM asks the readers to stop; a second aborts."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    from cdcflow.beam.kafka import request_stop, stop_requested

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop_requested():
            # Abort at once, like kill -9: nothing after the last finished bundle was
            # committed, so a rerun loses nothing. (Raising here could leave Beam's threads
            # waiting on each other.)
            log.warning("%s again: aborting without finishing the batch in hand", name)
            from cdcflow.logs import error_line

            sys.stderr.write(error_line(f"aborted by a second {name} before the run finished"))
            sys.stderr.write("\n")
            sys.stderr.flush()
            os._exit(1)
        log.warning("%s: finishing the batch in hand, committing, then stopping", name)
        request_stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: The interpreter's thread switch interval while a pipeline runs (seconds; Python's is 0.005).
SWITCH_INTERVAL_S = 0.001


@contextmanager
def _gc_tuned() -> Iterator[None]:
    """Interpreter settings for running batches; all restored afterwards.

    Less garbage-collector work (about 7% less CPU, measured): the pipeline's long-lived
    objects are frozen out of the collector's view and the youngest generation is collected
    less often. A shorter thread switch interval: decoding runs on its own thread (see
    ``ApplyStep(ahead=True)``), and a sink whose server has answered should get the GIL back
    within 1 ms rather than 5 (measured: PostgreSQL upsert benchmark 4.6 s -> 4.1 s).
    """
    threshold = gc.get_threshold()
    switch = sys.getswitchinterval()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])
    sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _pipeline(args: list[str]) -> beam.Pipeline:
    options = PipelineOptions(args)
    runner_name = options.get_all_options().get("runner")
    if runner_name in (None, "DirectRunner", "direct", "FnApiRunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


def _epoch_bundles() -> int:
    """Bundles after which a streaming epoch ends early (0: none; see :func:`run`)."""
    try:
        return max(0, int(os.environ.get("CDCFLOW_STREAMING_EPOCH_BUNDLES", "0")))
    except ValueError:
        return 0


def _epoch_seconds() -> float:
    """How long one streaming run lasts before the runner restarts it (see :func:`run`)."""
    try:
        return max(1.0, float(os.environ.get("CDCFLOW_STREAMING_EPOCH_S", STREAMING_EPOCH_S)))
    except ValueError:
        return STREAMING_EPOCH_S


def run(
    config: PipelineConfig, beam_args: Sequence[str] = (), until_caught_up: bool = False
) -> RunReport:
    """Run ``config`` on Beam and report what happened.

    ``beam_args`` are Beam pipeline options (``--runner=...``); the default is the
    DirectRunner in-memory with one worker. A Kafka source streams until SIGINT/SIGTERM
    unless ``until_caught_up`` (see the module docstring); file sources always stop at
    their end.

    Streaming runs in epochs: :data:`STREAMING_EPOCH_S` seconds after the readers start (variable
    ``CDCFLOW_STREAMING_EPOCH_S``) the readers end their ranges as for a stop, the bundles
    finish and commit, and the pipeline is planned and started again in a fresh runner
    (about half a second without reading); ``CDCFLOW_STREAMING_EPOCH_BUNDLES`` also ends an
    epoch once the readers have started that many bundles (default: no bundle limit). A
    fresh runner releases whatever Beam's FnApiRunner keeps per run. Its per-bundle metric
    merge, which used to recurse once per bundle of the epoch when the run's metrics were
    collected, is made eager by :func:`cdcflow.beam.fnapi.eager_metric_merges`.
    """
    plan = plan_pipeline(config)
    unbounded = any(not i.source.bounded for i in plan.inputs)
    streaming = unbounded and not until_caught_up
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    if unbounded:
        from cdcflow.beam.kafka import (
            epoch_bundles,
            reset_epoch,
            reset_stop,
            stop_requested,
        )

        reset_stop()
    report = RunReport()
    epochs = 0
    with _stop_on_signals(unbounded):
        while True:
            if epochs:
                plan = plan_pipeline(config)
            for writer in plan.writers:
                writer.streaming = streaming  # ride through outages (see cdcflow.io.retry)
            # A restart rides through a source outage; the first start fails fast.
            for planned in plan.inputs:
                planned.source.ride_through_outages = streaming and epochs > 0
            pipeline = _pipeline(args)
            if unbounded:
                if streaming:
                    reset_epoch(_epoch_bundles(), _epoch_seconds())
                else:
                    reset_epoch()
            began = time.monotonic()
            build(pipeline, plan, until_caught_up=until_caught_up)
            with _gc_tuned(), _short_state_sampling(), eager_metric_merges():
                result = pipeline.run()
                result.wait_until_finish()
            epochs += 1
            _add_metrics(report, result)
            if not streaming or stop_requested():
                break
            log.info(
                "streaming epoch %d ended after %.0fs and %d bundles; restarting the pipeline "
                "in a fresh runner",
                epochs,
                time.monotonic() - began,
                epoch_bundles(),
            )
    report.streaming = streaming
    if unbounded:
        report.stopped_by_signal = stop_requested()
    for writer in plan.writers:
        writer.open()
        try:
            report.sink_lines.extend(writer.describe())
        finally:
            writer.close()
    report.dead_letter_lines = plan.dead_letters.describe()
    return report


def _add_metrics(report: RunReport, result: Any) -> None:
    """Add one run's counters to ``report``."""
    try:
        counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
        for counter in counters["counters"]:
            name = counter.key.metric.name
            value = counter.committed if counter.committed is not None else counter.attempted
            if name == "records_read":
                report.records_read += value
            elif name == "dead_letters_stored" or name.startswith("rejected:"):
                report.dead_letters += value
            elif name.startswith("events_written:"):
                sink = name.split(":", 1)[1]
                report.written[sink] = report.written.get(sink, 0) + value
    except (AttributeError, NotImplementedError, KeyError):
        pass  # Some runners do not report metrics; the summary below still reads the sinks.
