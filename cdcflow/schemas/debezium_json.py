"""Debezium JSON decoding: message bytes to :mod:`cdcflow.schemas.model` values.

One decoder handles every flavour the JSON converter produces:

* envelopes with the ``schema``/``payload`` wrapper (``schemas.enable=true``): Debezium and
  Kafka Connect logical types are decoded from the schema. Each distinct schema is compiled
  once into a converter and cached (keyed by its exact bytes), never re-read per message;
* envelopes without the wrapper: values as sent;
* unwrapped records from ``ExtractNewRecordState``: ``__op``, ``__deleted``, ``__table``,
  ``__db``, ``__schema``, ``__source_*``; every other ``__`` field goes to ``meta``;
* MongoDB envelopes whose ``before``/``after`` are Extended-JSON strings; updates without a
  full document keep their decoded ``updateDescription`` (or legacy ``patch``/``filter``) in
  :attr:`ChangeEvent.meta`;
* tombstones (a null value), transaction BEGIN/END messages, schema-change messages and
  heartbeats, each returned as its own kind, never as a row.

The TOAST placeholder ``__debezium_unavailable_value`` (also in its base64, raw-bytes and
one-element array forms) is never returned as a value: the column is removed from the row image
and named in :attr:`ChangeEvent.unavailable`. See docs/decoding.md for the full contract.

Keys: the message key (Debezium's key struct, with or without a schema) becomes
:attr:`ChangeEvent.key`. Without a message key, ``key_columns`` (a table glob to column list
mapping) names the key columns; MongoDB documents use ``_id``.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from cdcflow.errors import DecodeError
from cdcflow.schemas import ejson
from cdcflow.schemas.connect import RowChecker, compile_struct
from cdcflow.schemas.logical import JSON_DECODER, UNAVAILABLE_PLACEHOLDER, exact_json_float
from cdcflow.schemas.model import (
    ChangeEvent,
    Column,
    Decoded,
    Heartbeat,
    Op,
    Position,
    SchemaChange,
    SourceInfo,
    TableId,
    TableSchema,
    Tombstone,
    TransactionInfo,
    TransactionMarker,
)

_PLACEHOLDER_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
_PLACEHOLDER_LIST = [UNAVAILABLE_PLACEHOLDER]
_OPS = {op.value: op for op in Op}
_PLACEHOLDER_BYTES = UNAVAILABLE_PLACEHOLDER.encode()
_PLACEHOLDER_B64_BYTES = _PLACEHOLDER_B64.encode()
_PLACEHOLDER_FORMS = (
    UNAVAILABLE_PLACEHOLDER,
    _PLACEHOLDER_B64,
    _PLACEHOLDER_LIST,
    _PLACEHOLDER_BYTES,
)
_SCHEMA_CACHE_LIMIT = 4096

TombstoneHandling = Literal["marker", "delete"]


class _Wrapped(msgspec.Struct):
    """The JSON converter's ``{"schema": ..., "payload": ...}`` wrapper.

    The schema stays raw (its bytes key the compiled-schema cache and it is parsed only on a
    cache miss); the payload is parsed in the same pass. A missing field keeps its default
    (empty schema, ``UNSET`` payload): then the message is not wrapped.
    """

    schema: msgspec.Raw = msgspec.Raw(b"")
    payload: Any = msgspec.UNSET


class _WrappedKey(msgspec.Struct):
    """A schema-wrapped message key, payload left raw."""

    schema: msgspec.Raw = msgspec.Raw(b"")
    payload: msgspec.Raw = msgspec.Raw(b"")


_wrapped_decoder = msgspec.json.Decoder(_Wrapped, float_hook=exact_json_float)
_wrapped_key_decoder = msgspec.json.Decoder(_WrappedKey, float_hook=exact_json_float)
_any_decoder = JSON_DECODER
_NULL = msgspec.Raw(b"null")
_WRAPPER_KEYS = frozenset({"schema", "payload"})
_UNPARSED = object()

RowConverter = RowChecker


class _CompiledSchema:
    """What a schema tells the decoder: the message kind, row converter and table schema.

    ``kind`` is ``"envelope"``, ``"row"`` (an unwrapped record), ``"transaction"``,
    ``"schema_change"`` or ``"heartbeat"``.
    """

    __slots__ = ("_keyed", "error", "kind", "row_converter", "table_schema")

    def __init__(
        self, row_converter: RowConverter | None, table_schema: TableSchema | None, kind: str
    ) -> None:
        self.row_converter = row_converter
        self.table_schema = table_schema
        self.kind = kind
        self.error: str | None = None
        self._keyed: dict[tuple[str, ...], TableSchema] = {}

    @property
    def is_envelope(self) -> bool:
        """True for Debezium change envelopes."""
        return self.kind == "envelope"

    def with_key(self, key_columns: tuple[str, ...]) -> TableSchema | None:
        """The table schema with ``key_columns`` filled in (built once per key shape)."""
        if self.table_schema is None:
            return None
        found = self._keyed.get(key_columns)
        if found is None:
            found = msgspec.structs.replace(self.table_schema, key_columns=key_columns)
            self._keyed[key_columns] = found
        return found


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


def _compile_key_schema(raw: bytes) -> RowConverter:
    """Compile a key schema block into a checker (one that raises when it cannot be used)."""
    try:
        schema = _any_decoder.decode(raw)
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


#: Schema names (suffixes) of the messages that are not rows.
_KIND_BY_SCHEMA_NAME = (
    (".TransactionMetadataValue", "transaction"),
    (".SchemaChangeValue", "schema_change"),
    (".Heartbeat", "heartbeat"),
    (".ServerHeartbeat", "heartbeat"),
)


def _compile_value_schema(raw: bytes) -> _CompiledSchema:
    """Compile a value schema block: its kind, a row converter and the table schema."""
    try:
        schema = _any_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"the schema block is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise DecodeError("the schema block must be a JSON object")
    fingerprint = hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]
    name = schema.get("name")
    if isinstance(name, str):
        for suffix, kind in _KIND_BY_SCHEMA_NAME:
            if name.endswith(suffix):
                return _CompiledSchema(row_converter=None, table_schema=None, kind=kind)
    fields = {str(f.get("field")): f for f in _struct_fields(schema)}
    row_schema = None
    kind = "row"
    for image in ("after", "before"):
        candidate = fields.get(image)
        if isinstance(candidate, dict) and candidate.get("type") == "struct" and "op" in fields:
            row_schema = candidate
            kind = "envelope"
            break
    if row_schema is None and "op" in fields and ("after" in fields or "source" in fields):
        # An envelope whose row images are strings (MongoDB) or that has none.
        return _CompiledSchema(row_converter=None, table_schema=None, kind="envelope")
    if row_schema is None:
        if "ddl" in fields and ("databaseName" in fields or "tableChanges" in fields):
            return _CompiledSchema(row_converter=None, table_schema=None, kind="schema_change")
        row_schema = schema
    table_schema = TableSchema(
        name=row_schema.get("name"),
        version=row_schema.get("version"),
        fingerprint=fingerprint,
        columns=_columns(row_schema),
    )
    return _CompiledSchema(
        row_converter=compile_struct(row_schema), table_schema=table_schema, kind=kind
    )


_SNAPSHOT_VALUES = frozenset(
    {
        "true",
        "false",
        "first",
        "last",
        "first_in_data_collection",
        "last_in_data_collection",
        "incremental",
    }
)


def _normalise_snapshot(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str and value in _SNAPSHOT_VALUES:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _source_info(source: Any, owned: bool = False) -> SourceInfo:
    """Normalise a ``source`` block; every field that is not a common one goes to ``native``.

    ``owned``: the block was parsed for this call only, so it becomes ``native`` itself
    (its common fields popped) instead of being copied.
    """
    if type(source) is not dict:
        return SourceInfo()
    native = source if owned else source.copy()
    pop = native.pop
    ts_ms = pop("ts_ms", None)
    table = pop("table", None)
    collection = pop("collection", None)
    return SourceInfo(
        connector=pop("connector", None),
        name=pop("name", None),
        ts_ms=ts_ms if type(ts_ms) is int else _checked_int(ts_ms, "source.ts_ms"),
        snapshot=_normalise_snapshot(pop("snapshot", None)),
        database=pop("db", None),
        schema=pop("schema", None),
        table=table or collection,
        version=pop("version", None),
        native=native,
    )


def _take_unavailable(row: dict[str, Any]) -> tuple[str, ...]:
    """Remove placeholder values from ``row`` and return the names of those columns.

    The placeholder is recognised as text, as base64 text (a JSON ``bytes`` column), as raw
    bytes (an Avro ``bytes`` column) and as a one-element array.
    """
    values = row.values()
    if (
        UNAVAILABLE_PLACEHOLDER not in values
        and _PLACEHOLDER_B64 not in values
        and _PLACEHOLDER_LIST not in values
        and _PLACEHOLDER_BYTES not in values
    ):
        return ()
    missing = tuple(name for name, value in row.items() if value in _PLACEHOLDER_FORMS)
    for name in missing:
        del row[name]
    return missing


def _checked_int(value: Any, what: str) -> int | None:
    """``value`` when it is an integer or null; a :class:`DecodeError` naming ``what`` else."""
    if value is None or type(value) is int:
        return value
    raise DecodeError(
        f"{what!r} must be an integer (epoch milliseconds) or null, got {type(value).__name__}"
    )


def _int_or_none(payload: Mapping[str, Any], name: str) -> int | None:
    """The integer field ``name`` of ``payload`` (or None); other values are DecodeErrors."""
    return _checked_int(payload.get(name), name)


def _as_int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class DebeziumJsonDecoder:
    """Decode Debezium JSON message values (and keys) into change events and markers.

    ``key_columns`` maps table globs (matched against ``str(TableId)``) to key column lists,
    used when a message has no key. ``tombstones`` says what a null value is: ``"marker"``
    (Debezium's default: a tombstone following a delete, not a change) or ``"delete"`` (the
    stream carries deletes only as tombstones, e.g. ``ExtractNewRecordState`` with
    ``delete.tombstone.handling.mode=tombstone``; needs ``topic`` to know the table).

    Instances are cheap, hold a bounded cache of compiled schemas, and are not thread-safe.
    """

    def __init__(
        self,
        key_columns: Mapping[str, Sequence[str]] | None = None,
        tombstones: TombstoneHandling = "marker",
    ) -> None:
        self._key_columns = {glob: tuple(cols) for glob, cols in (key_columns or {}).items()}
        self._tombstones = tombstones
        self._value_schemas: dict[bytes, _CompiledSchema] = {}
        self._key_schemas: dict[bytes, RowConverter | None] = {}
        self._key_column_cache: dict[TableId, tuple[str, ...] | None] = {}
        self._last_raw: msgspec.Raw = msgspec.Raw(b"")
        self._last_schema_bytes = b""
        self._table_ids: dict[tuple[str | None, str | None, str], TableId] = {}
        self._maybe_unavailable = True
        self._last_compiled: _CompiledSchema | None = None
        # True while interpreting a payload this decoder parsed itself (its dicts may be
        # reused in place); False for payloads handed in by other codecs. Set by every
        # entry point (decode, decode_payload) before interpreting.
        self._owned = False

    # -- public API -----------------------------------------------------------------------

    def decode(
        self,
        value: bytes | None,
        position: Position,
        key: bytes | None = None,
        topic: str | None = None,
    ) -> Decoded:
        """Decode one message.

        ``topic`` (the Kafka topic, when there is one) names the table when the message does
        not. A null, empty or ``null`` value is a tombstone. Raises :class:`DecodeError` with
        the reason when the message cannot be decoded, whatever the input (invalid UTF-8,
        nesting too deep for the parser, values of the wrong type): no other exception escapes.
        """
        try:
            return self._decode(value, position, key, topic)
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - bad input must end as a DecodeError
            raise as_decode_error(exc) from None

    def _decode(
        self, value: bytes | None, position: Position, key: bytes | None, topic: str | None
    ) -> Decoded:
        decoded_key = self.decode_key(key) if key is not None else None
        if not value:
            return self.tombstone(position, decoded_key, topic)
        compiled: _CompiledSchema | None = None
        payload: Any = _UNPARSED
        scan_from = 0
        if value.startswith(b'{"schema"'):
            # Kafka Connect's JsonConverter writes the schema first: the common case.
            last = self._last_schema_bytes
            start = len(last) + 21  # len('{"schema":') + len(last) + len(',"payload":')
            if (
                last
                and value.startswith(last, 10)
                and value.startswith(b',"payload":', start - 11)
                and value.endswith(b"}")
            ):
                # Same schema bytes as the previous message: parse only the payload.
                try:
                    payload = _any_decoder.decode(memoryview(value)[start:-1])
                except msgspec.DecodeError:
                    payload = _UNPARSED  # not the exact layout after all: decode it fully
                else:
                    if payload is None:
                        return self.tombstone(position, decoded_key, topic)
                    compiled = self._last_compiled
                    scan_from = start
        if payload is _UNPARSED and value.startswith(b'{"schema"'):
            wrapped = self._unwrap(value)
            if wrapped is not None:
                payload = wrapped.payload
                if payload is None:
                    return self.tombstone(position, decoded_key, topic)
                if wrapped.schema != _NULL:
                    compiled = self._compile(wrapped.schema)
                scan_from = len(wrapped.schema)
        if payload is _UNPARSED:
            try:
                payload = _any_decoder.decode(value)
            except msgspec.DecodeError:
                payload = self._parse(value)  # raises the reason (or: whitespace, a tombstone)
            if payload is None:
                return self.tombstone(position, decoded_key, topic)
            if type(payload) is dict and len(payload) == 1 and "payload" in payload:
                # {"payload": ...} without a schema (several producers write it): the
                # wrapper of a schemaless message.
                inner = payload["payload"]
                if inner is None:
                    return self.tombstone(position, decoded_key, topic)
                if type(inner) is dict:
                    payload = inner
            if type(payload) is dict and len(payload) == 2 and payload.keys() == _WRAPPER_KEYS:
                # A wrapper in another field order (or with whitespace): decode it properly.
                wrapped = self._unwrap(value)
                assert wrapped is not None
                payload = wrapped.payload
                if payload is None:
                    return self.tombstone(position, decoded_key, topic)
                if wrapped.schema != _NULL:
                    compiled = self._compile(wrapped.schema)
        if type(payload) is not dict:
            raise DecodeError(
                f"a Debezium message must be a JSON object, got {type(payload).__name__}"
            )
        if value.count(b"[", scan_from) + value.count(b"{", scan_from) > MAX_DEPTH:
            _check_depth(payload)  # rare: only messages with many brackets are walked
        # One scan of the bytes (past the schema block) tells whether any row image can hold
        # a TOAST placeholder; row images are only searched when it says so.
        self._maybe_unavailable = (
            value.find(_PLACEHOLDER_BYTES, scan_from) >= 0
            or value.find(_PLACEHOLDER_B64_BYTES, scan_from) >= 0
        )
        self._owned = True
        return self._interpret(payload, compiled, position, decoded_key, topic)

    @staticmethod
    def _unwrap(value: bytes) -> _Wrapped | None:
        """Decode a ``{"schema": ..., "payload": ...}`` wrapper; None when it is not one."""
        try:
            wrapped = _wrapped_decoder.decode(value)
        except msgspec.ValidationError:
            return None  # valid JSON, but not an object: reported by the caller
        except msgspec.DecodeError as exc:
            raise DecodeError(_json_reason(exc, value)) from None
        if wrapped.payload is msgspec.UNSET or not wrapped.schema:
            return None
        return wrapped

    def decode_key(self, key: bytes) -> dict[str, Any] | None:
        """Decode a Debezium message key (a struct, optionally schema-wrapped) into a dict.

        A primitive key (a bare string or number) becomes ``{"id": value}``; an empty or
        ``null`` key is None.
        """
        if not key or not key.strip():
            return None
        converter: RowConverter | None = None
        wrapped: _WrappedKey | None = None
        if b'"payload"' in key:
            try:
                wrapped = _wrapped_key_decoder.decode(key)
            except msgspec.ValidationError:
                wrapped = None
            except msgspec.DecodeError as exc:
                raise DecodeError(f"message key: {_json_reason(exc, key)}") from None
        if wrapped is not None and wrapped.schema and wrapped.payload:
            if wrapped.schema != _NULL:
                raw_schema = bytes(wrapped.schema)
                if raw_schema not in self._key_schemas:
                    self._key_schemas[raw_schema] = _compile_key_schema(raw_schema)
                converter = self._key_schemas[raw_schema]
            parsed = _any_decoder.decode(wrapped.payload)
        else:
            try:
                parsed = _any_decoder.decode(key)
            except msgspec.DecodeError as exc:
                raise DecodeError(f"message key: {_json_reason(exc, key)}") from None
        if parsed is None:
            return None
        if not isinstance(parsed, dict):
            # A primitive key (e.g. a string id): name it like Connect does.
            return {"id": parsed}
        if converter is not None:
            try:
                converter(parsed, ())
            except DecodeError as exc:
                raise DecodeError(f"message key: {exc}") from None
        return parsed

    def decode_payload(
        self,
        payload: dict[str, Any],
        position: Position,
        key: dict[str, Any] | None = None,
        topic: str | None = None,
        table_schema: TableSchema | None = None,
        is_envelope: bool | None = None,
    ) -> Decoded:
        """Interpret an already-parsed message payload (used by other codecs, e.g. Avro).

        ``payload`` must hold Python-native values (logical types already converted);
        placeholder detection, kind detection (row, transaction, schema change, heartbeat,
        unwrapped record), key derivation and table naming work exactly as for JSON.
        ``is_envelope`` forces the envelope/unwrapped decision when the codec knows it.
        """
        compiled = None
        self._maybe_unavailable = True
        self._owned = False
        if table_schema is not None or is_envelope is not None:
            envelope = (
                is_envelope
                if is_envelope is not None
                else "op" in payload
                and ("source" in payload or "after" in payload or "before" in payload)
            )
            compiled = _CompiledSchema(
                row_converter=None,
                table_schema=table_schema,
                kind="envelope" if envelope else "row",
            )
        return self._interpret(payload, compiled, position, key, topic)

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _parse(value: bytes) -> Any:
        try:
            return _any_decoder.decode(value)
        except msgspec.DecodeError as exc:
            if not value.strip():
                return None  # a whitespace-only value is a tombstone
            raise DecodeError(_json_reason(exc, value)) from None

    def _compile(self, raw_schema: msgspec.Raw) -> _CompiledSchema:
        """Return the compiled form of a schema block, compiling it on first sight only.

        Consecutive messages usually share one schema: that case costs one byte comparison.
        """
        if raw_schema == self._last_raw:
            return self._last_compiled  # type: ignore[return-value]
        key = bytes(raw_schema)
        compiled = self._value_schemas.get(key)
        if compiled is None:
            if len(self._value_schemas) >= _SCHEMA_CACHE_LIMIT:
                self._value_schemas.clear()
            try:
                compiled = _compile_value_schema(key)
            except DecodeError as exc:
                # A schema that cannot be used fails every message it comes with: remember
                # why instead of compiling it again for each one.
                compiled = _CompiledSchema(row_converter=None, table_schema=None, kind="error")
                compiled.error = f"the schema block cannot be used: {exc}"
            self._value_schemas[key] = compiled
        if compiled.error is not None:
            raise DecodeError(compiled.error)
        self._last_raw = raw_schema
        self._last_compiled = compiled
        self._last_schema_bytes = key
        return compiled

    def tombstone(
        self, position: Position, key: dict[str, Any] | None, topic: str | None
    ) -> Tombstone | ChangeEvent:
        """What a tombstone (a null value) at ``position`` becomes under this decoder's mode.

        ``marker``: a :class:`Tombstone`; ``delete``: a delete of ``key`` in the table the
        ``topic`` names. Raises :class:`DecodeError` when a delete cannot be built.
        """
        if self._tombstones == "marker":
            return Tombstone(position=position, key=key)
        if topic is None:
            raise DecodeError(
                "a tombstone was read as a delete but there is no topic to name the table"
            )
        if not key:
            raise DecodeError("a tombstone was read as a delete but the message has no key")
        return ChangeEvent(
            op=Op.DELETE, table=TableId.parse(topic), position=position, key=key, before=dict(key)
        )

    def _interpret(
        self,
        payload: dict[str, Any],
        compiled: _CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
    ) -> Decoded:
        if compiled is not None:
            kind = compiled.kind
            if kind == "row":
                # A schema name we do not know: the fields still tell markers from rows.
                kind = _guess_kind(payload)
        elif "op" in payload and ("source" in payload or "after" in payload or "before" in payload):
            kind = "envelope"
        else:
            kind = _guess_kind(payload)
        if kind == "row":
            _refuse_non_row(payload)
        if kind == "envelope":
            return self._envelope(payload, compiled, position, key, topic)
        if kind == "transaction":
            return TransactionMarker(
                status=str(payload.get("status")),
                id=str(payload.get("id")),
                position=position,
                ts_ms=_int_or_none(payload, "ts_ms"),
                event_count=_int_or_none(payload, "event_count"),
                data_collections=payload.get("data_collections"),
            )
        if kind == "schema_change":
            source = _source_info(payload.get("source"))
            history_position = payload.get("position")
            if isinstance(history_position, dict):
                # The schema history topic keeps the binlog position beside the source block.
                source.native.update(
                    (k, v) for k, v in history_position.items() if k not in source.native
                )
            return SchemaChange(
                position=position,
                database=payload.get("databaseName") or source.database,
                schema=payload.get("schemaName") or source.schema,
                ddl=payload.get("ddl"),
                table_changes=payload.get("tableChanges") or [],
                source=source,
                ts_ms=_int_or_none(payload, "ts_ms"),
            )
        if kind == "heartbeat":
            return Heartbeat(position=position, ts_ms=_int_or_none(payload, "ts_ms"))
        return self._unwrapped(payload, compiled, position, key, topic)

    def _envelope(
        self,
        payload: dict[str, Any],
        compiled: _CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
    ) -> ChangeEvent:
        op_code = payload.get("op")
        op = _OPS.get(op_code) if type(op_code) is str else None
        if op is None:
            raise DecodeError(f"unknown op {op_code!r}: expected one of c, u, d, r, t")
        raw_source = payload.get("source")
        if raw_source is not None and type(raw_source) is not dict:
            raise DecodeError(
                f"'source' must be an object or null, got {type(raw_source).__name__}"
            )
        source = _source_info(raw_source, owned=self._owned)
        before = payload.get("before")
        after = payload.get("after")
        is_mongo = (
            source.connector == "mongodb" or isinstance(after, str) or isinstance(before, str)
        )
        if isinstance(before, str):
            before = ejson.decode_document(before)
        if isinstance(after, str):
            after = ejson.decode_document(after)
        if before is not None and type(before) is not dict:
            raise DecodeError(f"'before' must be an object or null, got {type(before).__name__}")
        if after is not None and type(after) is not dict:
            raise DecodeError(f"'after' must be an object or null, got {type(after).__name__}")
        unavailable: tuple[str, ...] = ()
        converter = compiled.row_converter if compiled is not None else None
        check = self._maybe_unavailable
        if after is not None:
            if check:
                unavailable = _take_unavailable(after)
            if converter is not None:
                converter(after, unavailable)
        if before is not None:
            missing_before = _take_unavailable(before) if check else ()
            if converter is not None:
                converter(before, missing_before)
            if op is Op.DELETE:
                unavailable = missing_before
        meta: dict[str, Any] = {}
        if is_mongo:
            _mongo_meta(payload, meta)
        if after is None and op is not Op.TRUNCATE and op is not Op.DELETE:
            if not (is_mongo and op is Op.UPDATE and meta):
                raise DecodeError(f"op {op.value!r} needs an 'after' row image, got null")
        table = self._table_id(source, topic)
        if is_mongo and key is not None and "id" in key and "_id" not in key:
            key = {"_id": _mongo_key(key["id"])}
        if is_mongo and key is None and isinstance(meta.get("filter"), dict):
            if "_id" in meta["filter"]:
                key = {"_id": meta["filter"]["_id"]}
        if key is None and op is not Op.TRUNCATE:
            key = self._derive_key(table, after if after is not None else before, is_mongo)
        if op is Op.DELETE and before is None and not key:
            raise DecodeError(
                "a delete with neither a key nor a 'before' image names no row to delete "
                "(set key_columns, send the message key, or enable the before image)"
            )
        tx = payload.get("transaction")
        transaction = None
        if tx is not None and type(tx) is not dict:
            raise DecodeError(f"'transaction' must be an object or null, got {type(tx).__name__}")
        if tx is not None and tx.get("id") is not None:
            transaction = TransactionInfo(
                id=str(tx["id"]),
                total_order=_as_int_or_none(tx.get("total_order")),
                data_collection_order=_as_int_or_none(tx.get("data_collection_order")),
            )
        table_schema = compiled.table_schema if compiled is not None else None
        if table_schema is not None and key and not table_schema.key_columns:
            table_schema = compiled.with_key(tuple(key))  # type: ignore[union-attr]
        return ChangeEvent(
            op=op,
            table=table,
            position=position,
            key=key,
            before=before,
            after=after,
            unavailable=unavailable,
            source=source,
            ts_ms=ts_ms
            if type(ts_ms := payload.get("ts_ms")) is int
            else _int_or_none(payload, "ts_ms"),
            transaction=transaction,
            schema=table_schema,
            meta=meta,
        )

    def _unwrapped(
        self,
        row: dict[str, Any],
        compiled: _CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
    ) -> ChangeEvent:
        unavailable = _take_unavailable(row) if self._maybe_unavailable else ()
        if compiled is not None and compiled.row_converter is not None:
            compiled.row_converter(row, unavailable)
        meta = {name[2:]: row.pop(name) for name in [n for n in row if n.startswith("__")]}
        deleted = meta.pop("deleted", None)
        op_code = meta.pop("op", None)
        if op_code is not None:
            op = _OPS.get(op_code) if isinstance(op_code, str) else None
            if op is None:
                raise DecodeError(f"unknown __op {op_code!r}: expected one of c, u, d, r, t")
        elif deleted in (True, "true"):
            op = Op.DELETE
        else:
            op = Op.UPDATE
        if deleted in (True, "true"):
            op = Op.DELETE
        native = {
            name[len("source_") :]: meta.pop(name)
            for name in [n for n in meta if n.startswith("source_")]
        }
        meta_db, meta_schema, meta_table = (
            meta.pop("db", None),
            meta.pop("schema", None),
            meta.pop("table", None),
        )
        source = SourceInfo(
            connector=native.pop("connector", None),
            name=native.pop("name", None),
            ts_ms=_checked_int(native.pop("ts_ms", None), "__source_ts_ms"),
            snapshot=_normalise_snapshot(native.pop("snapshot", None)),
            database=native.pop("db", None) or meta_db,
            schema=native.pop("schema", None) or meta_schema,
            table=native.pop("table", None) or meta_table,
            version=native.pop("version", None),
            native=native,
        )
        for native_name in _UNWRAPPED_NATIVE:
            if native_name in meta:
                source.native[native_name] = meta.pop(native_name)
        table = self._table_id(source, topic)
        before, after = (row, None) if op is Op.DELETE else (None, row)
        if key is None:
            key = self._derive_key(table, row, is_mongo=False)
        table_schema = compiled.table_schema if compiled is not None else None
        if table_schema is not None and key and not table_schema.key_columns:
            table_schema = compiled.with_key(tuple(key))  # type: ignore[union-attr]
        return ChangeEvent(
            op=op,
            table=table,
            position=position,
            key=key,
            before=before,
            after=after,
            unavailable=unavailable,
            source=source,
            ts_ms=_checked_int(meta.pop("ts_ms", None), "__ts_ms"),
            schema=table_schema,
            meta=meta,
        )

    def _table_id(self, source: SourceInfo, topic: str | None) -> TableId:
        if source.table:
            ident = (source.database, source.schema, source.table)
            try:
                found = self._table_ids.get(ident)
            except TypeError:  # a list or object where a name belongs
                found = None
            if found is None:
                for part, value in zip(("db", "schema", "table"), ident, strict=True):
                    if value is not None and type(value) is not str:
                        raise DecodeError(
                            f"the table's {part} name must be text, got {type(value).__name__}"
                        )
                if len(self._table_ids) >= _SCHEMA_CACHE_LIMIT:
                    self._table_ids.clear()
                found = TableId(database=ident[0], schema=ident[1], table=ident[2])
                self._table_ids[ident] = found
            return found
        if topic:
            return TableId.parse(topic)
        raise DecodeError(
            "cannot tell which table this message belongs to: its source block names no table "
            "and there is no topic (add __table/__db via ExtractNewRecordState add.fields)"
        )

    def _derive_key(
        self, table: TableId, row: dict[str, Any] | None, is_mongo: bool
    ) -> dict[str, Any] | None:
        if row is None:
            return None
        if is_mongo and "_id" in row:
            return {"_id": row["_id"]}
        if table not in self._key_column_cache:
            name = str(table)
            found: tuple[str, ...] | None = None
            for glob, glob_columns in self._key_columns.items():
                if fnmatch.fnmatchcase(name, glob):
                    found = glob_columns
                    break
            self._key_column_cache[table] = found
        columns = self._key_column_cache[table]
        if not columns:
            return None
        missing = [c for c in columns if c not in row]
        if missing:
            raise DecodeError(f"key column(s) {missing} configured for {table} are not in the row")
        return {c: row[c] for c in columns}


#: ``__`` fields of unwrapped records that are connector-native positions (go to ``source``).
_UNWRAPPED_NATIVE = (
    "lsn",
    "txId",
    "file",
    "pos",
    "row",
    "gtid",
    "scn",
    "commit_scn",
    "commit_lsn",
    "change_lsn",
    "event_serial_no",
    "ord",
)

_TRANSACTION_KEYS = frozenset({"status", "id", "ts_ms", "event_count", "data_collections"})


#: The fields of a Debezium change envelope that a genuine unwrapped record does not carry
#: two of (see docs/decoding.md, *Envelope or row*).
ENVELOPE_FIELDS = frozenset({"op", "before", "after", "source", "transaction"})


def _refuse_non_row(payload: dict[str, Any]) -> None:
    """Raise unless ``payload`` may be read as an unwrapped record (a row).

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


def _guess_kind(payload: dict[str, Any]) -> str:
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


def _mongo_meta(payload: dict[str, Any], meta: dict[str, Any]) -> None:
    """Keep MongoDB's update details in ``meta``, Extended JSON decoded.

    Debezium 2.x (``capture.mode=change_streams``) sends ``updateDescription`` with
    ``updatedFields`` as an Extended-JSON string, ``removedFields`` and ``truncatedArrays``;
    the legacy oplog mode sends ``patch`` and ``filter`` strings.
    """
    description = payload.get("updateDescription")
    if isinstance(description, dict):
        updated = description.get("updatedFields")
        if isinstance(updated, str):
            updated = ejson.decode_document(updated)
        meta["updateDescription"] = {
            "updatedFields": updated,
            "removedFields": description.get("removedFields"),
            "truncatedArrays": description.get("truncatedArrays"),
        }
    for name in ("patch", "filter"):
        value = payload.get(name)
        if value is not None:
            meta[name] = ejson.decode_document(value) if isinstance(value, str) else value


def _mongo_key(value: Any) -> Any:
    """MongoDB keys carry ``_id`` as Extended-JSON text (``{"$oid": ...}``, or a quoted id)."""
    if isinstance(value, str):
        try:
            return ejson.convert_value(_any_decoder.decode(value))
        except (msgspec.DecodeError, DecodeError):
            return value
    return ejson.convert_value(value)


#: The deepest nesting of objects and arrays a message may have (MongoDB allows 100 levels in
#: a document; the envelope adds two). Deeper input is refused before any step recurses on it.
MAX_DEPTH = 200


def _check_depth(payload: Any) -> None:
    """Raise :class:`DecodeError` when ``payload`` nests deeper than :data:`MAX_DEPTH`."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DecodeError(f"the message nests objects and arrays deeper than {MAX_DEPTH}")
        children = item.values() if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))


def as_decode_error(exc: BaseException) -> DecodeError:
    """The :class:`DecodeError` that reports an unexpected exception raised by bad input."""
    if isinstance(exc, DecodeError):
        return exc
    if isinstance(exc, RecursionError):
        return DecodeError("the message is nested too deeply to decode")
    if isinstance(exc, UnicodeDecodeError):
        return DecodeError(f"the message is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    return DecodeError(f"cannot decode the message ({type(exc).__name__}: {exc})")


def _json_reason(exc: msgspec.DecodeError, value: bytes) -> str:
    preview = value[:60].decode("utf-8", errors="replace")
    return f"not valid JSON ({exc}); the message starts with {preview!r}"
