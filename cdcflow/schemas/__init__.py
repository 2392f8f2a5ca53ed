"""The data model, codecs and canonical encoding; imports no engine."""

from cdcflow.schemas.model import (
    ChangeEvent,
    Column,
    DeadLetter,
    EventBatch,
    Heartbeat,
    Op,
    Position,
    RawBatch,
    RawRecord,
    SchemaChange,
    SourceInfo,
    TableId,
    TableSchema,
    Tombstone,
    TransactionInfo,
    TransactionMarker,
)

__all__ = [
    "ChangeEvent",
    "Column",
    "DeadLetter",
    "EventBatch",
    "Heartbeat",
    "Op",
    "Position",
    "RawBatch",
    "RawRecord",
    "SchemaChange",
    "SourceInfo",
    "TableId",
    "TableSchema",
    "Tombstone",
    "TransactionInfo",
    "TransactionMarker",
]
