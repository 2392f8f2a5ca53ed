"""What the table sinks (SQLite, PostgreSQL, ClickHouse) share, independent of the database.

:class:`TableWriter` holds the settings every table sink has (the ``tables`` filter,
``table_map``, ``truncate``), the positions read at ``open``, and picks the events of a batch
that are still to be written. :class:`NamespacedTableWriter` adds the ``(namespace, table)``
targets of sinks that write into a schema or database (PostgreSQL, ClickHouse).

The functions derive what a new table needs from a batch's events: the key columns, the
columns with their types (the type functions are the database's), and whether a known table
already has every column the events carry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from cdcflow.core.positions import max_offset as max_offset
from cdcflow.core.positions import stored_offset as stored_offset
from cdcflow.core.source import PartitionKey
from cdcflow.core.step import event_dead_letter
from cdcflow.core.writer import (
    MIRROR,
    Capabilities,
    RejectSink,
    TableFilter,
    Writer,
    WriteResult,
    skipped,
)
from cdcflow.io.retry import RetryPolicy, call_with_retry
from cdcflow.metrics import Counters
from cdcflow.schemas.model import ChangeEvent, Column, DeadLetter, EventBatch, Op, TableId

#: A target table: ``(schema or database, table)``.
Target = tuple[str, str]
#: After this many batches, ``tables:`` patterns that matched no table are logged once.
WARN_AFTER_BATCHES = 10
log = logging.getLogger("cdcflow.sinks")


#: A history table (an append mode): every event becomes a new row, so nothing is upserted,
#: deleted, truncated or kept from the stored row, and a write without the stored position
#: would append the rows again (exactly once comes from the positions kept with them).
APPEND = Capabilities()


class TableWriter(Writer):
    """Base of the sinks that write rows into tables and keep positions with them.

    A mirror by default (:data:`~cdcflow.core.writer.MIRROR`); a sink in an append mode sets
    :data:`APPEND` on the instance.
    """

    keeps_positions = True
    capabilities = MIRROR

    def __init__(
        self,
        name: str,
        pipeline: str,
        tables: str | Sequence[str],
        table_map: dict[str, str] | None,
        truncate: Literal["apply", "ignore"],
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.filter = TableFilter(tables)
        self.table_map = dict(table_map or {})
        self.truncate = truncate
        self._positions: dict[PartitionKey, int] = {}
        #: ``sink_unmatched_patterns{sink, pattern}``: ``tables:`` patterns that matched no
        #: table in the first :data:`WARN_AFTER_BATCHES` batches (docs/redaction.md).
        self.metrics = Counters()
        self._batches = 0

    def committed_positions(self) -> dict[PartitionKey, int]:
        """The stored positions of this pipeline and sink."""
        return dict(self._positions)

    def _new_events(self, batch: EventBatch, committed: int) -> list[ChangeEvent]:
        """The events of ``batch`` after the ``committed`` offset, of tables the filter keeps."""
        keep = self.filter
        return [e for e in batch.events if e.position.offset > committed and keep(e.table)]

    def _count_batch(self) -> None:
        """Count a batch to write (once per batch, not per attempt).

        After :data:`WARN_AFTER_BATCHES` batches, every ``tables:`` pattern that matched no table
        is logged once and counted in ``sink_unmatched_patterns``.
        """
        self._batches += 1
        if self._batches == WARN_AFTER_BATCHES:
            keep = self.filter
            for pattern in keep.unmatched():
                log.warning(
                    "sink %s: tables pattern %r has matched no table in the first %d batches "
                    "(check the name; strict: true makes validate and run fail, "
                    "docs/redaction.md)",
                    self.name,
                    pattern,
                    WARN_AFTER_BATCHES,
                )
                self.metrics.inc("sink_unmatched_patterns", {"sink": self.name, "pattern": pattern})

    def _reset_caches(self) -> None:
        """Forget what the writer knows about the destination's tables (after a failure)."""

    def _write_what(self, batch: EventBatch) -> str:
        """How errors and retries name the write of ``batch``."""
        stream, partition = batch.partition_key
        return f"sink {self.name!r}: write of {stream}/{partition} up to offset {batch.last_offset}"

    def _dead(self, event: ChangeEvent, error: BaseException) -> DeadLetter:
        return event_dead_letter(f"sink:{self.name}", event, error)


class TransactionalTableWriter(TableWriter):
    """The write of a transactional table sink (SQLite, PostgreSQL): one template, small hooks.

    :meth:`write` skips a batch at or below the cached position; otherwise it runs
    :meth:`_write_transaction` through :meth:`_attempt` (PostgreSQL retries transient
    failures there; SQLite translates its errors), which does, in one database transaction:

    1. :meth:`_begin`;
    2. :meth:`_claim_position`: the stored position, read (or claimed) inside the transaction
       (default: the cached one); events at or below it are skipped;
    3. :meth:`_apply_batch`: the rows of the new events of kept tables, returning how many
       events it took and the dead letters of the rows the destination rejected;
    4. the dead letters to ``reject``, *before* the position is stored;
    5. :meth:`_store_position` of the batch's ``last_offset``; 6. :meth:`_commit`.

    Any failure in 2-6 runs :meth:`_rollback` and :meth:`_reset_caches` (what the writer knows
    about the tables may describe work rolled back) and propagates: neither rows nor the
    position of that attempt remain. After a commit the cached position moves.
    """

    def write(self, batch: EventBatch, reject: RejectSink | None = None) -> WriteResult:
        """Apply one batch and store its position in one transaction (see the class doc)."""
        if batch.last_offset <= self._positions.get(batch.partition_key, -1):
            return skipped()
        self._count_batch()
        result: WriteResult = self._attempt(
            lambda: self._write_transaction(batch, reject), self._write_what(batch)
        )
        return result

    def _write_transaction(self, batch: EventBatch, reject: RejectSink | None) -> WriteResult:
        """One attempt at the batch's transaction (steps 1-6 of the class doc)."""
        key = batch.partition_key
        applied = 0
        dead: list[DeadLetter] = []
        self._begin()
        try:
            committed = self._claim_position(key, batch.last_offset)
            if batch.last_offset > committed:
                taken, dead = self._apply_batch(batch, committed)
                if dead and reject is not None:
                    reject(dead)  # before the position commits
                self._store_position(key, batch.last_offset)
                applied = taken - len(dead)
                committed = batch.last_offset
            self._commit()
        except BaseException:
            self._rollback()
            self._reset_caches()
            raise
        self._positions[key] = committed
        return WriteResult(applied, dead)

    # -- hooks ---------------------------------------------------------------------------------

    def _attempt(self, operation: Callable[[], Any], what: str) -> Any:
        """Run one batch's transaction (``operation``); ``what`` names it in errors."""
        return operation()

    def _begin(self) -> None:
        """Start the batch's transaction."""
        raise NotImplementedError

    def _claim_position(self, key: PartitionKey, offset: int) -> int:
        """The position stored for ``key``, as seen inside the transaction (-1: none).

        The default is the cached one (the writer is the partition's only writer); a writer
        that guards against a concurrent one locks and reads it here, and may store ``offset``
        in the same statement.
        """
        return self._positions.get(key, -1)

    def _apply_batch(self, batch: EventBatch, committed: int) -> tuple[int, list[DeadLetter]]:
        """Write the rows of ``batch`` after ``committed``: (events taken, dead letters)."""
        raise NotImplementedError

    def _store_position(self, key: PartitionKey, offset: int) -> None:
        """Store ``offset`` as ``key``'s position, inside the transaction."""
        raise NotImplementedError

    def _commit(self) -> None:
        """Commit the batch's transaction."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """Roll the batch's transaction back (must not raise over the original failure)."""
        raise NotImplementedError



class NamespacedTableWriter(TableWriter):
    """A table sink whose targets are ``(namespace, table)``: a schema or a database.

    A source table ``db.schema.table`` lands in ``(<namespace>, table)`` unless ``table_map``
    maps its full name to ``name`` (in the sink's namespace) or ``namespace.name``.
    """

    #: Targets already worked out (created on first use).
    _targets: dict[TableId, Target] | None = None

    def _namespace(self) -> str:
        """The schema or database of the tables ``table_map`` does not place."""
        raise NotImplementedError

    def target_table(self, table: TableId) -> Target:
        """The ``(namespace, table)`` a source table lands in."""
        targets = self._targets
        if targets is None:
            targets = self._targets = {}
        found = targets.get(table)
        if found is None:
            found = targets[table] = self._target_table(table)
        return found

    def _target_table(self, table: TableId) -> Target:
        mapped = self.table_map.get(str(table))
        if mapped:
            if "." in mapped:
                namespace, _, name = mapped.partition(".")
                return namespace, name
            return self._namespace(), mapped
        return self._namespace(), table.table

    def _new_by_target(
        self, batch: EventBatch, committed: int
    ) -> dict[Target, list[ChangeEvent]]:
        """:meth:`_new_events` grouped by :meth:`target_table`, in one pass over the batch.

        Groups keep the batch's event order; the filter and the target are worked out once per
        source table of the batch.
        """
        groups: dict[Target, list[ChangeEvent]] = {}
        keep = self.filter
        per_table: dict[TableId, list[ChangeEvent] | None] = {}
        last_table: TableId | None = None
        last_group: list[ChangeEvent] | None = None
        for event in batch.events:
            if event.position.offset <= committed:
                continue
            table = event.table
            if table is not last_table:
                if table in per_table:
                    last_group = per_table[table]
                else:
                    last_group = None
                    if keep(table):
                        target = self.target_table(table)
                        last_group = groups.get(target)
                        if last_group is None:
                            last_group = groups[target] = []
                    per_table[table] = last_group
                last_table = table
            if last_group is not None:
                last_group.append(event)
        return groups


class ServerTableWriter(NamespacedTableWriter):
    """A table sink on a database server (PostgreSQL, ClickHouse): retries on a new connection.

    Every server operation runs through :meth:`_with_retry`: a failure :meth:`_is_transient`
    calls transient drops the connection and the caches (:meth:`_reset`) and is retried by
    ``retry`` (:func:`~cdcflow.io.retry.call_with_retry`), then raises
    :class:`~cdcflow.errors.TransientSinkError`. :meth:`stored_positions` and :meth:`describe`
    are built on the hooks :meth:`_positions_table_exists`, :meth:`_read_positions` and
    :meth:`_describe`.
    """

    retry: RetryPolicy

    @property
    def target(self) -> str:
        """Where the sink writes, without credentials."""
        raise NotImplementedError

    def _is_transient(self, error: BaseException) -> bool:
        """True when ``error`` is worth retrying on a new connection."""
        raise NotImplementedError

    def _close_connection(self) -> None:
        """Close and forget the connection, if any (may raise; it is forgotten anyway)."""
        raise NotImplementedError

    def _positions_table_exists(self) -> bool:
        """True when the positions table exists (checked without creating anything)."""
        raise NotImplementedError

    def _read_positions(self) -> dict[PartitionKey, int]:
        """The stored positions of this pipeline and sink, offsets exact."""
        raise NotImplementedError

    def _describe(self) -> list[str]:
        """The lines of :meth:`describe` (one attempt)."""
        raise NotImplementedError

    def _with_retry(self, operation: Callable[[], Any], what: str) -> Any:
        return call_with_retry(
            operation, self._is_transient, self.retry, what, on_retry=self._reset,
            streaming=self.streaming,
        )

    def _reset(self, _error: BaseException) -> None:
        """Drop the connection and everything cached about the session (before a retry)."""
        try:
            self._close_connection()
        except Exception:  # the connection is broken anyway
            log.debug("sink %r: closing a broken connection failed", self.name, exc_info=True)
        self._reset_caches()

    def close(self) -> None:
        """Close the connection and forget the session's caches."""
        try:
            self._close_connection()
        finally:
            self._reset_caches()

    def stored_positions(self) -> dict[PartitionKey, int]:
        """The stored positions, creating nothing: no positions table means none."""

        def read() -> dict[PartitionKey, int]:
            return self._read_positions() if self._positions_table_exists() else {}

        try:
            result: dict[PartitionKey, int] = self._with_retry(
                read, f"sink {self.name!r}: reading positions at {self.target}"
            )
            return result
        finally:
            self.close()

    def describe(self) -> list[str]:
        """Row counts per table (retried like a write)."""
        result: list[str] = self._with_retry(self._describe, f"sink {self.name!r}: describe")
        return result


class KnownTable(Protocol):
    """What :func:`covers` needs to know about a target table."""

    #: Column name -> database type, in table order.
    columns: dict[str, str]
    #: Fingerprints of event schemas whose columns all exist in the table.
    schemas: set[str]


def key_columns(events: Iterable[ChangeEvent]) -> tuple[str, ...]:
    """The key columns of a new table: the first message key, else the schema's key columns."""
    for event in events:
        if event.key:
            return tuple(event.key)
        if event.schema is not None and event.schema.key_columns:
            return event.schema.key_columns
    return ()


def no_key_reason(table: TableId) -> str:
    """Why a table cannot be created: no event told its primary key."""
    return (
        f"no primary key known for {table}: the messages carry no key; send Debezium message "
        "keys or set source.key_columns for this table"
    )


def covers(table: KnownTable, events: Iterable[ChangeEvent], with_keys: bool = False) -> bool:
    """True when ``table`` has every column the events' rows (and keys) carry.

    Uses cheap set checks; a row's column names (as a tuple, in the row's order) are checked
    once per call, and an event schema found complete is remembered in ``table.schemas``.
    """
    names = table.columns.keys()
    known = table.schemas
    delete = Op.DELETE
    shapes: set[tuple[str, ...]] = set()
    for event in events:
        row = event.before if event.op is delete else event.after
        if row is not None:
            shape = tuple(row)
            if shape not in shapes:
                if not row.keys() <= names:
                    return False
                shapes.add(shape)
        if with_keys and event.key is not None and not event.key.keys() <= names:
            return False
        schema = event.schema
        if schema is not None and schema.fingerprint not in known:
            if not all(c.name in names for c in schema.columns):
                return False
            known.add(schema.fingerprint)
    return True


def columns_of(
    events: Iterable[ChangeEvent],
    column_type: Callable[[Column], str],
    value_type: Callable[[Any], str],
    all_keys: bool,
) -> dict[str, str]:
    """Every column the events carry, with its database type.

    Declared schema columns are typed by ``column_type``, other columns by ``value_type`` of
    their first non-null value (a column seen only as null keeps the type of ``None`` until a
    value or a schema says more). The columns of the message key count for every event when
    ``all_keys`` is true, otherwise only for deletes.
    """
    columns: dict[str, str] = {}
    pending: set[str] = set()
    for event in events:
        if event.schema is not None:
            for column in event.schema.columns:
                if column.name not in columns or column.name in pending:
                    columns[column.name] = column_type(column)
                    pending.discard(column.name)
        key = event.key if all_keys or event.op is Op.DELETE else None
        for source in (event.row, key):
            for name, value in (source or {}).items():
                if name not in columns:
                    columns[name] = value_type(value)
                    if value is None:
                        pending.add(name)
                elif name in pending and value is not None:
                    columns[name] = value_type(value)
                    pending.discard(name)
    return columns


def row_count_line(name: str, count: int, noun: str = "row") -> str:
    """``  name: 3 rows``, a line of a sink's ``describe``."""
    return f"  {name}: {count} {noun}{'' if count == 1 else 's'}"
