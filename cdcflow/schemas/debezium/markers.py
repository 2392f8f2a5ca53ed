"""Messages that are not row changes: transaction markers, schema changes and heartbeats.

Each function builds the value one parsed message payload stands for. Integer fields are
integers or null (anything else is a :class:`~cdcflow.errors.DecodeError`); the other fields
are kept as sent.
"""

from __future__ import annotations

from typing import Any

from cdcflow.schemas.debezium.source import int_field, source_info
from cdcflow.schemas.model import Heartbeat, Position, SchemaChange, TransactionMarker


def transaction_marker(payload: dict[str, Any], position: Position) -> TransactionMarker:
    """A transaction BEGIN/END message (``status``, ``id``, ``event_count``, ...)."""
    return TransactionMarker(
        status=str(payload.get("status")),
        id=str(payload.get("id")),
        position=position,
        ts_ms=int_field(payload, "ts_ms"),
        event_count=int_field(payload, "event_count"),
        data_collections=payload.get("data_collections"),
    )


def schema_change(payload: dict[str, Any], position: Position) -> SchemaChange:
    """A schema-change message, from the schema change topic or the schema history topic.

    The history topic keeps the binlog position beside the source block: its fields join
    ``source.native`` (the source block's own fields win).
    """
    source = source_info(payload.get("source"))
    history_position = payload.get("position")
    if isinstance(history_position, dict):
        source.native.update((k, v) for k, v in history_position.items() if k not in source.native)
    return SchemaChange(
        position=position,
        database=payload.get("databaseName") or source.database,
        schema=payload.get("schemaName") or source.schema,
        ddl=payload.get("ddl"),
        table_changes=payload.get("tableChanges") or [],
        source=source,
        ts_ms=int_field(payload, "ts_ms"),
    )


def heartbeat(payload: dict[str, Any], position: Position) -> Heartbeat:
    """A heartbeat message (``{"ts_ms": n}``)."""
    return Heartbeat(position=position, ts_ms=int_field(payload, "ts_ms"))
