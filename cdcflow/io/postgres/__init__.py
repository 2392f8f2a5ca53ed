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
    :func:`~cdcflow.io.postgres.types.binary_copy_types`) into a temporary staging table, then one
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

Modules
    :mod:`~cdcflow.io.postgres.sql` the SQL builders and the positions table;
    :mod:`~cdcflow.io.postgres.types` the type mapping and COPY values;
    :mod:`~cdcflow.io.postgres.dsn` connection strings without their secrets;
    :mod:`~cdcflow.io.postgres.catalog` what the writer knows of the target tables;
    :mod:`~cdcflow.io.postgres.netchange` upsert mode (the net change per key);
    :mod:`~cdcflow.io.postgres.history` the append and timescaledb modes;
    :mod:`~cdcflow.io.postgres.writer` the writer; :mod:`~cdcflow.io.postgres.config` its YAML
    model.
"""

from cdcflow.io.postgres.config import PostgresSinkConfig
from cdcflow.io.postgres.dsn import dsn_target
from cdcflow.io.postgres.sql import (
    HISTORY_COLUMNS,
    OFFSET_TYPE,
    Mode,
    create_table_sql,
    delete_sql,
    hypertable_sql,
    migrate_offsets_sql,
    offset_type_sql,
    offsets_ddl,
    qualified,
    quote,
    upsert_sql,
)
from cdcflow.io.postgres.writer import PostgresWriter

__all__ = [
    "HISTORY_COLUMNS",
    "OFFSET_TYPE",
    "Mode",
    "PostgresSinkConfig",
    "PostgresWriter",
    "create_table_sql",
    "delete_sql",
    "dsn_target",
    "hypertable_sql",
    "migrate_offsets_sql",
    "offset_type_sql",
    "offsets_ddl",
    "qualified",
    "quote",
    "upsert_sql",
]
