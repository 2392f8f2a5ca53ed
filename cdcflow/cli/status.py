"""``cdcflow status``: where a pipeline's sinks stand (file-based), or a Flink job's state.

One command, two targets, told apart without ambiguity by the argument's shape:

- ``cdcflow status PIPELINE.yaml``: any argument that is not a Flink job id. Reads the pipeline
  file and prints, per sink, its stored positions per partition and, where the source can tell
  (Kafka: end offsets; file: line counts), the end of each partition and the lag in records.
  No cdcflow or Flink server is involved: the positions are read where the sinks store them
  (the SQLite file, the PostgreSQL or ClickHouse table), and nothing is created or written.
  Then what the source stores itself (:meth:`~cdcflow.core.source.Source.describe_positions`;
  Kafka: the consumer group's committed offsets).
- ``cdcflow status [JOB_ID] --flink-master HOST:PORT``: a Flink job id (exactly 32 hex digits,
  Flink's JobID format) or no argument. The Flink REST command of :mod:`flink_cli`, unchanged.
  (A pipeline file whose name is 32 hex digits is given as ``./NAME``.)

Positions and lag
    A sink's position for a partition is the last offset it wrote. The lag is the number of
    offsets after it up to the end: ``end - (position + 1)``. A partition the sink has no
    position for prints ``no position`` (the next run reads it from the source's start).

Exit codes: 0 printed; 2 bad pipeline file or bad usage; 1 a sink's positions or the source's
ends could not be read (everything that could be read is still printed).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

import click
from click.core import ParameterSource

from cdcflow.cli.exit_codes import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.logs import error_line

#: A Flink JobID: 16 bytes as 32 lower- or upper-case hex digits.
JOB_ID = re.compile(r"[0-9a-fA-F]{32}")

PartitionKey = tuple[str, str]


def is_job_id(target: str) -> bool:
    """True when ``target`` names a Flink job rather than a pipeline file."""
    return JOB_ID.fullmatch(target) is not None


def _sort_key(key: PartitionKey) -> tuple[str, int, str]:
    stream, partition = key
    return (stream, int(partition) if partition.isdigit() else -1, partition)


def partition_line(
    key: PartitionKey, position: int | None, end: int | None, source_knows_ends: bool
) -> str:
    """One partition's line: position, end and lag (see the module docstring)."""
    stream, partition = key
    parts = [f"position {position}" if position is not None else "no position"]
    if end is not None:
        parts.append(f"end {end}")
        if position is not None:
            parts.append(f"lag {max(0, end - (position + 1))}")
    elif source_knows_ends:
        parts.append("end unknown (not a partition of the source now)")
    return f"{stream}[{partition}]: " + ", ".join(parts)


def sink_lines(
    positions: Mapping[PartitionKey, int],
    ends: Mapping[PartitionKey, int] | None,
    source_partitions: list[PartitionKey],
) -> list[str]:
    """The lines of one position-keeping sink, every partition once, sorted."""
    keys = set(positions) | set(source_partitions) | set(ends or {})
    return [
        partition_line(key, positions.get(key), (ends or {}).get(key), ends is not None)
        for key in sorted(keys, key=_sort_key)
    ]


def pipeline_status(pipeline_file: Path) -> int:
    """Print the status of ``pipeline_file``; returns the exit code."""
    from cdcflow.pipelines.config import load_pipeline
    from cdcflow.pipelines.plan import plan_pipeline

    try:
        config = load_pipeline(pipeline_file)
        plan = plan_pipeline(config, check_tables=False)
    except ConfigError as exc:
        click.echo(error_line(str(exc)), err=True)
        return EXIT_USAGE
    code = EXIT_OK
    source_type = ", ".join(sorted({getattr(s, "type", "?") for s in config.all_sources}))
    ends: dict[PartitionKey, int] | None = {}
    partitions: list[PartitionKey] = []
    source_problem: str | None = None
    own: list[list[PartitionKey]] = []
    for planned, source_config in zip(plan.inputs, config.all_sources, strict=True):
        kind = getattr(source_config, "type", "?")
        try:
            found = planned.source.end_offsets()
            if found is None:
                ends = None  # a source without ends: no lag column for any partition
            elif ends is not None:
                ends.update({(str(s), str(p)): int(o) for (s, p), o in found.items()})
            own.append([(str(s), str(p)) for s, p in planned.source.partitions()])
            partitions.extend(own[-1])
        except CdcflowError as exc:
            source_problem = f"source ({kind}): cannot read its partitions and ends: {exc}"
            ends = None
            break
    click.echo(f"pipeline {config.pipeline!r} (source {source_type})")
    for index, writer in enumerate(plan.writers):
        sink_type = getattr(config.sinks[index], "type", "?")
        header = f"  sink {writer.name!r} ({sink_type})"
        if not writer.keeps_positions:
            click.echo(f"{header}: keeps no positions")
            continue
        try:
            positions = writer.stored_positions()
        except CdcflowError as exc:
            click.echo(f"{header}: positions unknown")
            click.echo(error_line(str(exc)), err=True)
            code = EXIT_RUNTIME
            continue
        click.echo(f"{header}:")
        for line in sink_lines(positions, ends, partitions) or ["no partitions, no positions"]:
            click.echo(f"    {line}")
    if source_problem is None:
        try:
            for planned, listed in zip(plan.inputs, own, strict=True):
                for line in planned.source.describe_positions(listed):
                    click.echo(f"  {line}")
        except CdcflowError as exc:
            source_problem = f"source ({source_type}): {exc}"
    if source_problem is not None:
        click.echo(error_line(str(source_problem)), err=True)
        code = EXIT_RUNTIME
    return code


@click.command()
@click.argument("target", required=False, metavar="[PIPELINE.yaml|JOB_ID]")
@click.option(
    "--flink-master",
    "master",
    envvar="CDCFLOW_FLINK_MASTER",
    default=None,
    metavar="HOST:PORT",
    help="Flink only: REST endpoint of the JobManager (or $CDCFLOW_FLINK_MASTER).",
)
@click.pass_context
def status(ctx: click.Context, target: str | None, master: str | None) -> None:
    """Show where PIPELINE.yaml's sinks stand, or a Flink job's state.

    With PIPELINE.yaml: per sink, the stored position of each partition, the source's end
    and the lag in records, read from the sinks' own storage (no server of cdcflow or Flink
    needed; nothing is created).

    With a Flink JOB_ID (32 hex digits) or no argument, and --flink-master: that job's state
    and checkpoints, or every job of the cluster.

    Exit codes: 0 printed, 2 bad file or usage, 1 positions or ends could not be read.
    """
    if target is not None and not is_job_id(target):
        if ctx.get_parameter_source("master") is ParameterSource.COMMANDLINE:
            raise click.UsageError(
                f"--flink-master is for Flink job ids (32 hex digits); {target!r} is read as "
                "a pipeline file, whose status needs no server"
            )
        sys.exit(pipeline_status(Path(target)))
    if master is None:
        raise click.MissingParameter(
            ctx=ctx, param=ctx.command.params[1], message="a Flink job's status needs it"
        )
    from cdcflow.cli.flink_run import status as flink_status

    ctx.invoke(flink_status, job_id=target, master=master)
