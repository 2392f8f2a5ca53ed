"""Planning a Flink job from a pipeline file, without Flink: validation, start offsets, SQL.

Job shape (chosen because PyFlink has no Python-defined source, and its DataStream
``KafkaSource`` hands Python only the value bytes)::

    Kafka (Flink's Table API connector, one source table per topic: raw key and value bytes,
           topic/partition/offset metadata columns)
      -> processing-time TUMBLE window per (topic, partition): ARRAY_AGG of offsets, keys, values
         = one small batch per partition every ``batch_interval_ms`` (Java, checkpointed state)
      -> to DataStream -> key_by (topic, partition)
      -> Python operator (thread mode): decode -> steps -> dead letters -> every writer

Batching happens in Java window state, so records a checkpoint has taken from Kafka but not yet
written are in that checkpoint's window state, never only in Python memory: a restore loses
nothing, and the writers skip what they already stored (positions are written with the rows,
exactly as on Beam). Keying by partition keeps each partition's batches in offset order on one
writer subtask.

Start offsets: on a fresh start (not a restore) each partition starts where
:func:`cdcflow.pipelines.plan.kafka_start_offsets` says, the same rule as on Beam: one past the
lowest position its position-keeping sinks stored, or, when one of them has none, the source's
``start`` (earliest, latest, committed, a timestamp), so a sink added later is backfilled;
resolved to concrete offsets and passed as Flink ``specific-offsets``. A
restore from a checkpoint or savepoint uses the offsets in Flink's state instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.flink.options import FlinkOptions, resolve_jars
from cdcflow.pipelines.config import PipelineConfig
from cdcflow.pipelines.plan import Plan, kafka_start_offsets, plan_pipeline

if TYPE_CHECKING:
    from cdcflow.io.kafka.source import KafkaSource

#: Java Kafka client settings cdcflow sets itself (the consumer_config cannot override them).
_MANAGED = {
    "bootstrap.servers",
    "group.id",
    "key.deserializer",
    "value.deserializer",
    "commit.offsets.on.checkpoint",
}
#: librdkafka-only settings that mean nothing to the Java client (dropped, not passed on).
_LIBRDKAFKA_ONLY = {
    "fetch.wait.max.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "statistics.interval.ms",
    "socket.keepalive.enable",
    "topic.metadata.refresh.interval.ms",
    "api.version.request",
    "broker.version.fallback",
    "log_level",
    "debug",
}


@dataclass(frozen=True)
class TopicSpec:
    """One Kafka topic to read and the first offset of each of its partitions."""

    topic: str
    start_offsets: dict[int, int] = field(default_factory=dict)


@dataclass
class JobSpec:
    """Everything needed to build the Flink job, worked out (and validated) in the driver."""

    pipeline: str
    pipeline_file: Path
    options: FlinkOptions
    jars: list[str]
    bootstrap_servers: str
    group_id: str
    topics: list[TopicSpec]
    kafka_properties: dict[str, str]
    plan: Plan
    #: Where the operators write their counts (:mod:`cdcflow.flink.stats`); local runs only.
    stats_dir: str | None = None

    @property
    def job_name(self) -> str:
        """The Flink job name (``cdcflow:<pipeline>`` unless configured)."""
        return self.options.job_name or f"cdcflow:{self.pipeline}"


def flink_options(config: PipelineConfig) -> FlinkOptions:
    """The pipeline's ``engine.flink`` section (defaults when absent)."""
    engine = getattr(config, "engine", None)
    options = getattr(engine, "flink", None) if engine is not None else None
    return options if isinstance(options, FlinkOptions) else FlinkOptions()


#: The source types the Flink engine runs: Flink's own Kafka connector reads them. Every other
#: source (``file``, and the Kinesis and DynamoDB Streams sources to come) runs on the Beam
#: engine (docs/flink.md, "Which engine runs which source").
FLINK_SOURCE_TYPES = frozenset({"kafka"})


def flink_source_problem(config: PipelineConfig) -> str | None:
    """Why the Flink engine cannot read ``config``'s sources (located), or None when it can."""
    for index, source in enumerate(config.all_sources):
        if source.type not in FLINK_SOURCE_TYPES:
            loc = ("source", "type") if config.source is not None else ("sources", index, "type")
            return (
                f"{config.locate(loc)}: the Flink engine reads Kafka sources only "
                f"(type: kafka), not {source.type!r}; {source.type!r} sources run on the Beam "
                "engine (cdcflow run without --engine flink; see docs/flink.md)"
            )
    if len(config.all_sources) > 1:
        return (
            f"{config.locate(('sources',))}: the Flink engine reads one source per pipeline "
            f"(got {len(config.all_sources)}); several sources run on the Beam engine "
            "(cdcflow run without --engine flink; see docs/flink.md)"
        )
    return None


def check_flink_sources(config: PipelineConfig) -> None:
    """Raise :class:`ConfigError` when the Flink engine cannot read ``config``'s sources.

    Checked on the configuration alone (nothing is built or connected), first thing in
    :func:`prepare_job` and by ``cdcflow validate --engine flink``.
    """
    problem = flink_source_problem(config)
    if problem is not None:
        raise ConfigError(problem)


def kafka_settings(plan: Plan) -> Any:
    """The Kafka settings of the plan's source; ConfigError for any other kind of source."""
    settings = getattr(plan.source, "settings", None)
    if settings is None or not hasattr(settings, "bootstrap_servers"):
        kinds = [getattr(s, "type", "?") for s in plan.config.all_sources]
        raise ConfigError(
            f"{plan.config.path}: the Flink engine reads Kafka sources only "
            f"(source type {kinds[0] if kinds else '?'!r}); use the Beam engine for it"
        )
    return settings


def java_kafka_properties(
    client_config: Mapping[str, Any], extra: Mapping[str, str]
) -> dict[str, str]:
    """The Java client properties from a source's ``consumer_config`` plus ``kafka_properties``.

    Secrets are unwrapped here: the result goes only into the job's connector options.
    """
    props: dict[str, str] = {}
    for key, value in client_config.items():
        if key in _MANAGED or key in _LIBRDKAFKA_ONLY:
            continue
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        props[key] = str(raw).lower() if isinstance(raw, bool) else str(raw)
    for key, value in extra.items():
        if key in _MANAGED:
            raise ConfigError(
                f"engine.flink.kafka_properties: {key!r} is managed by cdcflow "
                "(use the source's bootstrap_servers / group_id)"
            )
        props[key] = value
    return props


def topic_specs(starts: Mapping[tuple[str, int], int]) -> list[TopicSpec]:
    """Group ``(topic, partition) -> first offset`` by topic, in a stable order."""
    by_topic: dict[str, dict[int, int]] = {}
    for (topic, partition), offset in starts.items():
        by_topic.setdefault(str(topic), {})[int(partition)] = int(offset)
    return [
        TopicSpec(topic, dict(sorted(parts.items())))
        for topic, parts in sorted(by_topic.items())
    ]


def prepare_job(
    config: PipelineConfig,
    cli_jars: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    connect: bool = True,
) -> JobSpec:
    """Validate ``config`` for the Flink engine and work out the job; nothing is submitted.

    Builds every component (so configuration errors surface here), resolves the connector jars,
    and with ``connect`` checks that the source and sinks are reachable, lists the partitions
    and resolves their start offsets. Raises :class:`ConfigError` for bad configuration and
    other :class:`~cdcflow.errors.CdcflowError` subclasses for unreachable systems.
    """
    check_flink_sources(config)
    options = flink_options(config)
    plan = plan_pipeline(config, engine="flink")
    settings = kafka_settings(plan)
    jars = resolve_jars(options, cli_jars, env=env, base_dir=config.path.parent)
    props = java_kafka_properties(getattr(settings, "client_config", {}), options.kafka_properties)
    topics: list[TopicSpec] = []
    if connect:
        problems = list(plan.source.check())
        for writer in plan.writers:
            problems.extend(writer.check())
        if problems:
            raise CdcflowError("\n".join(problems))
        # Flink never commits offsets to the group (see source_table_ddl).
        source = cast("KafkaSource", plan.source)  # kafka_settings() refused any other
        starts = kafka_start_offsets(source, plan.writers, group_holds_positions=False)
        topics = topic_specs(starts)
        if not topics:
            raise ConfigError(f"{config.path}: the source has no partitions to read")
    return JobSpec(
        pipeline=config.pipeline,
        pipeline_file=config.path,
        options=options,
        jars=jars,
        bootstrap_servers=str(settings.bootstrap_servers),
        group_id=str(settings.group_id),
        topics=topics,
        kafka_properties=props,
        plan=plan,
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def source_table_ddl(table: str, topic: TopicSpec, spec: JobSpec) -> str:
    """``CREATE TEMPORARY TABLE`` for one topic: raw key/value bytes plus metadata columns."""
    options: dict[str, str] = {
        "connector": "kafka",
        "topic": topic.topic,
        "properties.bootstrap.servers": spec.bootstrap_servers,
        "properties.group.id": spec.group_id,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        # Flink would commit a checkpoint's offsets to the group while the records are still
        # in window state, not yet written; a later fresh start from those group offsets (for
        # a partition no sink has a position for) would skip them. Positions live in the sinks.
        "properties.commit.offsets.on.checkpoint": "false",
    }
    if topic.start_offsets:
        options["scan.startup.mode"] = "specific-offsets"
        options["scan.startup.specific-offsets"] = ";".join(
            f"partition:{p},offset:{o}" for p, o in sorted(topic.start_offsets.items())
        )
    else:
        options["scan.startup.mode"] = "earliest-offset"
    for key, value in spec.kafka_properties.items():
        options.setdefault(f"properties.{key}", value)
    with_clause = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())
    return (
        f"CREATE TEMPORARY TABLE `{table}` (\n"
        "  `k` BYTES,\n"
        "  `v` BYTES,\n"
        "  `topic` STRING METADATA VIRTUAL,\n"
        "  `partition` INT METADATA VIRTUAL,\n"
        "  `offset` BIGINT METADATA VIRTUAL,\n"
        "  `pt` AS PROCTIME()\n"
        f") WITH (\n  {with_clause}\n)"
    )


def batch_query_sql(tables: Sequence[str], interval_ms: int) -> str:
    """One row per (topic, partition, window): the window's offsets, keys and values.

    Three parallel arrays rather than one array of rows: Flink 2.3's ``ARRAY_AGG`` of a
    ``ROW`` returns the last row repeated (object reuse), while arrays of scalars and bytes
    keep every value, NULLs included, in the same order.
    """
    if not tables:
        raise ValueError("no source tables")
    seconds = f"{interval_ms / 1000:.3f}"
    parts = [
        "SELECT `topic`, `partition`, ARRAY_AGG(`offset`) AS `offsets`, "
        "ARRAY_AGG(`k`) AS `keys`, ARRAY_AGG(`v`) AS `vals`\n"
        f"FROM TABLE(TUMBLE(TABLE `{t}`, DESCRIPTOR(`pt`), INTERVAL '{seconds}' SECOND))\n"
        "GROUP BY `window_start`, `window_end`, `topic`, `partition`"
        for t in tables
    ]
    return "\nUNION ALL\n".join(parts)


def partitioned_by_partition(explained: str, tables: int) -> bool:
    """True when Flink's plan hashes records by (topic, partition) into the window operators.

    Then each partition's windows are computed by one subtask, which forwards them (same
    parallelism, so a forward, order-keeping channel) to one Python subtask: the batches of a
    partition reach their writer in offset order without a ``key_by``, which would add a
    Python key-selector operator and a shuffle.
    """
    plan = explained.split("== Optimized Execution Plan ==")[-1]
    exchanges = [line.strip() for line in plan.splitlines() if "Exchange(" in line]
    wanted = "Exchange(distribution=[hash[topic, partition]])"
    return len(exchanges) == tables and all(e.endswith(wanted) for e in exchanges)


def partition_key(topic: str, partition: int) -> str:
    """The key batches are routed by: one writer subtask per partition."""
    return f"{topic}\x00{partition}"
