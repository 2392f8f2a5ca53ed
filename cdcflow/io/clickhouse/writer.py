"""The ClickHouse writer: the client, the positions table, and the write of a batch.

Not transactional: a batch's rows are inserted, then its position (see
:mod:`cdcflow.io.clickhouse`); the row work is in :mod:`.netchange`, the tables in
:mod:`.catalog`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from cdcflow.core.source import PartitionKey
from cdcflow.core.writer import RejectSink, WriteResult, skipped
from cdcflow.errors import MissingDependencyError, missing_extra
from cdcflow.io.clickhouse.catalog import Table
from cdcflow.io.clickhouse.netchange import RowsWriter
from cdcflow.io.clickhouse.sql import (
    DELETED_COLUMN,
    offsets_ddl,
    parse_version,
    positions_sql,
    qualified,
    quote,
)
from cdcflow.io.retry import RetryPolicy, clickhouse_is_transient
from cdcflow.io.sink_common import ServerTableWriter, Target, max_offset, row_count_line
from cdcflow.schemas.model import DeadLetter, EventBatch

if TYPE_CHECKING:
    from clickhouse_driver import Client

log = logging.getLogger("cdcflow.io.clickhouse")


class ClickHouseWriter(RowsWriter, ServerTableWriter):
    """Write change events to ClickHouse ReplacingMergeTree tables (see the module docstring)."""

    def __init__(
        self,
        name: str,
        dsn: str,
        pipeline: str,
        tables: str | Sequence[str] = "*",
        table_map: dict[str, str] | None = None,
        truncate: Literal["apply", "ignore"] = "apply",
        view_suffix: str = "_current",
        retry: RetryPolicy | None = None,
        connect_timeout_s: int = 10,
    ) -> None:
        super().__init__(name, pipeline, tables, table_map, truncate)
        self._dsn = dsn
        self.view_suffix = view_suffix
        self.retry = retry or RetryPolicy()
        self.connect_timeout_s = connect_timeout_s
        self.database = urlsplit(dsn).path.strip("/") or "default"
        self._client: Client | None = None
        self._version: tuple[int, ...] = ()
        self._tables: dict[Target, Table] = {}

    def __repr__(self) -> str:
        return f"ClickHouseWriter(name={self.name!r}, database={self.database!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_tables"] = {}
        return state

    def _namespace(self) -> str:
        return self.database

    @property
    def target(self) -> str:
        """Where the sink writes, without credentials."""
        parts = urlsplit(self._dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 9000}/{self.database}"

    @property
    def server_version(self) -> tuple[int, ...]:
        """The server's version (known after ``open``), e.g. ``(18, 16, 1)``."""
        return self._version

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self) -> Client:
        try:
            from clickhouse_driver import Client
        except ImportError as exc:
            raise missing_extra("clickhouse-driver", "clickhouse", f"sink {self.name!r}") from exc
        if self._client is None:
            # Connect to "default": the target database may not exist yet.
            self._client = Client.from_url(
                urlunsplit(urlsplit(self._dsn)._replace(path="/default"))
            )
            self._client.connection.connect_timeout = self.connect_timeout_s
        return self._client

    def _execute(self, sql: str, params: Any = None, **kwargs: Any) -> Any:
        return self._connect().execute(sql, params, **kwargs)

    def open(self) -> None:
        """Connect, create the database and positions table, read positions and the version."""

        def prepare() -> None:
            self._version = parse_version(str(self._execute("SELECT version()")[0][0]))
            self._execute(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}")
            self._migrate_offsets()
            self._execute(offsets_ddl(self.database))
            self._positions = self._read_positions()

        self._with_retry(prepare, f"sink {self.name!r}: opening {self.target}")

    def _positions_table_exists(self) -> bool:
        exists = self._execute(
            "SELECT count() FROM system.tables WHERE database = %(db)s "
            "AND name = 'cdcflow_offsets'",
            {"db": self.database},
        )
        return bool(exists and exists[0][0])

    def _read_positions(self) -> dict[PartitionKey, int]:
        """The positions of this pipeline and sink: per partition the numerically highest offset."""
        rows = self._execute(
            positions_sql(self.database), {"pipeline": self.pipeline, "sink": self.name}
        )
        where = f"sink {self.name!r}: {self.database}.cdcflow_offsets at {self.target}"
        return {(str(s), str(p)): max_offset(offsets, where) for s, p, offsets in rows}

    def _offset_type(self) -> str | None:
        found = self._execute(
            "SELECT type FROM system.columns WHERE database = %(db)s AND "
            "table = 'cdcflow_offsets' AND name = 'offset'",
            {"db": self.database},
        )
        return str(found[0][0]) if found else None

    def _migrate_offsets(self) -> None:
        """Move an earlier version's positions table (``offset UInt64``) to exact offsets.

        ClickHouse cannot change the type of a table's version column: the highest offset per
        partition is copied into a new table, which takes the old one's place in one
        ``RENAME`` (the old one is then dropped). A crash before the rename leaves the old
        table (the next open starts over); a concurrent migration that won the rename is
        detected and this one's copy dropped. Losing a position written meanwhile would only
        replay a batch, which this sink's versioned rows make harmless.
        """
        found = self._offset_type()
        if found is None or found == "String":
            return
        database = self.database
        suffix = uuid.uuid4().hex[:12]
        staging = qualified(database, f"cdcflow_offsets_new_{suffix}")
        legacy = qualified(database, f"cdcflow_offsets_{found.lower()}_{suffix}")
        current = qualified(database, "cdcflow_offsets")
        self._execute(offsets_ddl(database, f"cdcflow_offsets_new_{suffix}"))
        try:
            self._execute(
                f"INSERT INTO {staging} SELECT pipeline, sink, stream, partition, "
                f"toString(max(toUInt64(offset))), max(updated_at) FROM {current} "
                "GROUP BY pipeline, sink, stream, partition"
            )
            self._execute(f"RENAME TABLE {current} TO {legacy}, {staging} TO {current}")
        except Exception:
            self._execute(f"DROP TABLE IF EXISTS {staging}")
            if self._offset_type() != "String":
                raise
            return  # another writer migrated the table first
        self._execute(f"DROP TABLE IF EXISTS {legacy}")
        log.info("sink %r: migrated %s to exact offsets", self.name, current)

    def _close_connection(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()

    def check(self) -> list[str]:
        """Connectivity and write permission."""
        try:
            readonly = self._execute("SELECT value FROM system.settings WHERE name = 'readonly'")
        except MissingDependencyError as exc:  # a missing package, not a connection problem
            return [str(exc)]  # names the sink
        except Exception as exc:  # noqa: BLE001 - every failure is reported as a problem
            self.close()
            return [f"sink {self.name!r}: cannot reach ClickHouse at {self.target}: {exc}"]
        self.close()
        if readonly and str(readonly[0][0]) not in ("0", ""):
            return [f"sink {self.name!r}: the ClickHouse user is read-only at {self.target}"]
        return []

    def _describe(self) -> list[str]:
        names = [
            r[0]
            for r in self._execute(
                "SELECT name FROM system.tables WHERE database = %(db)s AND "
                "engine = 'ReplacingMergeTree' AND name != 'cdcflow_offsets' ORDER BY name",
                {"db": self.database},
            )
        ]
        lines = [f"sink {self.name!r}: ClickHouse {self.target}"]
        for name in names[:50]:
            count = self._execute(
                f"SELECT count() FROM {qualified(self.database, name)} FINAL "
                f"WHERE {quote(DELETED_COLUMN)} = 0"
            )
            total = count[0][0]
            lines.append(row_count_line(name, total, "current row"))
        return lines

    # -- writing ----------------------------------------------------------------------------

    def write(self, batch: EventBatch, reject: RejectSink | None = None) -> WriteResult:
        """Write one batch, then its position (retried when the failure is transient)."""
        key = batch.partition_key
        committed = self._positions.get(key, -1)
        if batch.last_offset <= committed:
            return skipped()
        self._count_batch()
        groups = self._new_by_target(batch, committed)
        what = self._write_what(batch)
        dead: list[DeadLetter] = self._with_retry(lambda: self._apply(groups), what)
        if dead and reject is not None:
            reject(dead)

        def store() -> None:
            self._execute(
                f"INSERT INTO {qualified(self.database, 'cdcflow_offsets')} "
                "(pipeline, sink, stream, partition, offset, updated_at) VALUES",
                [
                    (
                        self.pipeline,
                        self.name,
                        key[0],
                        key[1],
                        str(batch.last_offset),
                        dt.datetime.now(dt.UTC).replace(microsecond=0),
                    )
                ],
            )

        self._with_retry(store, what)
        self._positions[key] = batch.last_offset
        return WriteResult(sum(len(group) for group in groups.values()) - len(dead), dead)

    def _is_transient(self, error: BaseException) -> bool:
        return clickhouse_is_transient(error)

    def _reset_caches(self) -> None:
        self._tables.clear()



