"""A sink that discards events (benchmarks and dry runs); it keeps no positions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cdcflow.core.components import BuildContext, SinkConfig
from cdcflow.core.writer import RejectHandler, Writer
from cdcflow.schemas.model import DeadLetter, EventBatch


class NullWriter(Writer):
    """Counts and drops every event."""

    keeps_positions = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.events = 0

    def write(
        self, batch: EventBatch, on_rejected: RejectHandler | None = None
    ) -> list[DeadLetter]:
        """Count the batch's events."""
        self.events += len(batch.events)
        return []


class NullSinkConfig(SinkConfig):
    """``type: null`` — discard events."""

    type: Literal["null"]
    name: str = Field(min_length=1)

    def build(self, context: BuildContext) -> NullWriter:
        """Build the writer."""
        return NullWriter(self.name)
