"""The name-to-factory registry that resolves YAML ``type:`` values.

Each entry maps a (kind, type) pair to the import path of a pydantic config model. The model
validates that part of the YAML and builds the engine-neutral component (``build(context)``).
Built-in connectors are listed here by import path so that nothing heavy is imported until a
pipeline names it; third parties add connectors through the ``cdcflow.connectors`` entry-point
group, whose entries are named ``<kind>.<type>`` (e.g. ``sink.elastic``) and point at a model
class.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Literal

from cdcflow.errors import ConfigError

Kind = Literal["source", "transform", "sink", "dead_letter"]

_BUILTINS: dict[tuple[str, str], str] = {
    ("source", "file"): "cdcflow.io.files:FileSourceConfig",
    ("source", "kafka"): "cdcflow.io.kafka.config:KafkaSourceConfig",
    ("transform", "redact"): "cdcflow.transforms.redact:RedactConfig",
    ("transform", "python"): "cdcflow.transforms.python_step:PythonTransformConfig",
    ("sink", "sqlite"): "cdcflow.io.sqlite:SqliteSinkConfig",
    ("sink", "null"): "cdcflow.io.null:NullSinkConfig",
    ("sink", "postgres"): "cdcflow.io.postgres.config:PostgresSinkConfig",
    ("sink", "clickhouse"): "cdcflow.io.clickhouse.config:ClickHouseSinkConfig",
    ("dead_letter", "file"): "cdcflow.io.files:DeadLetterFileConfig",
    ("dead_letter", "kafka"): "cdcflow.io.kafka.dead_letters:DeadLetterKafkaConfig",
}

_extra: dict[tuple[str, str], str] = {}
_entry_points_loaded = False


def register(kind: Kind, type_name: str, model_path: str) -> None:
    """Register a connector or transform model (``"package.module:ClassName"``)."""
    _extra[(kind, type_name)] = model_path


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in metadata.entry_points(group="cdcflow.connectors"):
        kind, _, type_name = entry.name.partition(".")
        if kind in ("source", "transform", "sink", "dead_letter") and type_name:
            _extra.setdefault((kind, type_name), entry.value)


def known_types(kind: Kind) -> list[str]:
    """The type names registered for ``kind``, sorted."""
    _load_entry_points()
    return sorted({t for (k, t) in (*_BUILTINS, *_extra) if k == kind})


def model_for(kind: Kind, type_name: str) -> type:
    """Import and return the config model for ``type_name``; ConfigError when unknown."""
    _load_entry_points()
    path = _extra.get((kind, type_name)) or _BUILTINS.get((kind, type_name))
    if path is None:
        known = ", ".join(known_types(kind)) or f"(none: no {kind.replace('_', ' ')} types exist)"
        raise ConfigError(
            f"unknown {kind.replace('_', ' ')} type {type_name!r}; expected one of: {known}"
        )
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    model = getattr(module, attr)
    assert isinstance(model, type)
    return model
