"""A sink that discards events (benchmarks and dry runs); it keeps no positions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cdcflow.core.components import BuildContext, SinkConfig
from cdcflow.core.writer import Capabilities, RejectSink, Writer, WriteResult
from cdcflow.schemas.model import EventBatch


class NullWriter(Writer):
    """Counts and drops every event: writing a batch twice does what writing it once does."""

    keeps_positions = False
    capabilities = Capabilities(idempotent=True)

    def __init__(self, name: str) -> None:
        self.name = name
        self.events = 0

    def write(self, batch: EventBatch, reject: RejectSink | None = None) -> WriteResult:
        """Count the batch's events (all of them are applied)."""
        self.events += len(batch.events)
        return WriteResult(len(batch.events), [])


class NullSinkConfig(SinkConfig):
    """``type: null`` — discard events."""

    type: Literal["null"]
    name: str = Field(min_length=1)

    def build(self, context: BuildContext) -> NullWriter:
        """Build the writer."""
        return NullWriter(self.name)
