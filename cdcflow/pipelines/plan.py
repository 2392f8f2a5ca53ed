"""Engine-neutral planning: build a pipeline's components and work out where to resume.

Both engines start here: :func:`plan_pipeline` builds the source, decode step, transforms,
writers and dead-letter writer from a validated config, and the functions below are the one
place that decides where each partition starts, for Beam and Flink alike:

* :func:`sink_positions` asks every position-keeping sink what it has committed;
* :func:`resume_points` turns that into the rule: a partition every position-keeping sink has
  a position for starts one past the lowest; a partition *some* position-keeping sink has no
  position for starts from the source's ``start:`` (that sink is backfilled, the others skip
  what they already hold, by their stored positions);
* :func:`kafka_start_offsets` resolves this to concrete Kafka offsets (called by
  :class:`cdcflow.beam.kafka.ReadFromKafka` and the Flink plan), and :func:`caught_up` applies
  the same rule to tell when every sink has written up to given end offsets
  (``--until-caught-up`` on Flink).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from cdcflow.core.components import BuildContext, ComponentConfig, ComponentError, SourceConfig
from cdcflow.core.source import PartitionKey, Source
from cdcflow.core.writer import DeadLetterWriter, Writer
from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.io.files import DeadLetterFileWriter
from cdcflow.pipelines import table_match
from cdcflow.pipelines.config import Loc, PipelineConfig
from cdcflow.pipelines.inputs import (
    AllTables,
    PlannedSource,
    RoutedDecode,
    check_unique_names,
    source_name,
    stream_routes,
)
from cdcflow.transforms.decode import DecodeStep
from cdcflow.transforms.redact.dead_letters import protect_dead_letters

if TYPE_CHECKING:  # the Kafka modules load only for pipelines that read Kafka
    from cdcflow.io.kafka.source import KafkaSource

#: The engine a pipeline is planned for: capabilities are checked against what it replays.
Engine = Literal["beam", "flink"]


class Plan(msgspec.Struct, kw_only=True):
    """The built, engine-neutral components of one pipeline.

    ``inputs`` holds every source with its decode step (one for ``source:``, several for
    ``sources:``). ``decode`` is the decode step of the lone source; with several sources it
    is a :class:`~cdcflow.pipelines.inputs.RoutedDecode` without routes, which the engine
    replaces by :meth:`routed_decode` once it has listed the partitions.
    """

    config: Any
    inputs: list[PlannedSource]
    decode: Any
    steps: list[Any]
    writers: list[Writer]
    dead_letters: DeadLetterWriter

    @property
    def source(self) -> Source:
        """The first (for ``source:``, the only) source."""
        return self.inputs[0].source

    def routed_decode(self, partitions: Sequence[Sequence[tuple[str, int | str]]]) -> Any:
        """The decode step for batches of every source, given each source's partitions.

        With one source this is its decode step; with several, a
        :class:`~cdcflow.pipelines.inputs.RoutedDecode` (raises :class:`ConfigError` when two
        sources read the same stream).
        """
        if len(self.inputs) == 1:
            return self.inputs[0].decode
        routes = stream_routes(self.inputs, partitions)
        return RoutedDecode([i.decode for i in self.inputs], routes)


def plan_pipeline(
    config: PipelineConfig, check_tables: bool = True, engine: Engine = "beam"
) -> Plan:
    """Build every component of ``config`` for ``engine``.

    With ``check_tables`` (the default; off on engine workers and for ``status``), table
    patterns that ``strict``/``require_match`` require to match are checked against the
    source's tables, and a :class:`ConfigError` is raised before anything is read. What the
    pipeline asks of each sink is checked against the sink's declared capabilities
    (:func:`check_capabilities`).

    Without a ``dead_letter`` section, dead letters go to
    ``dead-letters/<pipeline>.jsonl`` next to the pipeline file (nothing is dropped).
    """
    context = config.context
    inputs = _plan_sources(config, context)
    decode = inputs[0].decode if len(inputs) == 1 else RoutedDecode([], {})
    steps = [
        _build(config, ("transforms", i), t, context) for i, t in enumerate(config.transforms)
    ]
    writers = [_build(config, ("sinks", i), s, context) for i, s in enumerate(config.sinks)]
    check_capabilities(config, config.all_sources, writers, engine)
    if config.dead_letter is not None:
        dead_letters = _build(config, ("dead_letter",), config.dead_letter, context)
    else:
        dead_letters = DeadLetterFileWriter(
            context.base_dir / "dead-letters" / f"{config.pipeline}.jsonl"
        )
    # strict / require_match: a table pattern that matches nothing stops here, before a
    # single record is read (fail closed; docs/redaction.md).
    if check_tables:
        tables = inputs[0].source if len(inputs) == 1 else AllTables(inputs)
        table_match.enforce(config, tables, inputs[0].decode)
    # Redact steps also redact the dead letters of the steps before them, at the dead-letter
    # sink, whatever the engine (docs/redaction.md); without redact steps this is a no-op.
    dead_letters = protect_dead_letters(dead_letters, [*(i.decode for i in inputs), *steps])
    return Plan(
        config=config,
        inputs=inputs,
        decode=decode,
        steps=steps,
        writers=writers,
        dead_letters=dead_letters,
    )


def _plan_sources(config: PipelineConfig, context: BuildContext) -> list[PlannedSource]:
    """Build every source of ``config`` with its decode step (see :mod:`.inputs`)."""
    located: list[tuple[Loc, ComponentConfig]] = (
        [(("source",), config.source)]
        if config.source is not None
        else [(("sources", i), s) for i, s in enumerate(config.sources)]
    )
    if not located:
        raise ConfigError(f"{config.path}: needs a 'source' (or a list of 'sources')")
    inputs: list[PlannedSource] = []
    for loc, source_config in located:
        if not isinstance(source_config, SourceConfig):
            raise ConfigError(
                f"{config.locate(loc)}: the {source_config.type!r} source model must subclass "
                "cdcflow.core.components.SourceConfig"
            )
        source = _build(config, loc, source_config, context)
        inputs.append(
            PlannedSource(
                name=source_name(source_config.name, loc),
                loc=loc,
                source=source,
                decode=DecodeStep.from_spec(source_config.decoding()),
            )
        )
    check_unique_names(inputs, str(config.path))
    return inputs


def check_capabilities(
    config: PipelineConfig,
    sources: Sequence[ComponentConfig],
    writers: Sequence[Writer],
    engine: Engine,
) -> None:
    """Refuse a pipeline that asks a sink for what its capabilities say it cannot do.

    The rules (docs/architecture.md, "Capabilities"), each a located :class:`ConfigError`
    naming the sink, what the pipeline asks and why the sink cannot:

    * ``truncate: apply`` on a sink that mirrors by key (``upsert``) needs ``truncate``
      (emptying the table); a sink that appends records a truncate as an event instead;
    * a sink that keeps no positions of its own must be ``idempotent`` on the Flink engine
      (a restore from a checkpoint replays the batches since that checkpoint);
    * on Beam, such a sink must be ``idempotent`` unless the source commits its offsets after
      every sink wrote them (a Kafka source with ``commit_offsets``): otherwise nothing records
      how far it got, and every restart applies the source again from ``start:``.
    """
    # Every source must record how far it got for a positionless sink to resume.
    holds_positions = all(bool(getattr(s, "commit_offsets", False)) for s in sources)
    kinds = ", ".join(sorted({repr(s.type) for s in sources}))
    for index, (sink, writer) in enumerate(zip(config.sinks, writers, strict=True)):
        can = writer.capabilities
        what = f"sink {writer.name!r} ({sink.type})"
        if getattr(sink, "truncate", None) == "apply" and can.upsert and not can.truncate:
            raise ConfigError(
                f"{config.locate(('sinks', index, 'truncate'))}: the pipeline asks {what} to "
                "empty a table on a truncate event (truncate: apply, the default), but this "
                "sink cannot truncate; set truncate: ignore"
            )
        if writer.keeps_positions or can.idempotent:
            continue
        if engine == "flink":
            why = (
                "on engine flink a restore from a checkpoint replays the batches written "
                "since, and this sink would apply them twice"
            )
        elif not holds_positions:
            why = (
                f"the {kinds} source does not commit offsets for it either, so every "
                "restart would apply the source again from its start"
            )
        else:
            continue  # the consumer group's offsets are its positions (at least once)
        raise ConfigError(
            f"{config.locate(('sinks', index))}: {what} keeps no positions and is not "
            f"idempotent: {why}; use a sink that keeps positions or is idempotent"
            + ("" if engine == "flink" else ", or a Kafka source with commit_offsets: true")
        )


def _build(
    config: PipelineConfig, loc: Loc, component: ComponentConfig, context: BuildContext
) -> Any:
    """Build one component; a ConfigError it raises is located in the pipeline file.

    A ``ValueError`` from a component's constructor is a configuration problem too (located,
    exit code 2); any other exception becomes a :class:`CdcflowError` naming the component.
    """
    try:
        return component.build(context)
    except ComponentError as exc:
        raise ConfigError(f"{config.locate((*loc, exc.key))}: {exc.detail}") from None
    except ConfigError as exc:
        raise ConfigError(f"{config.locate(loc)}: {exc}") from None
    except CdcflowError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{config.locate(loc)}: {exc}") from None
    except Exception as exc:
        raise CdcflowError(
            f"{config.locate(loc)}: cannot build this {component.type!r} component: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def sink_positions(writers: Sequence[Writer]) -> list[dict[PartitionKey, int]]:
    """The committed positions of each position-keeping writer (opened and closed here)."""
    committed: list[dict[PartitionKey, int]] = []
    for writer in writers:
        if not writer.keeps_positions:
            continue
        writer.open()
        try:
            committed.append(writer.committed_positions())
        finally:
            writer.close()
    return committed


@dataclass(frozen=True)
class ResumePoints:
    """Where each partition starts, before the source resolves ``start:`` (see the module doc).

    ``offsets``: the first offset to read of each partition that every position-keeping sink
    has a position for (one past the lowest). ``backfill``: the partitions some
    position-keeping sink has no position for; they start from the source's ``start:``.
    Partitions in neither (only when no sink keeps positions) start where the source says
    (for Kafka the group's committed offset, else ``start:``). ``positionless``: some sink
    keeps no positions of its own.
    """

    offsets: dict[PartitionKey, int] = field(default_factory=dict)
    backfill: frozenset[PartitionKey] = frozenset()
    positionless: bool = False


def resume_points(
    writers: Sequence[Writer], partitions: Sequence[tuple[str, int | str]]
) -> ResumePoints:
    """Apply the resume rule to the writers' stored positions for ``partitions``."""
    committed = sink_positions(writers)
    positionless = any(not w.keeps_positions for w in writers)
    if not committed:
        return ResumePoints(positionless=positionless)
    offsets: dict[PartitionKey, int] = {}
    backfill: set[PartitionKey] = set()
    for stream, partition in partitions:
        key = (stream, str(partition))
        if all(key in positions for positions in committed):
            offsets[key] = min(positions[key] for positions in committed) + 1
        else:
            backfill.add(key)
    return ResumePoints(offsets, frozenset(backfill), positionless)


def resume_offsets(
    writers: Sequence[Writer], partitions: Sequence[tuple[str, int | str]]
) -> dict[PartitionKey, int]:
    """The first offset to read per partition: one past the lowest committed position.

    Only writers that keep positions count. A partition some such writer has never written
    is absent from the result: it is read from the source's ``start:`` (for a file source,
    its beginning).
    """
    return resume_points(writers, partitions).offsets


def kafka_start_offsets(
    source: KafkaSource, writers: Sequence[Writer], group_holds_positions: bool
) -> dict[tuple[str, int], int]:
    """The first offset of every partition of a Kafka ``source`` read for ``writers``.

    The one implementation for both engines: :func:`resume_points` over the writers' stored
    positions, resolved to offsets by the source (its ``start:`` and the group's offsets).
    ``group_holds_positions``: the engine commits offsets to the consumer group after every
    sink wrote them (Beam with ``commit_offsets``); the group's offset is then the position of
    the sinks that keep none, and lowers the start. Flink does not commit to the group.
    """
    points = resume_points(writers, source.partitions())
    return source.start_offsets(
        points.offsets,
        group_is_a_sink_position=points.positionless and group_holds_positions,
        backfill=points.backfill,
    )


def caught_up(writers: Sequence[Writer], ends: Mapping[PartitionKey, int]) -> bool:
    """True when every position-keeping writer has written each partition up to its end.

    ``ends`` maps partitions to their end offset (exclusive): a partition is caught up when
    the resume rule (:func:`resume_points`) would start it at or past its end. False when no
    writer keeps positions (nothing can tell) and a partition has records to read.
    """
    points = resume_points(writers, list(ends))
    return all(points.offsets.get(key, 0) >= end for key, end in ends.items())
