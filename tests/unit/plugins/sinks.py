"""Plugin-style sinks that lack a capability (named by import path in the capability tests)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cdcflow.core.components import BuildContext, SinkConfig
from cdcflow.core.writer import MIRROR, Capabilities
from cdcflow.io.table_sink import TableSinkConfig
from cdcflow.testing import MemoryWriter


class NoTruncateSinkConfig(TableSinkConfig):
    """``type: no-truncate``: a mirror by key that cannot empty a table."""

    type: Literal["no-truncate"]

    def build(self, context: BuildContext) -> MemoryWriter:
        """A mirror declaring every capability but ``truncate``."""
        return MemoryWriter(
            self.name, truncate=self.truncate, capabilities=MIRROR._replace(truncate=False)
        )


class WebhookSinkConfig(SinkConfig):
    """``type: webhook``: delivers events and keeps no positions; ``idempotent`` says whether
    the receiver deduplicates (by a deterministic event id)."""

    type: Literal["webhook"]
    name: str = Field(min_length=1)
    idempotent: bool = False

    def build(self, context: BuildContext) -> MemoryWriter:
        """A writer without positions, idempotent or not."""
        return MemoryWriter(
            self.name,
            keeps_positions=False,
            capabilities=Capabilities(idempotent=self.idempotent),
        )
