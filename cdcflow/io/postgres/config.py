"""``type: postgres``: the YAML model of the PostgreSQL sink."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cdcflow.core.components import BuildContext
from cdcflow.io.postgres.sql import Mode
from cdcflow.io.postgres.writer import PostgresWriter
from cdcflow.io.table_sink import ServerTableSinkConfig


class PostgresSinkConfig(ServerTableSinkConfig):
    """``type: postgres`` — write to PostgreSQL (or TimescaleDB) exactly once.

    ``dsn`` is a libpq connection string or URI (``postgresql://user:pass@host:5432/db``), kept
    secret; ``schema`` the target schema (created when missing); ``mode`` ``upsert`` | ``append``
    | ``timescaledb``; the shared keys are :class:`ServerTableSinkConfig`'s.
    """

    type: Literal["postgres"]
    target_schema: str = Field(default="public", alias="schema", min_length=1, max_length=63)
    mode: Mode = "upsert"

    def build(self, context: BuildContext) -> PostgresWriter:
        """Build the writer (no connection is opened here)."""
        return PostgresWriter(
            **self.writer_options(context), schema=self.target_schema, mode=self.mode
        )

