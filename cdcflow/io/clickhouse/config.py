"""``type: clickhouse``: the YAML model of the ClickHouse sink."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from cdcflow.core.components import BuildContext
from cdcflow.io.clickhouse.writer import ClickHouseWriter
from cdcflow.io.table_sink import ServerTableSinkConfig


class ClickHouseSinkConfig(ServerTableSinkConfig):
    """``type: clickhouse`` — ReplacingMergeTree tables with a version and a deleted flag.

    ``dsn`` is ``clickhouse://user:password@host:9000/database`` (native protocol; kept secret);
    the shared keys are :class:`ServerTableSinkConfig`'s.
    """

    type: Literal["clickhouse"]
    view_suffix: str = Field(default="_current", min_length=1, pattern=r"^[A-Za-z0-9_]+$")

    @model_validator(mode="after")
    def _scheme(self) -> ClickHouseSinkConfig:
        # Checked after the model so the error never echoes the DSN (it may hold a password).
        scheme = urlsplit(self.dsn.get_secret_value()).scheme
        if scheme not in ("clickhouse", "clickhouses"):
            raise ValueError(
                "dsn must be a clickhouse://user:password@host:9000/database URL "
                f"(got scheme {scheme!r})"
            )
        return self

    def build(self, context: BuildContext) -> ClickHouseWriter:
        """Build the writer (no connection is opened here)."""
        return ClickHouseWriter(**self.writer_options(context), view_suffix=self.view_suffix)

