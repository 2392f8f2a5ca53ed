"""The data model every step sees: :class:`ChangeEvent` and its parts.

All types here are plain ``msgspec.Struct`` values: cheap to build, picklable (so Beam and Flink
can ship them between workers) and free of engine imports. The per-record types
(:class:`ChangeEvent`, :class:`SourceInfo`, :class:`TableId`, :class:`Position`,
:class:`TransactionInfo`, :class:`RawRecord`) are declared ``gc=False``: the garbage collector
does not track them, which makes decoding 10-30 % faster. They must never be part of a
reference cycle (do not store an event inside its own ``meta`` or row images).

Positions
    A :class:`Position` says where cdcflow read a record: ``stream`` (a Kafka topic, a file, a
    Kinesis stream), ``partition`` (a Kafka partition, a shard id; ``0`` for a file) and ``offset``.
    Offsets are totally ordered within one ``(stream, partition)`` and drive exactly-once: a sink
    that stored offset ``n`` for a partition has applied every record at or below ``n``.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Op(str, enum.Enum):  # noqa: UP042 - str() and reprs must stay as they are
    """The change operation, with Debezium's one-letter codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    TRUNCATE = "t"


class TableId(msgspec.Struct, frozen=True, order=True, gc=False):
    """A table's identity; ``str()`` joins the non-empty parts with ``.``."""

    database: str | None = None
    schema: str | None = None
    table: str = ""

    def __str__(self) -> str:
        return ".".join(part for part in (self.database, self.schema, self.table) if part)

    @classmethod
    def parse(cls, text: str) -> TableId:
        """Parse ``db.schema.table``, ``db.table`` or ``table``.

        Two parts are read as ``database.table`` (MySQL, MongoDB), three as
        ``database.schema.table`` (PostgreSQL, SQL Server, Oracle).
        """
        parts = text.split(".")
        if len(parts) == 1:
            return cls(table=parts[0])
        if len(parts) == 2:
            return cls(database=parts[0], table=parts[1])
        return cls(database=".".join(parts[:-2]), schema=parts[-2], table=parts[-1])


class Position(msgspec.Struct, frozen=True, order=True, gc=False):
    """Where cdcflow read a record; ordered by offset within ``(stream, partition)``."""

    stream: str
    partition: int | str
    offset: int

    @property
    def partition_key(self) -> tuple[str, str]:
        """The ``(stream, partition)`` pair positions are stored under, as strings."""
        return (self.stream, str(self.partition))


class SourceInfo(msgspec.Struct, kw_only=True, gc=False):
    """The Debezium ``source`` block, normalised.

    ``snapshot`` is Debezium's value as a string: ``"false"``, ``"true"``, ``"first"``,
    ``"last"``, ``"first_in_data_collection"``, ``"last_in_data_collection"``, ``"incremental"``
    (older connectors send a boolean, which becomes ``"true"``/``"false"``). ``native`` holds the
    connector-native position: PostgreSQL ``lsn``/``txId``/``xmin``/``sequence``, MySQL
    ``file``/``pos``/``row``/``gtid``/``server_id``, MongoDB ``ord``/``lsid``/``txnNumber``,
    SQL Server ``change_lsn``/``commit_lsn``/``event_serial_no``, Oracle ``scn``/``commit_scn``/
    ``txId``, Kinesis/DynamoDB ``sequence_number``.
    """

    connector: str | None = None
    name: str | None = None
    ts_ms: int | None = None
    snapshot: str | None = None
    database: str | None = None
    schema: str | None = None
    table: str | None = None
    version: str | None = None
    native: dict[str, Any] = {}

    @property
    def is_snapshot(self) -> bool:
        """True when the row was read by a snapshot rather than streamed."""
        return self.snapshot not in (None, "false")


class TransactionInfo(msgspec.Struct, kw_only=True, gc=False):
    """The Debezium ``transaction`` block of a row event."""

    id: str
    total_order: int | None = None
    data_collection_order: int | None = None


class Column(msgspec.Struct, frozen=True, kw_only=True):
    """One column of a table schema.

    ``type`` is the Kafka Connect (or Avro) base type (``int32``, ``int64``, ``string``,
    ``bytes``, ``boolean``, ``float64``, ``struct``, ``array``, ``map``...); ``logical`` the
    semantic name when present (``org.apache.kafka.connect.data.Decimal``,
    ``io.debezium.time.MicroTimestamp``...); ``parameters`` its parameters (``scale``,
    ``connect.decimal.precision``...).
    """

    name: str
    type: str
    logical: str | None = None
    optional: bool = True
    parameters: dict[str, str] = {}


class TableSchema(msgspec.Struct, frozen=True, kw_only=True):
    """The schema a row was written with, shared by every event decoded with it.

    ``fingerprint`` identifies the schema version (a hash of its definition); ``key_columns``
    lists the primary-key columns when the message key carried a schema.
    """

    name: str | None
    fingerprint: str
    columns: tuple[Column, ...]
    version: int | None = None
    key_columns: tuple[str, ...] = ()

    def column(self, name: str) -> Column | None:
        """Return the column called ``name``, or None."""
        for column in self.columns:
            if column.name == name:
                return column
        return None


class ChangeEvent(msgspec.Struct, kw_only=True, gc=False):
    """One row change.

    ``before``/``after`` are row images (None where absent: no ``before`` on a create, no
    ``after`` on a delete). ``unavailable`` names the columns whose value the source did not
    send (Debezium's TOAST placeholder); those columns are absent from ``before``/``after`` and a
    sink must keep the value it already stores. ``key`` holds the primary-key columns when known.
    ``meta`` keeps extra fields of unwrapped records (``__lsn``...), without the ``__`` prefix.
    ``profile`` is the processing profile the event is routed by (``full``, ``index_only``,
    ``archive``, or any other name), set by a routing step from the event's table; ``None``
    when no step routed it. Writers filter on it with :class:`cdcflow.core.routing.ProfileFilter`.
    """

    op: Op
    table: TableId
    position: Position
    key: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    unavailable: tuple[str, ...] = ()
    source: SourceInfo = msgspec.field(default_factory=SourceInfo)
    ts_ms: int | None = None
    transaction: TransactionInfo | None = None
    schema: TableSchema | None = None
    meta: dict[str, Any] = {}
    profile: str | None = None

    @property
    def row(self) -> dict[str, Any] | None:
        """The row image that describes the row's state: ``after``, or ``before`` on delete."""
        return self.before if self.op is Op.DELETE else self.after


class TransactionMarker(msgspec.Struct, kw_only=True):
    """A Debezium transaction metadata message (``status`` BEGIN or END); not a row."""

    status: str
    id: str
    position: Position
    ts_ms: int | None = None
    event_count: int | None = None
    data_collections: list[dict[str, Any]] | None = None


class SchemaChange(msgspec.Struct, kw_only=True):
    """A Debezium schema-change message (DDL); not a row."""

    position: Position
    database: str | None = None
    schema: str | None = None
    ddl: str | None = None
    table_changes: list[dict[str, Any]] = []
    source: SourceInfo = msgspec.field(default_factory=SourceInfo)
    ts_ms: int | None = None


class Tombstone(msgspec.Struct, kw_only=True):
    """A null-valued message that follows a delete so Kafka compaction can drop the key."""

    position: Position
    key: dict[str, Any] | None = None


class Heartbeat(msgspec.Struct, kw_only=True):
    """A Debezium heartbeat message (only ``ts_ms``); not a row."""

    position: Position
    ts_ms: int | None = None


#: Every kind of thing a decoded message can be.
Decoded = ChangeEvent | TransactionMarker | SchemaChange | Tombstone | Heartbeat


class RawRecord(msgspec.Struct, frozen=True, gc=False):
    """One message as read from a source: key and value bytes plus where it was read."""

    key: bytes | None
    value: bytes | None
    position: Position
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class RawBatch(msgspec.Struct, frozen=True):
    """The hot-path element a source emits: the records of one poll of one partition.

    ``records`` are in offset order; ``last_offset`` is the offset of the last record read (the
    position to commit once the batch is written), even when the batch is empty of rows.
    """

    stream: str
    partition: int | str
    records: list[RawRecord]
    last_offset: int

    @property
    def partition_key(self) -> tuple[str, str]:
        """The ``(stream, partition)`` pair positions are stored under."""
        return (self.stream, str(self.partition))


class DeadLetter(msgspec.Struct, kw_only=True):
    """A record a step could not process, with everything needed to replay or inspect it.

    ``value``/``key`` are the original bytes when the failure happened before or during decoding;
    ``event`` is the canonical JSON form of the decoded event for failures after decoding.
    """

    step: str
    reason: str
    error_type: str
    position: Position | None
    value: bytes | None = None
    key: bytes | None = None
    event: dict[str, Any] | None = None
    failed_at_ms: int = 0


class EventBatch(msgspec.Struct, kw_only=True):
    """A decoded batch: the rows of one source partition and the offset range they cover.

    ``events`` holds row changes only; ``markers`` holds transaction, schema-change, tombstone
    and heartbeat messages (sinks do not write them as rows). ``dead_letters`` carries the
    records earlier steps could not process until the dead-letter sink has stored them (before
    any sink commits the batch's position, so none is lost in a crash). ``last_offset`` covers every
    record the source read for this batch, including those that became dead letters, so a sink
    storing it as its position never re-reads them.
    """

    stream: str
    partition: int | str
    last_offset: int
    events: list[ChangeEvent]
    markers: list[TransactionMarker | SchemaChange | Tombstone | Heartbeat] = []
    dead_letters: list[DeadLetter] = []

    @property
    def partition_key(self) -> tuple[str, str]:
        """The ``(stream, partition)`` pair positions are stored under."""
        return (self.stream, str(self.partition))
