"""The PostgreSQL writer: connections, the positions table, the transaction of a batch.

The modes' row work is in :mod:`.netchange` (upsert) and :mod:`.history` (append,
timescaledb); the transaction follows :class:`~cdcflow.io.sink_common.TransactionalTableWriter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from cdcflow.core.source import PartitionKey
from cdcflow.errors import MissingDependencyError, SinkError, missing_extra
from cdcflow.io.postgres.catalog import Table
from cdcflow.io.postgres.dsn import dsn_target
from cdcflow.io.postgres.history import HistoryMode
from cdcflow.io.postgres.netchange import UpsertMode
from cdcflow.io.postgres.sql import (
    OFFSET_TYPE,
    Mode,
    migrate_offsets_sql,
    offset_type_sql,
    offsets_ddl,
    qualified,
    quote,
)
from cdcflow.io.retry import RetryPolicy, postgres_is_transient
from cdcflow.io.sink_common import APPEND, ServerTableWriter, Target, row_count_line, stored_offset
from cdcflow.schemas.model import ChangeEvent, DeadLetter, EventBatch

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("cdcflow.io.postgres")


class PostgresWriter(UpsertMode, HistoryMode, ServerTableWriter):
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
        self._tables: dict[Target, Table] = {}
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
            self._positions = self._read_positions()

        self._with_retry(prepare, f"sink {self.name!r}: opening {self.target}")

    def _positions_table_exists(self) -> bool:
        found = self._connect().execute("SELECT to_regclass(%s)", (self._offsets,)).fetchone()
        return found is not None and found[0] is not None

    def _read_positions(self) -> dict[PartitionKey, int]:
        """The stored positions of this pipeline and sink, offsets exact (numeric or bigint)."""
        rows = self._connect().execute(
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

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

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

    def _is_transient(self, error: BaseException) -> bool:
        return postgres_is_transient(error)


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


