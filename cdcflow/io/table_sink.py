"""The config base of the table sinks (SQLite, PostgreSQL, ClickHouse).

Every table sink has the same ``name``, ``tables``, ``table_map`` and ``truncate`` keys, with the
same defaults and the same checks (a bad ``tables:`` glob is refused with one message by every
table sink). Sinks that talk to a server add a secret ``dsn``, a ``retry`` policy and a
connection timeout (:class:`ServerTableSinkConfig`). A new table sink derives from one of these
and adds only its own keys; the YAML of the existing sinks is unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from cdcflow.core.components import BuildContext, SinkConfig, check_table_patterns
from cdcflow.io.retry import RetryPolicy

#: What a ``t`` (truncate) event does: empty the table, or nothing.
TruncateMode = Literal["apply", "ignore"]


class TableSinkConfig(SinkConfig):
    """The keys every table sink shares.

    ``name``: the sink's name in the pipeline (positions are stored under it); ``tables``: glob
    patterns of the source tables to write (``shop.public.*``; checked by
    :func:`~cdcflow.core.components.check_table_patterns`); ``table_map``: a source table's
    full name to the target table's name; ``truncate``: ``apply`` (default) or ``ignore``.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    tables: str | list[str] = "*"
    table_map: dict[str, str] = {}
    truncate: TruncateMode = "apply"

    _check_tables = field_validator("tables")(check_table_patterns)

    def writer_options(self, context: BuildContext) -> dict[str, Any]:
        """The shared keyword arguments of the table writers' constructors."""
        return {
            "name": self.name,
            "pipeline": context.pipeline,
            "tables": self.tables,
            "table_map": self.table_map,
            "truncate": self.truncate,
        }


class ServerTableSinkConfig(TableSinkConfig):
    """A table sink on a database server: a secret ``dsn``, ``retry`` and a connect timeout.

    ``retry`` is the transient-error policy (:class:`~cdcflow.io.retry.RetryPolicy`);
    ``connect_timeout_s`` bounds each connection attempt (1 to 600 seconds, default 10).
    """

    dsn: SecretStr
    retry: RetryPolicy = RetryPolicy()
    connect_timeout_s: int = Field(default=10, ge=1, le=600)

    def writer_options(self, context: BuildContext) -> dict[str, Any]:
        """The shared keyword arguments, with the DSN revealed (for the writer only)."""
        return {
            **super().writer_options(context),
            "dsn": self.dsn.get_secret_value(),
            "retry": self.retry,
            "connect_timeout_s": self.connect_timeout_s,
        }
