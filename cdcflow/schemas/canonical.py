"""Canonical JSON: the one textual form of decoded values (ARCHITECTURE §2).

``Decimal`` becomes a string keeping its scale (``"10.20"``), ``date`` ``YYYY-MM-DD``,
``datetime`` ISO-8601 (``2024-01-15T10:30:00.123456``; ``Z`` or an offset only when tz-aware),
``time`` ``HH:MM:SS[.ffffff]``, ``bytes`` standard base64. Decimals are always written in
fixed-point form (``"0.0000001"``, never ``"1E-7"``). Non-finite floats (NaN, infinities)
become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so no value is lost.
"""

from __future__ import annotations

import base64
import math
from decimal import Decimal
from typing import Any

import msgspec

from cdcflow.schemas.model import (
    ChangeEvent,
    DeadLetter,
    Heartbeat,
    Position,
    SchemaChange,
    SourceInfo,
    Tombstone,
    TransactionMarker,
)

_encoder = msgspec.json.Encoder(decimal_format="string")


def _fixed(value: Decimal) -> str | Decimal:
    """A Decimal that ``str()`` would print in exponent form, as fixed-point text."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / Infinity: str() is already the name
        return value
    if exponent > 0 or value.adjusted() < -6:
        return format(value, "f")
    return value


def _fix(value: Any) -> Any:
    """Replace what JSON cannot carry, or would carry ambiguously, by canonical text.

    Non-finite floats become ``"NaN"``/``"Infinity"``/``"-Infinity"``; Decimals that ``str()``
    writes in exponent form (``1E-7``, ``1E+3``) become fixed-point text (``0.0000001``,
    ``1000``).
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, Decimal):
        return _fixed(value)
    if isinstance(value, dict):
        return {k: _fix(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fix(v) for v in value]
    return value


def _needs_fix(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Decimal):
        return _fixed(value) is not value
    if isinstance(value, dict):
        return any(_needs_fix(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_needs_fix(v) for v in value)
    return False


def dumps(value: Any) -> bytes:
    """Encode plain data (dicts, lists, Python-native values) as canonical JSON bytes."""
    if _needs_fix(value):
        value = _fix(value)
    return _encoder.encode(value)


def to_text(value: Any) -> str:
    """Return the canonical text of one scalar value (used for keys, ids and TEXT columns)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return str(_fixed(value))
    return dumps(value).decode("utf-8").strip('"')


def position_dict(position: Position | None) -> dict[str, Any] | None:
    """The canonical form of a position."""
    if position is None:
        return None
    return {"stream": position.stream, "partition": position.partition, "offset": position.offset}


def source_dict(source: SourceInfo) -> dict[str, Any]:
    """The canonical form of a source block (native position fields inlined)."""
    out: dict[str, Any] = {
        "connector": source.connector,
        "name": source.name,
        "ts_ms": source.ts_ms,
        "snapshot": source.snapshot,
        "db": source.database,
        "schema": source.schema,
        "table": source.table,
    }
    if source.version is not None:
        out["version"] = source.version
    out.update(source.native)
    return out


def event_dict(event: ChangeEvent) -> dict[str, Any]:
    """The canonical form of a row change (``kind`` ``"change"``)."""
    out: dict[str, Any] = {
        "kind": "change",
        "op": event.op.value,
        "table": str(event.table),
        "key": event.key,
        "before": event.before,
        "after": event.after,
        "unavailable": list(event.unavailable),
        "source": source_dict(event.source),
        "position": position_dict(event.position),
        "ts_ms": event.ts_ms,
    }
    if event.transaction is not None:
        out["transaction"] = {
            "id": event.transaction.id,
            "total_order": event.transaction.total_order,
            "data_collection_order": event.transaction.data_collection_order,
        }
    if event.schema is not None:
        out["schema"] = {
            "name": event.schema.name,
            "version": event.schema.version,
            "fingerprint": event.schema.fingerprint,
        }
    if event.meta:
        out["meta"] = event.meta
    if event.profile is not None:
        out["profile"] = event.profile
    return out


def decoded_dict(item: Any) -> dict[str, Any]:
    """The canonical form of anything the decoder returns, tagged with its ``kind``."""
    if isinstance(item, ChangeEvent):
        return event_dict(item)
    if isinstance(item, TransactionMarker):
        return {
            "kind": "transaction",
            "status": item.status,
            "id": item.id,
            "ts_ms": item.ts_ms,
            "event_count": item.event_count,
            "data_collections": item.data_collections,
            "position": position_dict(item.position),
        }
    if isinstance(item, SchemaChange):
        return {
            "kind": "schema_change",
            "database": item.database,
            "schema": item.schema,
            "ddl": item.ddl,
            "table_changes": item.table_changes,
            "source": source_dict(item.source),
            "ts_ms": item.ts_ms,
            "position": position_dict(item.position),
        }
    if isinstance(item, Tombstone):
        return {"kind": "tombstone", "key": item.key, "position": position_dict(item.position)}
    if isinstance(item, Heartbeat):
        return {"kind": "heartbeat", "ts_ms": item.ts_ms, "position": position_dict(item.position)}
    raise TypeError(f"not a decoded message: {type(item).__name__}")


def dead_letter_dict(letter: DeadLetter) -> dict[str, Any]:
    """The canonical form of a dead letter; original bytes are base64 (``value_b64``)."""
    out: dict[str, Any] = {
        "step": letter.step,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "position": position_dict(letter.position),
        "failed_at_ms": letter.failed_at_ms,
        "key_b64": None if letter.key is None else base64.b64encode(letter.key).decode("ascii"),
        "value_b64": None
        if letter.value is None
        else base64.b64encode(letter.value).decode("ascii"),
    }
    if letter.event is not None:
        out["event"] = letter.event
    return out
