"""ClickHouse: an idempotent sink with exactly-once effect, via clickhouse-driver (native protocol).

Tables
    Each source table lands in ``<database>.<table>`` (``table_map`` overrides, ``tables``
    filters by glob), created as::

        CREATE TABLE db.t (<columns>, _version UInt64, _deleted UInt8)
        ENGINE = ReplacingMergeTree(_version) ORDER BY (<primary key>)

    plus a view ``db.t_current`` (suffix ``view_suffix``) that reads the current rows::

        CREATE VIEW db.t_current AS SELECT <columns>, _version FROM db.t FINAL WHERE _deleted = 0

    ``_version`` is the event's source offset, so a replay rewrites identical versions and
    ``FINAL`` (or a background merge) keeps one row per key: the latest. A delete writes a row
    with ``_deleted = 1``. Columns are typed by :mod:`cdcflow.io.ch_types` (``DateTime64`` where
    the server has it); a column that appears later is added with ``ALTER TABLE ... ADD COLUMN``
    (and the view is re-created).

Writing a batch
    Events at or below the sink's stored position are skipped; within a batch only the last row
    per key is inserted (its version is the highest). Columns the source did not send
    (:attr:`ChangeEvent.unavailable`) are filled from the previous event of the key in the batch,
    or from the stored row (``argMax`` over versions below the batch), else NULL. ``t`` events
    run ``TRUNCATE TABLE`` (``truncate: apply``) or are ignored. One ``INSERT`` per table, then
    the position is inserted into ``cdcflow_offsets`` (a ReplacingMergeTree on the offset):
    positions are written **after** the data, so a crash in between replays the batch, which
    is harmless.

Failures
    Values are checked before sending (integer ranges, Date/DateTime ranges, decimal precision):
    a row that does not fit becomes a dead letter with the reason. Transient errors (network,
    ``TOO_MANY_PARTS``, memory limit, too many queries) are retried with backoff
    (:mod:`cdcflow.io.retry`); after the limit the write raises
    :class:`~cdcflow.errors.TransientSinkError` and the position is not advanced.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator

from cdcflow.core.components import BuildContext
from cdcflow.core.source import PartitionKey
from cdcflow.core.writer import RejectSink, WriteResult, skipped
from cdcflow.errors import MissingDependencyError, SinkError, missing_extra
from cdcflow.io.ch_types import (
    ConvertColumn,
    ch_type,
    ch_type_for_value,
    column_converter,
    converter,
    nullable,
)
from cdcflow.io.retry import RetryPolicy, call_with_retry, clickhouse_is_transient
from cdcflow.io.sink_common import (
    NamespacedTableWriter,
    Target,
    columns_of,
    covers,
    key_columns,
    max_offset,
    no_key_reason,
    row_count_line,
)
from cdcflow.io.table_sink import ServerTableSinkConfig
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch, Op

if TYPE_CHECKING:
    from clickhouse_driver import Client

log = logging.getLogger(__name__)

VERSION_COLUMN = "_version"
DELETED_COLUMN = "_deleted"
_META = (VERSION_COLUMN, DELETED_COLUMN)
_DUPLICATE_COLUMN = 15
_FILL = "\x00fill"  # marks a row whose missing columns are read from the stored row


def quote(identifier: str) -> str:
    """Quote a ClickHouse identifier with backticks."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified(database: str, table: str) -> str:
    """```db`.`table```."""
    return f"{quote(database)}.{quote(table)}"


def create_table_sql(target: str, columns: Sequence[tuple[str, str]], key: Sequence[str]) -> str:
    """The ReplacingMergeTree DDL: ``columns`` are ``(name, type)``, key columns not Nullable."""
    parts = [f"{quote(name)} {sql_type}" for name, sql_type in columns]
    parts += [f"{quote(VERSION_COLUMN)} UInt64", f"{quote(DELETED_COLUMN)} UInt8"]
    order = ", ".join(quote(c) for c in key)
    return (
        f"CREATE TABLE IF NOT EXISTS {target} (" + ", ".join(parts) + ") "
        f"ENGINE = ReplacingMergeTree({quote(VERSION_COLUMN)}) ORDER BY ({order})"
    )


def view_sql(view: str, target: str, columns: Sequence[str]) -> str:
    """The view of current rows: ``FINAL`` and not deleted."""
    selected = ", ".join(quote(c) for c in (*columns, VERSION_COLUMN))
    return (
        f"CREATE VIEW IF NOT EXISTS {view} AS SELECT {selected} FROM {target} FINAL "
        f"WHERE {quote(DELETED_COLUMN)} = 0"
    )


def offsets_ddl(database: str, table: str = "cdcflow_offsets") -> str:
    """The positions table: one row per write; the numerically highest offset is the position.

    Offsets are exact decimal text (``String``: no ClickHouse number type holds the 129 digits
    of a Kinesis sequence number, and ``Decimal`` stops at 76). The engine keeps the last row
    written per partition when parts merge (a writer only ever stores a higher offset than the
    one it read); readers take the numeric maximum of the rows not yet merged, in Python
    (:func:`positions_sql`), never the lexicographic one (``"9" > "10"``).
    """
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(database, table)} ("
        "pipeline String, sink String, stream String, partition String, "
        "offset String, updated_at DateTime) "
        "ENGINE = ReplacingMergeTree ORDER BY (pipeline, sink, stream, partition)"
    )


def positions_sql(database: str) -> str:
    """The distinct stored offsets per partition of one pipeline's sink (params: pipeline, sink).

    The position is the numeric maximum of each row's offsets (:func:`max_offset`): works on
    this version's ``String`` offsets and on an earlier version's ``UInt64`` ones.
    """
    return (
        "SELECT stream, partition, groupUniqArray(toString(offset)) FROM "
        f"{qualified(database, 'cdcflow_offsets')} "
        "WHERE pipeline = %(pipeline)s AND sink = %(sink)s GROUP BY stream, partition"
    )


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` -> ``(18, 16, 1)`` (non-numeric parts end the tuple)."""
    parts: list[int] = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


class _Table:
    """What the writer knows about one target table."""

    def __init__(self, database: str, name: str, columns: dict[str, str]) -> None:
        self.database = database
        self.name = name
        self.columns = columns  # name -> ClickHouse type, in table order
        self.sql_name = qualified(database, name)
        self.schemas: set[str] = set()  # schema fingerprints whose columns all exist
        self.converters: dict[str, Callable[[Any], Any]] = {
            c: converter(t) for c, t in columns.items()
        }
        self.column_converters: dict[str, ConvertColumn] = {
            c: column_converter(t) for c, t in columns.items()
        }


class _Pending:
    """Rows of one table between truncates: the last row per key, with its events."""

    def __init__(self, truncate_first: bool) -> None:
        self.truncate_first = truncate_first
        self.rows: dict[tuple[Any, ...], tuple[dict[str, Any], ChangeEvent]] = {}


class ClickHouseWriter(NamespacedTableWriter):
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
        self._tables: dict[Target, _Table] = {}

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

    def stored_positions(self) -> dict[PartitionKey, int]:
        """The stored positions, creating nothing: no positions table means none."""

        def read() -> dict[PartitionKey, int]:
            exists = self._execute(
                "SELECT count() FROM system.tables WHERE database = %(db)s "
                "AND name = 'cdcflow_offsets'",
                {"db": self.database},
            )
            if not exists or not exists[0][0]:
                return {}
            return self._read_positions()

        try:
            result: dict[PartitionKey, int] = self._with_retry(
                read, f"sink {self.name!r}: reading positions at {self.target}"
            )
            return result
        finally:
            self.close()

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

    def close(self) -> None:
        """Disconnect."""
        if self._client is not None:
            try:
                self._client.disconnect()
            finally:
                self._client = None
        self._tables.clear()

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

    def describe(self) -> list[str]:
        """Current row counts per table (``FINAL``, not deleted)."""
        result: list[str] = self._with_retry(self._describe, f"sink {self.name!r}: describe")
        return result

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

    def _with_retry(self, operation: Callable[[], Any], what: str) -> Any:
        return call_with_retry(
            operation, clickhouse_is_transient, self.retry, what, on_retry=self._reset,
            streaming=self.streaming,
        )

    def _reset(self, _error: BaseException) -> None:
        client, self._client = self._client, None
        self._tables.clear()
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # the connection is broken anyway
                log.debug("disconnecting a broken client failed", exc_info=True)

    def _apply(self, groups: dict[Target, list[ChangeEvent]]) -> list[DeadLetter]:
        """Insert the rows of each target's events (idempotent: safe to run again)."""
        dead: list[DeadLetter] = []
        for target, table_events in groups.items():
            dead.extend(self._apply_table(target, table_events))
        return dead

    def _apply_table(self, target: Target, events: list[ChangeEvent]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        rows = [e for e in events if e.op is not Op.TRUNCATE]
        keys = key_columns(rows)
        table = self._known(target)
        if rows:
            if table is None and not keys:
                problem = SinkError(no_key_reason(rows[0].table))
                return [self._dead(e, problem) for e in rows]
            table = self._ensure_table(target, rows, keys)
        if table is None:
            return []
        segments = [_Pending(False)]
        for event in events:
            if event.op is Op.TRUNCATE:
                if self.truncate == "apply":
                    segments.append(_Pending(True))
                continue
            try:
                key, row = self._row(event, table, keys)
            except (SinkError, TypeError, ValueError) as exc:
                dead.append(self._dead(event, exc))
                continue
            segment = segments[-1]
            previous = segment.rows.get(key)
            if previous is not None and not previous[0][DELETED_COLUMN]:
                earlier = previous[0]
                merged = {c: v for c, v in earlier.items() if c not in _META}
                merged.update(row)
                row = merged
            elif previous is None and not segment.truncate_first and event.op is not Op.DELETE:
                # rows carry only table columns (ensured above): fewer means some are missing
                row[_FILL] = len(row) < len(table.columns)
            segment.rows[key] = (row, event)
        for segment in segments:
            if segment.truncate_first:
                self._execute(f"TRUNCATE TABLE {table.sql_name}")
            if segment.rows:
                self._fill_unavailable(table, keys, segment, events[0].position.offset)
                dead.extend(self._insert(table, segment))
        return dead

    def _row(
        self, event: ChangeEvent, table: _Table, key_columns: tuple[str, ...]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        deleted = event.op is Op.DELETE
        source = event.before if deleted else event.after
        if source is None and deleted:
            source = event.key
        if source is None:
            raise SinkError(f"{event.op.value!r} event for {event.table} has no row image")
        event_key = event.key or source
        key: list[Any] = []
        for column in key_columns:
            value = event_key.get(column)
            if value is None:
                value = source.get(column)
            if value is None:
                raise SinkError(f"key column {column!r} is missing or null")
            key.append(value)
        row = {} if deleted else dict(source)
        row.update(zip(key_columns, key, strict=True))
        row[VERSION_COLUMN] = event.position.offset
        row[DELETED_COLUMN] = 1 if deleted else 0
        return tuple(key), row

    def _fill_unavailable(
        self, table: _Table, key_columns: tuple[str, ...], segment: _Pending, below: int
    ) -> None:
        """Fill unavailable columns from the stored rows (versions below this batch)."""
        wanted: dict[tuple[Any, ...], dict[str, Any]] = {}
        for key, (row, _event) in segment.rows.items():
            if row.pop(_FILL, False):
                wanted[key] = row
        if not wanted:
            return
        fill = [c for c in table.columns if c not in _META and c not in key_columns]
        if not fill:
            return
        keys_sql = ", ".join(quote(c) for c in key_columns)
        keys_param: Any = tuple(k[0] for k in wanted) if len(key_columns) == 1 else tuple(wanted)
        selected = ", ".join(quote(c) for c in (*fill, DELETED_COLUMN))
        found = self._execute(
            f"SELECT {keys_sql}, argMax(tuple({selected}), {quote(VERSION_COLUMN)}) "
            f"FROM {table.sql_name} WHERE {quote(VERSION_COLUMN)} < %(below)s AND "
            f"({keys_sql}) IN %(keys)s GROUP BY {keys_sql}",
            {"below": below, "keys": keys_param},
        )
        for record in found:
            key = tuple(record[: len(key_columns)])
            values = record[len(key_columns)]
            target = wanted.get(key)
            if target is None or values[-1]:
                continue  # unknown key, or the stored row is deleted: stays NULL
            for column, value in zip(fill, values[:-1], strict=True):
                if column not in target:
                    target[column] = value

    def _insert(self, table: _Table, segment: _Pending) -> list[DeadLetter]:
        """Insert a segment's rows in one columnar block; rows that do not fit are dead letters."""
        columns = list(table.columns)
        column_sql = ", ".join(quote(c) for c in columns)
        sql = f"INSERT INTO {table.sql_name} ({column_sql}) VALUES"
        rows = list(segment.rows.values())
        try:
            data = [table.column_converters[c]([row.get(c) for row, _ in rows]) for c in columns]
        except (TypeError, ValueError, ArithmeticError):
            return self._insert_checked(table, rows, columns, sql)
        self._execute(sql, data, columnar=True)
        return []

    def _insert_checked(
        self,
        table: _Table,
        rows: list[tuple[dict[str, Any], ChangeEvent]],
        columns: list[str],
        sql: str,
    ) -> list[DeadLetter]:
        """Convert row by row, dead-lettering the rows that do not fit; insert the rest."""
        dead: list[DeadLetter] = []
        values: list[tuple[Any, ...]] = []
        for row, event in rows:
            try:
                values.append(tuple(table.converters[c](row.get(c)) for c in columns))
            except (TypeError, ValueError, ArithmeticError) as exc:
                column = next((c for c in columns if _fails(table.converters[c], row.get(c))), None)
                reason = f"column {column!r}: {exc}" if column else str(exc)
                dead.append(self._dead(event, ValueError(reason)))
        if values:
            self._execute(sql, values)
        return dead

    # -- tables ---------------------------------------------------------------------------------

    def _known(self, target: Target) -> _Table | None:
        table = self._tables.get(target)
        if table is not None:
            return table
        database, name = target
        rows = self._execute(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": database, "t": name},
        )
        if not rows:
            return None
        table = _Table(database, name, {str(n): str(t) for n, t in rows})
        self._tables[target] = table
        return table

    def _ensure_table(
        self, target: Target, events: list[ChangeEvent], key: tuple[str, ...]
    ) -> _Table:
        table = self._known(target)
        if table is not None and covers(table, events, with_keys=True):
            return table
        wanted = columns_of(
            events,
            lambda column: ch_type(column, self._version),
            lambda value: ch_type_for_value(value, self._version),
            all_keys=True,
        )
        if table is not None and all(c in table.columns for c in wanted):
            return table
        database, name = target
        view = qualified(database, name + self.view_suffix)
        if table is None:
            for column in key:
                wanted.setdefault(column, "String")
            columns = [
                (c, t if c in key else nullable(t)) for c, t in wanted.items() if c not in _META
            ]
            self._execute(f"CREATE DATABASE IF NOT EXISTS {quote(database)}")
            self._execute(create_table_sql(qualified(database, name), columns, key))
            log.info("sink %r: created table %s.%s", self.name, database, name)
        else:
            for column, sql_type in wanted.items():
                if column not in table.columns and column not in _META:
                    try:
                        self._execute(
                            f"ALTER TABLE {table.sql_name} ADD COLUMN "
                            f"{quote(column)} {nullable(sql_type)}"
                        )
                    except Exception as exc:
                        # 18.16 has no ADD COLUMN IF NOT EXISTS: a concurrent writer won.
                        if getattr(exc, "code", None) != _DUPLICATE_COLUMN:
                            raise
                    log.info("sink %r: added column %s to %s.%s", self.name, column, database, name)
            self._execute(f"DROP TABLE IF EXISTS {view}")
        self._tables.pop(target, None)
        table = self._known(target)
        assert table is not None
        data_columns = [c for c in table.columns if c not in _META]
        self._execute(view_sql(view, table.sql_name, data_columns))
        return table


def _fails(convert: Callable[[Any], Any], value: Any) -> bool:
    try:
        convert(value)
    except (TypeError, ValueError, ArithmeticError):
        return True
    return False


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
        return ClickHouseWriter(
            name=self.name,
            dsn=self.dsn.get_secret_value(),
            pipeline=context.pipeline,
            tables=self.tables,
            table_map=self.table_map,
            truncate=self.truncate,
            view_suffix=self.view_suffix,
            retry=self.retry,
            connect_timeout_s=self.connect_timeout_s,
        )
