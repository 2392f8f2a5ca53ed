"""Base classes for the config models that build components, and the build context.

Part of the core contract (ARCHITECTURE §1): ``io`` and ``transforms`` build their components
on these classes, so it lives beside ``errors`` and imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict

from cdcflow.errors import ConfigError

#: The record formats a source can declare (the decode step reads each of them).
DecodeFormat = Literal["debezium-json", "debezium-avro"]
DECODE_FORMATS: tuple[str, ...] = ("debezium-json", "debezium-avro")

if TYPE_CHECKING:
    from cdcflow.core.source import Source
    from cdcflow.core.step import Step
    from cdcflow.core.writer import DeadLetterWriter, Writer
    from cdcflow.schemas.debezium import TombstoneHandling


class BuildContext(msgspec.Struct, frozen=True):
    """What a component needs to know about the pipeline it is built into.

    ``base_dir`` is the directory of the pipeline file: relative paths in the config are
    resolved against it.
    """

    pipeline: str
    base_dir: Path

    def resolve(self, path: str | Path) -> Path:
        """Resolve ``path`` against the pipeline file's directory."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()


class ComponentConfig(BaseModel):
    """Base for every component model: unknown keys are errors, values are validated strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    def build(self, context: BuildContext) -> Any:
        """Build the engine-neutral component this config describes."""
        raise NotImplementedError


class DecodeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How a source's records are decoded: what the plan builds the decode step from.

    A source config describes its records (it does not build the decode step itself, so
    ``io`` never imports ``transforms``). ``stream_is_topic``: a position's stream is a Kafka
    topic name that may name the table of messages that do not. ``schema_registry``: the
    :class:`~cdcflow.schemas.registry.SchemaRegistryConfig` for ``debezium-avro``.
    """

    format: DecodeFormat = "debezium-json"
    key_columns: Mapping[str, Sequence[str]] = msgspec.field(default_factory=dict)
    tombstones: TombstoneHandling = "marker"
    stream_is_topic: bool = True
    schema_registry: Any = None


class SourceConfig(ComponentConfig):
    """Base of every ``source:`` model: builds a :class:`~cdcflow.core.source.Source`.

    ``name`` names the source in a ``sources:`` list (logs, errors, metrics); without it a
    source is called ``source`` or ``sources[i]``. Names must be unique.
    """

    name: str | None = None

    def build(self, context: BuildContext) -> Source:
        """Build the source (connect lazily: nothing is read until partitions are listed)."""
        raise NotImplementedError

    def decoding(self) -> DecodeSpec:
        """How this source's records are decoded (the plan builds the decode step from it)."""
        return DecodeSpec()


class TransformConfig(ComponentConfig):
    """Base of every ``transforms:`` model: builds a :class:`~cdcflow.core.step.Step`."""

    def build(self, context: BuildContext) -> Step:
        """Build the step (open clients in its ``setup``, on the worker)."""
        raise NotImplementedError


class SinkConfig(ComponentConfig):
    """Base of every ``sinks:`` model: builds a :class:`~cdcflow.core.writer.Writer`."""

    def build(self, context: BuildContext) -> Writer:
        """Build the writer (it connects in ``open``)."""
        raise NotImplementedError


class DeadLetterConfig(ComponentConfig):
    """Base of every ``dead_letter:`` model: builds a dead-letter writer."""

    def build(self, context: BuildContext) -> DeadLetterWriter:
        """Build the dead-letter writer."""
        raise NotImplementedError


class ComponentError(ConfigError):
    """A problem found while building a component, tied to one of its keys.

    The planner prefixes the message with the pipeline file, the key's line and its full path
    (``pipeline.yaml:5: source.path: no file matches ...``).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message


def check_table_patterns(patterns: str | list[str]) -> str | list[str]:
    """Validate table glob patterns (``shop.public.*``); raise ValueError for a bad one.

    Patterns use :mod:`fnmatch` syntax; an empty pattern or an unclosed ``[`` is an error.
    """
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if not pattern:
            raise ValueError("a table pattern must not be empty (use '*' for every table)")
        opened = pattern.rfind("[")
        if opened != -1 and "]" not in pattern[opened + 1 :]:
            raise ValueError(
                f"table pattern {pattern!r} has an unclosed '['; expected a glob such as "
                "'shop.public.*' or 'shop.public.order[s_]*'"
            )
    return patterns
