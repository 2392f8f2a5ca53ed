"""The JSON converter's ``schema`` block compiled into what decoding needs.

A value schema block (Kafka Connect's description of the message, sent beside the payload when
``schemas.enable=true``) becomes a :class:`~cdcflow.schemas.debezium.compiled.CompiledSchema`:

* its **kind**: Debezium's metadata schemas are told by name (``...TransactionMetadataValue``,
  ``...SchemaChangeValue``, ``...Heartbeat``/``...ServerHeartbeat``); a struct with ``op`` and a
  struct ``after``/``before`` is a change envelope (one with ``op`` and string or missing images
  is an envelope without a row schema: MongoDB); a struct with ``ddl`` and ``databaseName`` or
  ``tableChanges`` is a schema change; anything else describes an unwrapped row;
* the **row checker** of the row image's struct (:func:`cdcflow.schemas.connect.compile_struct`:
  Connect types checked, logical types converted);
* the **table schema**: name, version, a fingerprint of the block's exact bytes and the columns
  (``__`` fields of unwrapped records are not columns).

A key schema block becomes the row checker of the key struct. Compiling is the slow part and is
done once per distinct block by the codec's cache, never per message. Failures are
:class:`~cdcflow.errors.DecodeError` values with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from cdcflow.errors import DecodeError
from cdcflow.schemas.connect import RowChecker, compile_struct
from cdcflow.schemas.debezium.compiled import CompiledSchema, MessageKind
from cdcflow.schemas.logical import JSON_DECODER
from cdcflow.schemas.model import Column, TableSchema

#: Schema names (suffixes) of the messages that are not rows.
_KIND_BY_SCHEMA_NAME: tuple[tuple[str, MessageKind], ...] = (
    (".TransactionMetadataValue", "transaction"),
    (".SchemaChangeValue", "schema_change"),
    (".Heartbeat", "heartbeat"),
    (".ServerHeartbeat", "heartbeat"),
)


def _struct_fields(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    fields = schema.get("fields")
    return fields if isinstance(fields, list) else []


def _columns(struct_schema: Mapping[str, Any]) -> tuple[Column, ...]:
    return tuple(
        Column(
            name=str(f.get("field")),
            type=str(f.get("type")),
            logical=f.get("name"),
            optional=f.get("optional") is True,
            parameters={str(k): str(v) for k, v in (f.get("parameters") or {}).items()},
        )
        for f in _struct_fields(struct_schema)
        if not str(f.get("field", "")).startswith("__")
    )


def compile_value_schema(raw: bytes) -> CompiledSchema:
    """Compile a value schema block (its exact bytes): kind, row checker and table schema.

    Raises :class:`DecodeError` when the block is not a JSON object or its row struct cannot
    be compiled.
    """
    try:
        schema = JSON_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"the schema block is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise DecodeError("the schema block must be a JSON object")
    fingerprint = hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]
    name = schema.get("name")
    if isinstance(name, str):
        for suffix, kind in _KIND_BY_SCHEMA_NAME:
            if name.endswith(suffix):
                return CompiledSchema(row_converter=None, table_schema=None, kind=kind)
    fields = {str(f.get("field")): f for f in _struct_fields(schema)}
    row_schema = None
    found_kind: MessageKind = "row"
    for image in ("after", "before"):
        candidate = fields.get(image)
        if isinstance(candidate, dict) and candidate.get("type") == "struct" and "op" in fields:
            row_schema = candidate
            found_kind = "envelope"
            break
    if row_schema is None and "op" in fields and ("after" in fields or "source" in fields):
        # An envelope whose row images are strings (MongoDB) or that has none.
        return CompiledSchema(row_converter=None, table_schema=None, kind="envelope")
    if row_schema is None:
        if "ddl" in fields and ("databaseName" in fields or "tableChanges" in fields):
            return CompiledSchema(row_converter=None, table_schema=None, kind="schema_change")
        row_schema = schema
    table_schema = TableSchema(
        name=row_schema.get("name"),
        version=row_schema.get("version"),
        fingerprint=fingerprint,
        columns=_columns(row_schema),
    )
    return CompiledSchema(
        row_converter=compile_struct(row_schema), table_schema=table_schema, kind=found_kind
    )


def compile_key_schema(raw: bytes) -> RowChecker:
    """Compile a key schema block into a checker; one that raises when it cannot be used.

    A key schema that is not a struct (a primitive key) accepts every key. A block that is not
    valid JSON, or a struct that cannot be compiled, gives a checker raising
    :class:`DecodeError` with the reason for every key sent with it.
    """
    try:
        schema = JSON_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        reason = f"the key schema block is not valid JSON: {exc}"
    else:
        if not isinstance(schema, dict) or schema.get("type") != "struct":
            return _accept_key
        try:
            return compile_struct(schema)
        except DecodeError as exc:
            reason = f"the key schema block cannot be used: {exc}"

    def refuse(row: dict[str, Any], absent: Any = ()) -> None:
        raise DecodeError(reason)

    return refuse


def _accept_key(row: dict[str, Any], absent: Any = ()) -> None:
    """The checker of a key whose schema is not a struct (a primitive key)."""
