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
    with ``_deleted = 1``. Columns are typed by :mod:`cdcflow.io.clickhouse.types`
    (``DateTime64`` where the server has it); a column that appears later is added with
    ``ALTER TABLE ... ADD COLUMN`` (and the view is re-created).

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

Modules
    :mod:`~cdcflow.io.clickhouse.sql` the DDL, the view and the positions table;
    :mod:`~cdcflow.io.clickhouse.types` the type mapping and value checks;
    :mod:`~cdcflow.io.clickhouse.catalog` what the writer knows of the target tables;
    :mod:`~cdcflow.io.clickhouse.netchange` the last row per key, unavailable columns, inserts;
    :mod:`~cdcflow.io.clickhouse.writer` the writer; :mod:`~cdcflow.io.clickhouse.config` its
    YAML model.
"""

from cdcflow.io.clickhouse.config import ClickHouseSinkConfig
from cdcflow.io.clickhouse.sql import (
    DELETED_COLUMN,
    VERSION_COLUMN,
    create_table_sql,
    offsets_ddl,
    parse_version,
    positions_sql,
    qualified,
    quote,
    view_sql,
)
from cdcflow.io.clickhouse.writer import ClickHouseWriter

__all__ = [
    "DELETED_COLUMN",
    "VERSION_COLUMN",
    "ClickHouseSinkConfig",
    "ClickHouseWriter",
    "create_table_sql",
    "offsets_ddl",
    "parse_version",
    "positions_sql",
    "qualified",
    "quote",
    "view_sql",
]
