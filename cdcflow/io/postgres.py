"""PostgreSQL (and TimescaleDB): a transactional sink with exactly-once effect, via psycopg 3.

Every batch is written in **one transaction** that also stores the batch's position in
``<schema>.cdcflow_offsets (pipeline, sink, stream, partition, offset)``. The new offset is
written, and the row locked, by the first statement of that transaction, on condition that the
stored offset is the one the writer last saw (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``);
when it is not, the stored offset is read under the lock and events at or below it are skipped,
so a replayed batch (after a crash, a retry, a second writer or a restart from an older
position) changes nothing.

Modes (``mode:``)
    ``upsert`` (default): the target mirrors the source. ``c``/``u``/``r`` upsert by primary key,
    ``d`` deletes, ``t`` truncates (``truncate: apply``) or is ignored (``truncate: ignore``).
    Columns in :attr:`ChangeEvent.unavailable` keep their stored value (NULL for a row the sink
    has never seen). A batch is first collapsed to the net change per key (in event order), the
    rows are ``COPY``'d (binary where every value binds exactly, else text:
    :func:`~cdcflow.io.pg_types.binary_copy_types`) into a temporary staging table, then one
    ``DELETE`` (``WHERE k = ANY(...)`` for a one-column key, else ``USING`` a staging table of
    the keys) and one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` per distinct column set
    apply them.
    ``append``: a history table; every event is one row holding the row image (``after``, or
    ``before`` for deletes) plus ``_cdc_op``, ``_cdc_stream``, ``_cdc_partition``, ``_cdc_offset``
    and ``_cdc_source_ts`` (the source's commit time). Truncates add a ``t`` row (``apply``).
    ``timescaledb``: like ``append``, in a hypertable partitioned on ``_cdc_source_ts``
    (``create_hypertable`` when the table is created); events without a source timestamp are
    rejected. The TimescaleDB extension must exist on the server (``cdcflow validate`` says so).

Tables
    A source table ``db.schema.table`` lands in ``<schema>.<table>`` unless ``table_map`` maps its
    full name to another name (``name`` or ``schema.name``); ``tables`` filters source tables by
    glob. A missing table is created from the event schema (types: :mod:`cdcflow.io.pg_types`),
    with the message key as primary key (upsert mode); a column that appears later is added with
    ``ALTER TABLE ... ADD COLUMN``.

Failures
    Rows PostgreSQL rejects (value out of range, type mismatch, NOT NULL...) make the batch fall
    back to one statement per event, each in a savepoint; the rejected events go to the dead
    letters with the server's reason, the rest is committed with the position. Transient errors
    (lost connection, deadlock, serialization failure, server shutting down) reconnect and retry
    the whole batch with backoff (:mod:`cdcflow.io.retry`); after the limit the write raises
    :class:`~cdcflow.errors.TransientSinkError` with nothing of that batch committed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field

from cdcflow.core.components import BuildContext
from cdcflow.core.source import PartitionKey
from cdcflow.errors import MissingDependencyError, SinkError, missing_extra
from cdcflow.io.pg_types import binary_copy_types, copy_value, pg_type, pg_type_for_value
from cdcflow.io.retry import RetryPolicy, call_with_retry, postgres_is_transient
from cdcflow.io.sink_common import (
    APPEND,
    NamespacedTableWriter,
    Target,
    TransactionalTableWriter,
    columns_of,
    covers,
    key_columns,
    no_key_reason,
    row_count_line,
    stored_offset,
)
from cdcflow.io.table_sink import ServerTableSinkConfig
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch, Op

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

Mode = Literal["upsert", "append", "timescaledb"]

#: Metadata columns of append / timescaledb tables, with their types.
HISTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_cdc_op", "text NOT NULL"),
    ("_cdc_stream", "text NOT NULL"),
    ("_cdc_partition", "text NOT NULL"),
    ("_cdc_offset", "bigint NOT NULL"),
    ("_cdc_source_ts", "timestamptz"),
)
_HISTORY_NAMES = tuple(name for name, _ in HISTORY_COLUMNS)
#: Value types COPY sends as they are (anything else goes through :func:`copy_value`).
_PLAIN = frozenset(
    {str, int, float, bool, type(None), Decimal, dt.datetime, dt.date, dt.time, bytes}
)
_EMPTY: dict[str, Any] = {}
_MISSING: Any = object()
_UTC = dt.UTC


def quote(identifier: str) -> str:
    """Quote an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``."""
    return f"{quote(schema)}.{quote(table)}"


#: The type of ``cdcflow_offsets."offset"``: exact integers of any size up to 1000 digits
#: (Kinesis sequence numbers have up to 129), compared numerically by the server.
OFFSET_TYPE = "numeric(1000,0)"


def offsets_ddl(schema: str) -> str:
    """The DDL of the positions table in ``schema``."""
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(schema, 'cdcflow_offsets')} ("
        "pipeline text NOT NULL, sink text NOT NULL, stream text NOT NULL, "
        f'partition text NOT NULL, "offset" {OFFSET_TYPE} NOT NULL, '
        "updated_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (pipeline, sink, stream, partition))"
    )


def offset_type_sql() -> str:
    """The query of ``"offset"``'s type in a positions table (param: the table's name)."""
    return (
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = 'offset' AND NOT attisdropped"
    )


def migrate_offsets_sql(table: str) -> str:
    """Widen the ``bigint`` offsets of an earlier version's positions table, in place.

    Every stored value converts exactly; the table is rewritten under an exclusive lock (it
    holds one row per partition).
    """
    return f'ALTER TABLE {table} ALTER COLUMN "offset" TYPE {OFFSET_TYPE}'


def upsert_sql(target: str, stage: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT ... SELECT`` from a staging table, updating the non-key ``columns`` on conflict."""
    column_sql = ", ".join(quote(c) for c in columns)
    updates = [c for c in columns if c not in key]
    conflict = ", ".join(quote(c) for c in key)
    if updates:
        action = "DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
    else:
        action = "DO NOTHING"
    return (
        f"INSERT INTO {target} ({column_sql}) SELECT {column_sql} FROM {stage} "
        f"ON CONFLICT ({conflict}) {action}"
    )


def delete_sql(target: str, stage: str, key: Sequence[str]) -> str:
    """``DELETE`` the rows whose keys are in a staging table."""
    match = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in key)
    return f"DELETE FROM {target} AS t USING {stage} AS s WHERE {match}"


def create_table_sql(
    target: str, columns: Sequence[tuple[str, str]], key: Sequence[str] | None
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the given ``(name, type)`` columns and primary key."""
    parts = [f"{quote(name)} {sql_type}" for name, sql_type in columns]
    if key:
        parts.append("PRIMARY KEY (" + ", ".join(quote(c) for c in key) + ")")
    return f"CREATE TABLE IF NOT EXISTS {target} (" + ", ".join(parts) + ")"


def hypertable_sql() -> str:
    """The call that makes a history table a TimescaleDB hypertable (params: table, column)."""
    return "SELECT create_hypertable(%s::regclass, %s::name, if_not_exists => TRUE)"


class _Table:
    """What the writer knows about one target table."""

    def __init__(self, schema: str, name: str, columns: dict[str, str], key: tuple[str, ...]):
        self.schema = schema
        self.name = name
        self.columns = columns  # name -> SQL type, in table order
        self.key = key
        self.sql_name = qualified(schema, name)
        self.schemas: set[str] = set()  # schema fingerprints whose columns all exist


def dsn_target(dsn: str) -> str:
    """``host:port/dbname`` of a libpq DSN (URL or ``key=value`` form), never its credentials.

    Parsed by psycopg when it is installed, else by a small parser of the two forms, so that a
    missing psycopg is not reported as a bad DSN. ``<unparsable dsn>`` when neither can read it
    (the DSN itself is never echoed: it may hold a password).
    """
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        info = _split_dsn(dsn)
    else:
        try:
            info = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        except Exception:  # noqa: BLE001 - never echo an unparsable DSN (it may hold a secret)
            info = None
    if info is None:
        return "<unparsable dsn>"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _split_dsn(dsn: str) -> dict[str, str] | None:
    """host, port and dbname of a DSN without psycopg (None when it is not a DSN)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        try:
            url = urlsplit(dsn)
            port = url.port
        except ValueError:
            return None
        info = {"dbname": unquote(url.path.lstrip("/"))}
        if url.hostname:
            info["host"] = url.hostname
        if port is not None:
            info["port"] = str(port)
        return info
    pairs = [token.partition("=") for token in dsn.split()]
    if not pairs or any(not sep or not key for key, sep, _ in pairs):
        return None
    return {key: value.strip("'") for key, _, value in pairs if key in ("host", "port", "dbname")}


class _RowProblem(Exception):
    """An event that cannot be written (no key, no row image); it becomes a dead letter."""


class PostgresWriter(NamespacedTableWriter, TransactionalTableWriter):
    """Write change events to PostgreSQL exactly once (see the module docstring)."""

    def __init__(
        self,
        name: str,
        dsn: str,
        pipeline: str,
        tables: str | Sequence[str] = "*",
        schema: str = "public",
        table_map: dict[str, str] | None = None,
        truncate: Literal["apply", "ignore"] = "apply",
        mode: Mode = "upsert",
        retry: RetryPolicy | None = None,
        connect_timeout_s: int = 10,
    ) -> None:
        if mode not in ("upsert", "append", "timescaledb"):
            raise ValueError(f"mode must be upsert, append or timescaledb (got {mode!r})")
        super().__init__(name, pipeline, tables, table_map, truncate)
        self._dsn = dsn
        self.schema = schema
        self.mode = mode
        if mode != "upsert":
            self.capabilities = APPEND  # a history table: appends, never upserts
        self.retry = retry or RetryPolicy()
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._tables: dict[Target, _Table] = {}
        self._stages: set[str] = set()
        self._offsets = qualified(schema, "cdcflow_offsets")

    def __repr__(self) -> str:
        return f"PostgresWriter(name={self.name!r}, schema={self.schema!r}, mode={self.mode!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_conn"] = None
        state["_tables"] = {}
        state["_stages"] = set()
        return state

    def _namespace(self) -> str:
        return self.schema

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """Where the sink writes, without credentials (``host:port/dbname``)."""
        return dsn_target(self._dsn)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
        except ImportError as exc:
            raise missing_extra("psycopg", "postgres", f"sink {self.name!r}") from exc
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=self.connect_timeout_s,
            application_name=f"cdcflow:{self.pipeline}:{self.name}"[:63],
        )
        self._stages.clear()
        return self._conn

    def open(self) -> None:
        """Connect, create the schema and positions table, and read the stored positions."""

        def prepare() -> None:
            conn = self._connect()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdcflow_offsets'))")
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
                conn.execute(offsets_ddl(self.schema))
                self._migrate_offsets(conn)
            if self.mode == "timescaledb":
                self._ensure_timescale(conn)
            self._positions = self._read_positions(conn)

        self._with_retry(prepare, f"sink {self.name!r}: opening {self.target}")

    def stored_positions(self) -> dict[PartitionKey, int]:
        """The stored positions, creating nothing: no positions table means none."""

        def read() -> dict[PartitionKey, int]:
            conn = self._connect()
            found = conn.execute("SELECT to_regclass(%s)", (self._offsets,)).fetchone()
            if not found or found[0] is None:
                return {}
            return self._read_positions(conn)

        try:
            result: dict[PartitionKey, int] = self._with_retry(
                read, f"sink {self.name!r}: reading positions at {self.target}"
            )
            return result
        finally:
            self.close()

    def _read_positions(self, conn: psycopg.Connection[Any]) -> dict[PartitionKey, int]:
        """The stored positions of this pipeline and sink, offsets exact (numeric or bigint)."""
        rows = conn.execute(
            f'SELECT stream, partition, "offset" FROM {self._offsets} '
            "WHERE pipeline = %s AND sink = %s",
            (self.pipeline, self.name),
        ).fetchall()
        where = f"sink {self.name!r}: {self._offsets} at {self.target}"
        return {(str(s), str(p)): stored_offset(o, where) for s, p, o in rows}

    def _migrate_offsets(self, conn: psycopg.Connection[Any]) -> None:
        """Widen an earlier version's ``bigint`` offsets in place (inside ``open``'s lock)."""
        found = conn.execute(offset_type_sql(), (self._offsets,)).fetchone()
        if found is None or str(found[0]).startswith("numeric"):
            return
        try:
            with conn.transaction():
                conn.execute(migrate_offsets_sql(self._offsets))
        except Exception as exc:
            if postgres_is_transient(exc):
                raise
            raise SinkError(
                f"sink {self.name!r}: cannot widen {self._offsets}.offset ({found[0]}) to "
                f"{OFFSET_TYPE} at {self.target}: {exc}; the table's owner can run: "
                f"{migrate_offsets_sql(self._offsets)}"
            ) from exc
        log.info("sink %r: migrated %s to exact offsets", self.name, self._offsets)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        self._tables.clear()
        self._stages.clear()

    def _timescale_status(self, conn: psycopg.Connection[Any]) -> str:
        """``installed``, ``available`` (can be created) or ``missing``."""
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'), "
            "(SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb')"
        ).fetchone()
        assert row is not None
        if row[0]:
            return "installed"
        return "available" if row[1] else "missing"

    def _timescale_problem(self) -> str:
        return (
            f"sink {self.name!r}: mode 'timescaledb' needs the TimescaleDB extension, but the "
            f"server at {self.target} does not have it (no 'timescaledb' in "
            "pg_available_extensions); install TimescaleDB on the server or use mode: append"
        )

    def _ensure_timescale(self, conn: psycopg.Connection[Any]) -> None:
        status = self._timescale_status(conn)
        if status == "missing":
            raise SinkError(self._timescale_problem())
        if status == "available":
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except Exception as exc:
                if postgres_is_transient(exc):
                    raise
                raise SinkError(
                    f"sink {self.name!r}: cannot create the timescaledb extension: {exc}"
                ) from exc

    def check(self) -> list[str]:
        """Connectivity, permission to create tables, and TimescaleDB when that mode is used."""
        try:
            conn = self._connect()
        except MissingDependencyError as exc:  # a missing package, not a connection problem
            return [str(exc)]  # names the sink
        except Exception as exc:  # noqa: BLE001 - every failure is reported as a problem
            return [f"sink {self.name!r}: cannot connect to PostgreSQL at {self.target}: {exc}"]
        problems: list[str] = []
        try:
            row = conn.execute(
                "SELECT CASE WHEN to_regnamespace(%s) IS NULL "
                "THEN has_database_privilege(current_database(), 'CREATE') "
                "ELSE has_schema_privilege(%s, 'CREATE') END",
                (quote(self.schema), self.schema),
            ).fetchone()
            if not (row and row[0]):
                problems.append(
                    f"sink {self.name!r}: no permission to create tables in schema "
                    f"{self.schema!r} at {self.target}"
                )
            if self.mode == "timescaledb" and self._timescale_status(conn) == "missing":
                problems.append(self._timescale_problem())
        except Exception as exc:  # noqa: BLE001
            problems.append(f"sink {self.name!r}: checking {self.target} failed: {exc}")
        finally:
            self.close()
        return problems

    def describe(self) -> list[str]:
        """Row counts of the tables in the target schema."""
        result: list[str] = self._with_retry(self._describe, f"sink {self.name!r}: describe")
        return result

    def _describe(self) -> list[str]:
        conn = self._connect()
        names = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname <> "
                "'cdcflow_offsets' ORDER BY c.relname LIMIT 50",
                (self.schema,),
            ).fetchall()
        ]
        lines = [f"sink {self.name!r}: PostgreSQL {self.target} schema {self.schema} ({self.mode})"]
        for name in names:
            count = conn.execute(f"SELECT count(*) FROM {qualified(self.schema, name)}").fetchone()
            total = count[0] if count else 0
            lines.append(row_count_line(name, total))
        return lines

    # -- writing ----------------------------------------------------------------------------

    def _with_retry(self, operation: Any, what: str) -> Any:
        return call_with_retry(
            operation, postgres_is_transient, self.retry, what, on_retry=self._reset,
            streaming=self.streaming,
        )

    def _reset(self, _error: BaseException) -> None:
        """Drop the connection and everything cached about the session."""
        conn, self._conn = self._conn, None
        self._tables.clear()
        self._stages.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # the connection is broken anyway
                log.debug("closing a broken connection failed", exc_info=True)

    # Hooks of the transactional template (TransactionalTableWriter.write): the whole
    # transaction is retried on transient failures, on a new connection.

    def _attempt(self, operation: Callable[[], Any], what: str) -> Any:
        return self._with_retry(operation, what)

    def _begin(self) -> None:
        self._connect().execute("BEGIN")

    def _apply_batch(self, batch: EventBatch, committed: int) -> tuple[int, list[DeadLetter]]:
        groups = self._new_by_target(batch, committed)
        taken = sum(len(group) for group in groups.values())
        return taken, self._apply(self._require(), groups)

    def _store_position(self, key: PartitionKey, offset: int) -> None:
        """Nothing: :meth:`_claim_position` stored it as the transaction's first statement."""

    def _commit(self) -> None:
        self._require().execute("COMMIT")

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return  # a lost connection rolled the transaction back
        try:
            conn.execute("ROLLBACK")
        except Exception:  # the original failure matters, not this one
            log.debug("rolling back failed", exc_info=True)

    def _reset_caches(self) -> None:
        self._tables.clear()
        self._stages.clear()

    def _require(self) -> psycopg.Connection[Any]:
        conn = self._conn
        assert conn is not None, "the transaction's connection"
        return conn

    def _claim_position(self, key: PartitionKey, offset: int) -> int:
        """Store ``offset`` as ``key``'s position if the stored one is the cached one.

        Returns the offset that was stored before this transaction: events at or below it are
        already applied. The first statement of the batch's transaction, so the position and
        the rows commit (or roll back) together.

        The guard against a second writer of the same partition (another process, a replay
        after a lost commit acknowledgement) is the one ``SELECT ... FOR UPDATE`` gave, in one
        round trip instead of a read and a write: ``INSERT ... ON CONFLICT DO UPDATE`` locks
        the stored row (waiting for a concurrent writer's commit, then re-reading its latest
        version) *before* it evaluates ``WHERE "offset" = <cached>``, and the row stays locked
        to the end of the transaction even when the ``WHERE`` fails. So either the stored
        position is the one this writer cached (the common case: it is now ``offset``, and
        nobody else can move it until we commit), or it moved: then it is read under that
        lock, and only the events after it are applied (a second ``UPDATE`` stores ``offset``).
        A row missing although a position is cached (the positions were reset) counts as -1.
        """
        conn = self._require()
        expected = self._positions.get(key, -1)
        params = (self.pipeline, self.name, key[0], key[1])
        row = conn.execute(
            f'INSERT INTO {self._offsets} AS o (pipeline, sink, stream, partition, "offset") '
            "VALUES (%s, %s, %s, %s, %s) "
            'ON CONFLICT (pipeline, sink, stream, partition) DO UPDATE SET "offset" = '
            'EXCLUDED."offset", updated_at = now() WHERE o."offset" = %s '
            "RETURNING o.xmax = 0",
            (*params, offset, expected),
        ).fetchone()
        if row is not None:
            inserted = bool(row[0])
            return -1 if inserted else expected
        stored = conn.execute(
            f'SELECT "offset" FROM {self._offsets} WHERE pipeline = %s AND sink = %s '
            "AND stream = %s AND partition = %s",
            params,
        ).fetchone()
        assert stored is not None  # locked by the INSERT above
        committed = stored_offset(stored[0], f"sink {self.name!r}: {self._offsets}")
        if offset > committed:
            conn.execute(
                f'UPDATE {self._offsets} SET "offset" = %s, updated_at = now() '
                "WHERE pipeline = %s AND sink = %s AND stream = %s AND partition = %s",
                (offset, *params),
            )
        return committed

    def _apply(
        self, conn: psycopg.Connection[Any], groups: dict[Target, list[ChangeEvent]]
    ) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        for target, table_events in groups.items():
            if self.mode == "upsert":
                dead.extend(self._apply_upsert(conn, target, table_events))
            else:
                dead.extend(self._apply_append(conn, target, table_events))
        return dead

    # -- upsert mode --------------------------------------------------------------------------

    def _apply_upsert(
        self, conn: psycopg.Connection[Any], target: Target, events: list[ChangeEvent]
    ) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        rows = [e for e in events if e.op is not Op.TRUNCATE]
        table = self._known(conn, target)
        if rows:
            try:
                table = self._ensure_table(conn, target, rows)
            except _RowProblem as exc:
                return [self._dead(e, exc) for e in events]
        if table is None:
            return []  # only truncates of a table that does not exist
        if not table.key:
            problem = _RowProblem(
                f"target table {table.schema}.{table.name} has no primary key; upsert mode "
                "needs one (add it, or use mode: append)"
            )
            return [self._dead(e, problem) for e in events]
        truncate_first = False
        # The net change per key, in one pass: key -> final row (None: ends deleted). Keys of a
        # single-column primary key are the bare value, else tuples in table-key order.
        # ``resets``: keys deleted and then written again (delete the stored row first).
        states: dict[Any, dict[str, Any] | None] = {}
        resets: set[Any] = set()
        unusable: list[ChangeEvent] = []
        single = table.key[0] if len(table.key) == 1 else None
        plain = _PLAIN.issuperset
        delete, truncate = Op.DELETE, Op.TRUNCATE
        get = states.get
        missing = _MISSING
        apply_truncate = self.truncate == "apply"
        for event in events:
            op = event.op
            if op is truncate:
                if apply_truncate:
                    truncate_first = True
                    states.clear()
                    resets.clear()
                continue
            row = event.after
            key: Any = None
            if single is not None and op is not delete and row is not None:
                key = row.get(single)
                if key is not None and not plain(map(type, row.values())):
                    key = None
            if key is None:  # the general path: deletes, composite keys, conversions
                try:
                    key_values, row = self._prepare(event, table)
                except (_RowProblem, TypeError, ValueError) as exc:
                    dead.append(self._dead(event, exc))
                    unusable.append(event)
                    continue
                key = key_values[0] if single is not None else key_values
            if op is delete:
                states[key] = None
                resets.discard(key)
                continue
            previous = get(key, missing)
            if previous is missing:
                states[key] = row
            elif previous is None:
                states[key] = row
                resets.add(key)
            elif row is not None:
                states[key] = {**previous, **row}
        try:
            with conn.transaction():
                self._upsert_fast(conn, table, states, resets, truncate_first)
        except Exception as exc:
            if not _is_row_error(exc):
                raise
            self._stages.clear()
            log.info("sink %r: rows rejected in %s, row by row: %s", self.name, table.name, exc)
            rejected = {id(event) for event in unusable}
            remaining = [e for e in events if id(e) not in rejected]
            dead.extend(self._upsert_slow(conn, table, remaining))
        return dead

    def _prepare(self, event: ChangeEvent, table: _Table) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The key tuple (in table-key order) and the COPY-ready row of an event.

        The returned row may be the event's own dict: callers must not modify it.
        """
        source = event.row
        if source is None:
            if event.op is not Op.DELETE or not event.key:
                raise _RowProblem(f"{event.op.value!r} event for {event.table} has no row image")
            source = event.key
        event_key = event.key or _EMPTY
        key: list[Any] = []
        for column in table.key:
            value = event_key.get(column)
            if value is None:
                value = source.get(column)
            if value is None:
                raise _RowProblem(
                    f"key column {column!r} of {table.schema}.{table.name} is missing or null "
                    "in the event's key and row"
                )
            key.append(value if type(value) in _PLAIN else copy_value(value))
        row = source
        for value in source.values():
            if type(value) not in _PLAIN:
                row = {c: v if type(v) in _PLAIN else copy_value(v) for c, v in source.items()}
                break
        if len(table.key) == 1:
            if table.key[0] not in row:
                row = {**row, table.key[0]: key[0]}
        elif any(c not in row for c in table.key):
            row = {**dict(zip(table.key, key, strict=True)), **row}
        return tuple(key), row

    def _upsert_fast(
        self,
        conn: psycopg.Connection[Any],
        table: _Table,
        states: dict[Any, dict[str, Any] | None],
        resets: set[Any],
        truncate_first: bool,
    ) -> None:
        """Apply the net changes: ``TRUNCATE``, ``DELETE`` of ended/reset keys, upserts.

        ``states`` maps keys (bare values for a one-column key) to the final row or None.
        """
        if truncate_first:
            conn.execute(f"TRUNCATE {table.sql_name}")
        deletes: list[Any] = [k for k, row in states.items() if row is None]
        deletes.extend(resets)
        if deletes and len(table.key) == 1 and len({type(k) for k in deletes}) == 1:
            # One key column: one statement, no staging table. The cast makes PostgreSQL
            # parse the values as the key column's type, as COPY into the stage would.
            column = table.key[0]
            conn.execute(
                f"DELETE FROM {table.sql_name} WHERE {quote(column)} = "
                f"ANY(%s::{table.columns[column]}[])",
                (deletes,),
            )
        elif deletes:
            if len(table.key) == 1:
                deletes = [(k,) for k in deletes]
            stage = self._stage(conn, table, table.key)
            self._copy(conn, stage, table.key, deletes, [table.columns[c] for c in table.key])
            conn.execute(delete_sql(table.sql_name, stage, table.key))
        full = tuple(table.columns)
        width = len(full)
        take = operator.itemgetter(*full) if width > 1 else (lambda row: (row[full[0]],))
        rows = [row for row in states.values() if row is not None]
        # rows only carry table columns, so a row of the table's width has them all
        complete = [take(row) for row in rows if len(row) == width]
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {full: complete}
        if len(complete) < len(rows):
            for row in rows:
                if len(row) != width:
                    columns = tuple(c for c in full if c in row)
                    by_columns.setdefault(columns, []).append(tuple(row[c] for c in columns))
        for columns, values in by_columns.items():
            if not values:
                continue
            stage = self._stage(conn, table, columns)
            self._copy(conn, stage, columns, values, [table.columns[c] for c in columns])
            conn.execute(upsert_sql(table.sql_name, stage, columns, table.key))

    def _upsert_slow(
        self, conn: psycopg.Connection[Any], table: _Table, events: list[ChangeEvent]
    ) -> list[DeadLetter]:
        """One statement per event, each in a savepoint: only rejected events are lost."""
        dead: list[DeadLetter] = []
        for event in events:
            try:
                with conn.transaction():
                    if event.op is Op.TRUNCATE:
                        if self.truncate == "apply":
                            conn.execute(f"TRUNCATE {table.sql_name}")
                        continue
                    key_values, row = self._prepare(event, table)
                    if event.op is Op.DELETE:
                        where = " AND ".join(f"{quote(c)} = %s" for c in table.key)
                        conn.execute(f"DELETE FROM {table.sql_name} WHERE {where}", key_values)
                        continue
                    columns = [c for c in table.columns if c in row]
                    column_sql = ", ".join(quote(c) for c in columns)
                    marks = ", ".join("%s" for _ in columns)
                    updates = [c for c in columns if c not in table.key]
                    action = (
                        "DO UPDATE SET "
                        + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
                        if updates
                        else "DO NOTHING"
                    )
                    conflict = ", ".join(quote(c) for c in table.key)
                    conn.execute(
                        f"INSERT INTO {table.sql_name} ({column_sql}) VALUES ({marks}) "
                        f"ON CONFLICT ({conflict}) {action}",
                        [_text_param(row[c]) for c in columns],
                    )
            except Exception as exc:
                if not _is_row_error(exc) and not isinstance(
                    exc, (_RowProblem, TypeError, ValueError)
                ):
                    raise
                dead.append(self._dead(event, exc))
        return dead

    # -- append / timescaledb modes -----------------------------------------------------------

    def _history_row(self, event: ChangeEvent) -> dict[str, Any]:
        source = event.row if event.op is not Op.TRUNCATE else None
        if source is None and event.op is Op.DELETE:
            source = event.key
        row = {column: copy_value(value) for column, value in (source or {}).items()}
        ts_ms = event.source.ts_ms if event.source.ts_ms is not None else event.ts_ms
        if ts_ms is None and self.mode == "timescaledb":
            raise _RowProblem(
                "the event has no source timestamp (source.ts_ms or ts_ms), which the "
                "timescaledb mode partitions on"
            )
        row["_cdc_op"] = event.op.value
        row["_cdc_stream"] = event.position.stream
        row["_cdc_partition"] = str(event.position.partition)
        row["_cdc_offset"] = event.position.offset
        row["_cdc_source_ts"] = (
            dt.datetime.fromtimestamp(ts_ms / 1000, _UTC) if ts_ms is not None else None
        )
        return row

    def _apply_append(
        self, conn: psycopg.Connection[Any], target: Target, events: list[ChangeEvent]
    ) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        prepared: list[tuple[ChangeEvent, dict[str, Any]]] = []
        for event in events:
            if event.op is Op.TRUNCATE and self.truncate == "ignore":
                continue
            try:
                prepared.append((event, self._history_row(event)))
            except (_RowProblem, TypeError, ValueError) as exc:
                dead.append(self._dead(event, exc))
        if not prepared:
            return dead
        try:
            table = self._ensure_table(conn, target, [e for e, _ in prepared])
        except _RowProblem as exc:
            return dead + [self._dead(e, exc) for e, _ in prepared]
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for _, row in prepared:
            columns = tuple(c for c in table.columns if c in row)
            by_columns.setdefault(columns, []).append(tuple(row[c] for c in columns))
        try:
            with conn.transaction():
                for columns, values in by_columns.items():
                    self._copy(
                        conn, table.sql_name, columns, values, [table.columns[c] for c in columns]
                    )
        except Exception as exc:
            if not _is_row_error(exc):
                raise
            for event, row in prepared:
                columns = tuple(c for c in table.columns if c in row)
                try:
                    with conn.transaction():
                        conn.execute(
                            f"INSERT INTO {table.sql_name} ("
                            + ", ".join(quote(c) for c in columns)
                            + ") VALUES ("
                            + ", ".join("%s" for _ in columns)
                            + ")",
                            [_text_param(row[c]) for c in columns],
                        )
                except Exception as row_exc:
                    if not _is_row_error(row_exc):
                        raise
                    dead.append(self._dead(event, row_exc))
        return dead

    # -- tables ---------------------------------------------------------------------------------

    def _known(self, conn: psycopg.Connection[Any], target: Target) -> _Table | None:
        table = self._tables.get(target)
        if table is not None:
            return table
        schema, name = target
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "COALESCE(array_position(i.indkey::int2[], a.attnum) "
            "- array_lower(i.indkey::int2[], 1) + 1, 0) "
            "FROM pg_attribute a "
            "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (qualified(schema, name),),
        ).fetchall()
        if not rows:
            return None
        columns = {str(r[0]): str(r[1]) for r in rows}
        key = tuple(str(r[0]) for r in sorted((r for r in rows if r[2]), key=lambda r: r[2]))
        table = _Table(schema, name, columns, key)
        self._tables[target] = table
        return table

    def _ensure_table(
        self, conn: psycopg.Connection[Any], target: Target, events: list[ChangeEvent]
    ) -> _Table:
        """Create the table, or add the columns it lacks, for the rows of ``events``."""
        table = self._known(conn, target)
        if table is not None and covers(table, events):
            return table
        wanted = columns_of(events, pg_type, pg_type_for_value, all_keys=False)
        if table is not None and all(c in table.columns for c in wanted):
            return table
        schema, name = target
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{name}",))
        self._tables.pop(target, None)
        table = self._known(conn, target)
        history = self.mode != "upsert"
        if table is None:
            key: tuple[str, ...] | None = None
            if not history:
                key = key_columns(events)
                if not key:
                    raise _RowProblem(no_key_reason(events[0].table))
                for column in key:
                    wanted.setdefault(column, _type_of(events, column))
            reserved = _HISTORY_NAMES if history else ()
            columns = [(c, t) for c, t in wanted.items() if c not in reserved]
            if history:
                meta = list(HISTORY_COLUMNS)
                if self.mode == "timescaledb":
                    meta[-1] = ("_cdc_source_ts", "timestamptz NOT NULL")
                columns += meta
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            conn.execute(create_table_sql(qualified(schema, name), columns, key))
            if self.mode == "timescaledb":
                conn.execute(hypertable_sql(), (qualified(schema, name), "_cdc_source_ts"))
            log.info("sink %r: created table %s.%s", self.name, schema, name)
        else:
            for column, sql_type in wanted.items():
                if column not in table.columns and (not history or column not in _HISTORY_NAMES):
                    conn.execute(
                        f"ALTER TABLE {table.sql_name} ADD COLUMN IF NOT EXISTS "
                        f"{quote(column)} {sql_type}"
                    )
                    log.info("sink %r: added column %s to %s.%s", self.name, column, schema, name)
        self._tables.pop(target, None)
        table = self._known(conn, target)
        assert table is not None
        return table

    def _stage(self, conn: psycopg.Connection[Any], table: _Table, columns: Sequence[str]) -> str:
        """A session temporary table shaped like ``columns`` of ``table`` (emptied at commit)."""
        digest = hashlib.sha1(
            "\x00".join((table.schema, table.name, *columns)).encode(), usedforsecurity=False
        ).hexdigest()[:20]
        stage = f"_cdcflow_stage_{digest}"
        if stage not in self._stages:
            column_sql = ", ".join(quote(c) for c in columns)
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                f"SELECT {column_sql} FROM {table.sql_name} WITH NO DATA"
            )
            self._stages.add(stage)
        return stage

    @staticmethod
    def _copy(
        conn: psycopg.Connection[Any],
        target: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        sql_types: Sequence[str],
    ) -> None:
        """``COPY`` ``rows`` into ``columns`` of ``target`` (whose types are ``sql_types``).

        Binary when every column and value can be bound exactly (:func:`binary_copy_types`),
        else text (the server parses each value into the column's type).
        """
        column_sql = ", ".join(quote(c) for c in columns)
        binary = binary_copy_types(sql_types, rows)
        with conn.cursor() as cursor:
            if binary is None:
                statement = f"COPY {target} ({column_sql}) FROM STDIN"
            else:
                statement = f"COPY {target} ({column_sql}) FROM STDIN (FORMAT BINARY)"
            with cursor.copy(statement) as copy:
                if binary is not None:
                    copy.set_types(binary)
                write_row = copy.write_row
                for row in rows:
                    write_row(row)


def _text_param(value: Any) -> Any:
    """A per-row statement parameter as text: the server parses it as ``COPY`` would."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _is_row_error(exc: BaseException) -> bool:
    """True for errors caused by a row's data (SQLSTATE classes 22, 23; datatype mismatch).

    Such rows go to the dead letters instead of being retried.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    if not isinstance(sqlstate, str):
        return False
    return sqlstate[:2] in ("22", "23") or sqlstate in ("42804", "2200N", "54000")


def _type_of(events: Iterable[ChangeEvent], column: str) -> str:
    for event in events:
        if event.key and event.key.get(column) is not None:
            return pg_type_for_value(event.key[column])
    return "text"


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
            name=self.name,
            dsn=self.dsn.get_secret_value(),
            pipeline=context.pipeline,
            tables=self.tables,
            schema=self.target_schema,
            table_map=self.table_map,
            truncate=self.truncate,
            mode=self.mode,
            retry=self.retry,
            connect_timeout_s=self.connect_timeout_s,
        )
