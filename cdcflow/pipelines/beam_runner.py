"""Build and run a pipeline config on Apache Beam.

Shape (ARCHITECTURE §3)::

    Read -> Decode -> [transforms...] -> StoreDeadLetters -> Write/<sink> (one branch per sink)

Read, decode, transforms, dead-letter storage and writing stay in one fused stage (no shuffle),
so the batches of a partition reach every sink in offset order: a sink's stored position then
always means "everything up to here is written".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from cdcflow.beam.transforms import (
    EVENTS,
    NAMESPACE,
    ApplyStep,
    ReadFromSource,
    StoreDeadLetters,
    WriteTo,
)
from cdcflow.pipelines.config import PipelineConfig
from cdcflow.pipelines.plan import Plan, plan_pipeline, resume_offsets


@dataclass
class RunReport:
    """What a finished run did, for the CLI summary."""

    records_read: int = 0
    dead_letters: int = 0
    written: dict[str, int] = field(default_factory=dict)
    sink_lines: list[str] = field(default_factory=list)
    dead_letter_lines: list[str] = field(default_factory=list)


def build(pipeline: beam.Pipeline, plan: Plan) -> None:
    """Add the plan's transforms to ``pipeline``."""
    start = resume_offsets(plan.writers, plan.source.partitions())
    batches = (
        pipeline
        | "Read" >> ReadFromSource(plan.source, start)
        | "Decode" >> ApplyStep(plan.decode, carry=True)
    )[EVENTS]
    for index, step in enumerate(plan.steps):
        label = f"Transform{index}:{getattr(step, 'name', type(step).__name__)}"
        batches = (batches | label >> ApplyStep(step, carry=True))[EVENTS]
    stored = batches | "StoreDeadLetters" >> StoreDeadLetters(plan.dead_letters)
    for writer in plan.writers:
        _ = stored | f"Write:{writer.name}" >> WriteTo(writer, plan.dead_letters)


def run(config: PipelineConfig, beam_args: Sequence[str] = ()) -> RunReport:
    """Run ``config`` to completion on Beam and report what happened.

    ``beam_args`` are Beam pipeline options (``--runner=...``); the default is the
    DirectRunner in-memory with one worker.
    """
    plan = plan_pipeline(config)
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    options = PipelineOptions(args)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, plan)
    result = pipeline.run()
    result.wait_until_finish()
    report = RunReport()
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
    for writer in plan.writers:
        writer.open()
        try:
            report.sink_lines.extend(writer.describe())
        finally:
            writer.close()
    report.dead_letter_lines = plan.dead_letters.describe()
    return report
