"""Telling a parsed message's kind from its fields, when no schema says it.

The kinds are those of :data:`~cdcflow.schemas.debezium.compiled.MessageKind`. A schemaless
message is a change envelope when it has ``op`` and one of ``source``, ``after``, ``before``
(:func:`looks_like_envelope`); otherwise :func:`guess_kind` tells transaction markers, schema
changes and heartbeats from unwrapped rows. Before a message is read as a row,
:func:`refuse_non_row` applies the *Envelope or row* rule of docs/decoding.md.
"""

from __future__ import annotations

from typing import Any

from cdcflow.errors import DecodeError
from cdcflow.schemas.debezium.compiled import MessageKind

_TRANSACTION_KEYS = frozenset({"status", "id", "ts_ms", "event_count", "data_collections"})

#: The fields of a Debezium change envelope that a genuine unwrapped record does not carry
#: two of (see docs/decoding.md, *Envelope or row*).
ENVELOPE_FIELDS = frozenset({"op", "before", "after", "source", "transaction"})


def looks_like_envelope(payload: dict[str, Any]) -> bool:
    """True when ``payload`` has ``op`` and one of ``source``, ``after``, ``before``."""
    return "op" in payload and ("source" in payload or "after" in payload or "before" in payload)


def guess_kind(payload: dict[str, Any]) -> MessageKind:
    """Tell a schemaless non-envelope message's kind from its fields.

    Transaction markers have only the metadata fields and a BEGIN/END status; schema changes
    carry ``ddl`` with ``databaseName`` or ``tableChanges``; a heartbeat is ``{"ts_ms": n}``.
    Anything else is an unwrapped row (``ExtractNewRecordState``).
    """
    if payload.get("status") in ("BEGIN", "END") and "id" in payload:
        if payload.keys() <= _TRANSACTION_KEYS:
            return "transaction"
    if "ddl" in payload and ("databaseName" in payload or "tableChanges" in payload):
        return "schema_change"
    if len(payload) == 1 and "ts_ms" in payload:
        return "heartbeat"
    return "row"


def refuse_non_row(payload: dict[str, Any]) -> None:
    """Raise :class:`DecodeError` unless ``payload`` may be read as an unwrapped record (a row).

    The rule: a row has at least one column; it carries at most one of the envelope's own
    field names ``op``, ``before``, ``after``, ``source``, ``transaction`` (more means a
    broken envelope, e.g. one without ``op``); and it is not a schema/payload wrapper missing
    its payload (a ``schema`` object with a Connect ``type`` as its only field).
    """
    if not payload:
        raise DecodeError("an empty object is neither a change envelope nor a row")
    found = ENVELOPE_FIELDS.intersection(payload)
    if len(found) >= 2:
        missing = "" if "op" in found else " (it has no 'op')"
        raise DecodeError(
            f"not a valid Debezium envelope{missing}: it carries the envelope fields "
            f"{sorted(found)} but no usable 'op' with 'before', 'after' or 'source'; "
            "it is not read as a row"
        )
    if len(payload) == 1:
        only = next(iter(payload))
        value = payload[only]
        if only == "schema" and isinstance(value, dict) and "type" in value:
            raise DecodeError("a schema/payload wrapper without its 'payload'")
