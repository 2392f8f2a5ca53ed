"""Base classes for the config models that build components, and the build context.

Part of the core contract (ARCHITECTURE §1): ``io`` and ``transforms`` build their components
on these classes, so it lives beside ``errors`` and imports nothing above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict

from cdcflow.errors import ConfigError


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
