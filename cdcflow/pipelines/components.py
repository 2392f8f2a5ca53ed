"""Base classes for the config models that build components, and the build context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict


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
