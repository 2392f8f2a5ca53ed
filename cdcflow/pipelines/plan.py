"""Engine-neutral planning: build a pipeline's components and work out where to resume.

Both engines start here: :func:`plan_pipeline` builds the source, decode step, transforms,
writers and dead-letter writer from a validated config, and :func:`resume_offsets` asks every
position-keeping sink what it has committed, so each partition starts at the lowest committed
position of any sink (each sink then skips what it already has).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from cdcflow.errors import CdcflowError, ConfigError
from cdcflow.io.base import DeadLetterWriter, PartitionKey, Source, Writer
from cdcflow.io.files import DeadLetterFileWriter
from cdcflow.pipelines import table_match
from cdcflow.pipelines.components import BuildContext, ComponentConfig, ComponentError
from cdcflow.pipelines.config import Loc, PipelineConfig
from cdcflow.transforms.redact.dead_letters import protect_dead_letters


class Plan(msgspec.Struct, kw_only=True):
    """The built, engine-neutral components of one pipeline."""

    config: Any
    source: Source
    decode: Any
    steps: list[Any]
    writers: list[Writer]
    dead_letters: DeadLetterWriter


def plan_pipeline(config: PipelineConfig, check_tables: bool = True) -> Plan:
    """Build every component of ``config``.

    With ``check_tables`` (the default; off on engine workers and for ``status``), table
    patterns that ``strict``/``require_match`` require to match are checked against the
    source's tables, and a :class:`ConfigError` is raised before anything is read.

    Without a ``dead_letter`` section, dead letters go to
    ``dead-letters/<pipeline>.jsonl`` next to the pipeline file (nothing is dropped).
    """
    context = config.context
    sources = config.all_sources
    if len(sources) != 1:
        raise ConfigError(
            f"{config.path}: this version runs pipelines with exactly one source "
            f"(got {len(sources)}); joins across sources come later"
        )
    source_config = sources[0]
    source_loc: Loc = ("source",) if config.source is not None else ("sources", 0)
    source = _build(config, source_loc, source_config, context)
    decode = source_config.decode_step()  # type: ignore[attr-defined]
    steps = [
        _build(config, ("transforms", i), t, context) for i, t in enumerate(config.transforms)
    ]
    writers = [_build(config, ("sinks", i), s, context) for i, s in enumerate(config.sinks)]
    if config.dead_letter is not None:
        dead_letters = _build(config, ("dead_letter",), config.dead_letter, context)
    else:
        dead_letters = DeadLetterFileWriter(
            context.base_dir / "dead-letters" / f"{config.pipeline}.jsonl"
        )
    # strict / require_match: a table pattern that matches nothing stops here, before a
    # single record is read (fail closed; docs/redaction.md).
    if check_tables:
        table_match.enforce(config, source, decode)
    # Redact steps also redact the dead letters of the steps before them, at the dead-letter
    # sink, whatever the engine (docs/redaction.md); without redact steps this is a no-op.
    dead_letters = protect_dead_letters(dead_letters, [decode, *steps])
    return Plan(
        config=config,
        source=source,
        decode=decode,
        steps=steps,
        writers=writers,
        dead_letters=dead_letters,
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


def resume_offsets(
    writers: Sequence[Writer], partitions: Sequence[tuple[str, int | str]]
) -> dict[PartitionKey, int]:
    """The first offset to read per partition: one past the lowest committed position.

    Only writers that keep positions count. A partition some such writer has never written
    is absent from the result (read from the source's default start).
    """
    keeping = [w for w in writers if w.keeps_positions]
    if not keeping:
        return {}
    committed: list[dict[PartitionKey, int]] = []
    for writer in keeping:
        writer.open()
        try:
            committed.append(writer.committed_positions())
        finally:
            writer.close()
    result: dict[PartitionKey, int] = {}
    for stream, partition in partitions:
        key = (stream, str(partition))
        if all(key in positions for positions in committed):
            result[key] = min(positions[key] for positions in committed) + 1
    return result
