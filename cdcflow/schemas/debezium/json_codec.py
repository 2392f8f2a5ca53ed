"""The Debezium JSON codec: message bytes (and keys) to change events and markers.

This module parses; :class:`~cdcflow.schemas.debezium.envelope.EnvelopeInterpreter` (shared
with the Avro codec) interprets. One decoder handles every flavour the JSON converter produces:

* envelopes with the ``schema``/``payload`` wrapper (``schemas.enable=true``): Debezium and
  Kafka Connect logical types are decoded from the schema. Each distinct schema block is
  compiled once (:mod:`cdcflow.schemas.debezium.schema_block`) and cached, keyed by its exact
  bytes, never re-read per message; a message whose schema bytes equal the previous message's
  has only its payload parsed;
* envelopes without the wrapper, and ``{"payload": ...}`` without a schema: values as sent;
* unwrapped records from ``ExtractNewRecordState``, MongoDB envelopes, tombstones (a null,
  empty, whitespace-only or ``null`` value), transaction BEGIN/END messages, schema-change
  messages and heartbeats, as the interpreter reads them.

Contracts: :meth:`DebeziumJsonDecoder.decode` raises :class:`~cdcflow.errors.DecodeError`, and
nothing else, for any input it cannot decode (invalid JSON or UTF-8, nesting deeper than
:data:`MAX_DEPTH`, values of the wrong type). A decoder is cheap, keeps bounded caches (compiled
value and key schemas, table ids) for its life, and is not thread-safe: one per worker. See
docs/decoding.md for the full contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from cdcflow.errors import DecodeError, as_decode_error
from cdcflow.schemas.connect import RowChecker
from cdcflow.schemas.debezium.compiled import CompiledSchema
from cdcflow.schemas.debezium.envelope import EnvelopeInterpreter, TombstoneHandling
from cdcflow.schemas.debezium.mongo import CONNECTOR as _MONGO_CONNECTOR
from cdcflow.schemas.debezium.schema_block import compile_key_schema, compile_value_schema
from cdcflow.schemas.debezium.toast import PLACEHOLDER_IN_JSON
from cdcflow.schemas.logical import JSON_DECODER, exact_json_float
from cdcflow.schemas.model import ChangeEvent, Decoded, Position, TableSchema

_CACHE_LIMIT = 4096

#: The deepest nesting of objects and arrays a message may have (MongoDB allows 100 levels in
#: a document; the envelope adds two). Deeper input is refused before any step recurses on it.
MAX_DEPTH = 200


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


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A change envelope with exactly Debezium's fields: the typed path's parse.

    Decoding into this struct builds no dict for the envelope itself; every value is parsed
    as the generic parse would (``Any``, the same float hook), so the struct holds all the
    payload holds. A missing field stays ``UNSET`` (told from a null). Any other field is a
    ``ValidationError``: such payloads (MongoDB's ``updateDescription``, fields of a later
    Debezium version) take the generic path.
    """

    op: Any = msgspec.UNSET
    before: Any = msgspec.UNSET
    after: Any = msgspec.UNSET
    source: Any = msgspec.UNSET
    transaction: Any = msgspec.UNSET
    ts_ms: Any = msgspec.UNSET
    ts_us: Any = msgspec.UNSET
    ts_ns: Any = msgspec.UNSET


_envelope_decoder = msgspec.json.Decoder(_Envelope, float_hook=exact_json_float)
_wrapped_decoder = msgspec.json.Decoder(_Wrapped, float_hook=exact_json_float)
_wrapped_key_decoder = msgspec.json.Decoder(_WrappedKey, float_hook=exact_json_float)
_any_decoder = JSON_DECODER
_NULL = msgspec.Raw(b"null")
_WRAPPER_KEYS = frozenset({"schema", "payload"})
_UNPARSED = object()
_UNSET = msgspec.UNSET

#: After a message the typed path could not take, the next this many messages go straight to
#: the generic path (a topic of unwrapped records or markers pays the typed attempt on 1 in 33).
_TYPED_BACKOFF = 32
_PLACEHOLDER_TEXT, _PLACEHOLDER_B64 = PLACEHOLDER_IN_JSON


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
        self._interpreter = EnvelopeInterpreter(key_columns=key_columns, tombstones=tombstones)
        self._interpret = self._interpreter.interpret
        self._value_schemas: dict[bytes, CompiledSchema] = {}
        self._key_schemas: dict[bytes, RowChecker | None] = {}
        self._last_raw: msgspec.Raw = msgspec.Raw(b"")
        self._last_schema_bytes = b""
        self._last_compiled: CompiledSchema | None = None
        self._last_key_schema = b""
        self._last_key_checker: RowChecker | None = None
        #: The typed path (see :meth:`_typed`) is tried; False forces the generic path for
        #: every message (the tests compare the two). Same events and errors either way.
        self.typed = True
        self._typed_skip = 0

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
        decoded_key: dict[str, Any] | None = None
        if key is not None:
            decoded_key = _UNPARSED  # type: ignore[assignment]
            if key[:1] == b"{":
                # The common key: an object. With the schema wrapper, when its schema bytes
                # are the previous key's, only the payload is parsed (the key's "same pass").
                last = self._last_key_schema
                if key.startswith(b'{"schema":'):
                    start = len(last) + 21
                    if (
                        last
                        and key.startswith(last, 10)
                        and key.startswith(b',"payload":{', start - 11)
                        and key.endswith(b"}}")
                    ):
                        decoded_key = self._same_schema_key(key, start)
                elif b'"payload"' not in key:
                    try:
                        parsed = _any_decoder.decode(key)
                    except msgspec.DecodeError:
                        pass  # decode_key raises the reason
                    else:
                        if type(parsed) is dict:
                            decoded_key = parsed
            if decoded_key is _UNPARSED:
                decoded_key = self.decode_key(key)
        if not value:
            return self._interpreter.tombstone(position, decoded_key, topic)
        compiled: CompiledSchema | None = None
        payload: Any = _UNPARSED
        scan_from = 0
        wrapped_first = value.startswith(b'{"schema"')
        if self.typed and not wrapped_first:
            if self._typed_skip:
                self._typed_skip -= 1
            else:
                event = self._typed(value, value, 0, None, position, decoded_key, topic)
                if event is not None:
                    return event
                self._typed_skip = _TYPED_BACKOFF
        if wrapped_first:
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
                compiled = self._last_compiled
                if self.typed and compiled is not None and compiled.kind == "envelope":
                    if self._typed_skip:
                        self._typed_skip -= 1
                    else:
                        event = self._typed(
                            memoryview(value)[start:-1],
                            value,
                            start,
                            compiled,
                            position,
                            decoded_key,
                            topic,
                        )
                        if event is not None:
                            return event
                        self._typed_skip = _TYPED_BACKOFF
                compiled = None
                try:
                    payload = _any_decoder.decode(memoryview(value)[start:-1])
                except msgspec.DecodeError:
                    payload = _UNPARSED  # not the exact layout after all: decode it fully
                else:
                    if payload is None:
                        return self._interpreter.tombstone(position, decoded_key, topic)
                    compiled = self._last_compiled
                    scan_from = start
        if payload is _UNPARSED and wrapped_first:
            wrapped = self._unwrap(value)
            if wrapped is not None:
                payload = wrapped.payload
                if payload is None:
                    return self._interpreter.tombstone(position, decoded_key, topic)
                if wrapped.schema != _NULL:
                    compiled = self._compile(wrapped.schema)
                scan_from = len(wrapped.schema)
        if payload is _UNPARSED:
            try:
                payload = _any_decoder.decode(value)
            except msgspec.DecodeError:
                payload = self._parse(value)  # raises the reason (or: whitespace, a tombstone)
            if payload is None:
                return self._interpreter.tombstone(position, decoded_key, topic)
            if type(payload) is dict and len(payload) == 1 and "payload" in payload:
                # {"payload": ...} without a schema (several producers write it): the
                # wrapper of a schemaless message.
                inner = payload["payload"]
                if inner is None:
                    return self._interpreter.tombstone(position, decoded_key, topic)
                if type(inner) is dict:
                    payload = inner
            if type(payload) is dict and len(payload) == 2 and payload.keys() == _WRAPPER_KEYS:
                # A wrapper in another field order (or with whitespace): decode it properly.
                wrapped = self._unwrap(value)
                assert wrapped is not None
                payload = wrapped.payload
                if payload is None:
                    return self._interpreter.tombstone(position, decoded_key, topic)
                if wrapped.schema != _NULL:
                    compiled = self._compile(wrapped.schema)
        if type(payload) is not dict:
            raise DecodeError(
                f"a Debezium message must be a JSON object, got {type(payload).__name__}"
            )
        if not _few_brackets(value, scan_from) and (
            value.count(b"[", scan_from) + value.count(b"{", scan_from) > MAX_DEPTH
        ):
            _check_depth(payload)  # rare: only messages with many brackets are walked
        # One scan of the bytes (past the schema block) tells whether any row image can hold
        # a TOAST placeholder; row images are only searched when it says so. The payload was
        # parsed for this call, so the interpreter may reuse its dicts (owned).
        maybe_unavailable = (
            value.find(_PLACEHOLDER_TEXT, scan_from) >= 0
            or value.find(_PLACEHOLDER_B64, scan_from) >= 0
        )
        return self._interpret(
            payload, compiled, position, decoded_key, topic, True, maybe_unavailable
        )

    def _typed(
        self,
        text: bytes | memoryview,
        value: bytes,
        scan_from: int,
        compiled: CompiledSchema | None,
        position: Position,
        key: dict[str, Any] | None,
        topic: str | None,
    ) -> ChangeEvent | None:
        """The typed path: decode ``text`` (the payload) as a change envelope, or return None.

        ``text`` is decoded into :class:`_Envelope` and its fields handed to
        :meth:`EnvelopeInterpreter.envelope_fields`, which builds the same event, or raises
        the same :class:`DecodeError`, as the generic path does for that payload. None means
        "take the generic path": the bytes are not JSON, not an object or have a field
        :class:`_Envelope` does not name, the payload is not a change envelope (schemaless:
        no ``op`` with ``before``, ``after`` or ``source``), it is a MongoDB envelope, or it
        may nest deeper than :data:`MAX_DEPTH`.

        Depth is bounded as on the generic path, by the number of opening brackets
        (:func:`_few_brackets` first, a count of every bracket only when there are many).
        """
        try:
            envelope = _envelope_decoder.decode(text)
        except msgspec.DecodeError:  # ValidationError included: not an object
            return None
        op = envelope.op
        before = envelope.before
        after = envelope.after
        source = envelope.source
        if compiled is None and (
            op is _UNSET or (source is _UNSET and after is _UNSET and before is _UNSET)
        ):
            return None
        if (
            type(before) is str
            or type(after) is str
            or (type(source) is dict and source.get("connector") == _MONGO_CONNECTOR)
        ):
            return None
        transaction = envelope.transaction
        ts_ms = envelope.ts_ms
        # _few_brackets(value, scan_from), inlined: this is every typed message.
        find = value.find
        brackets = 0
        at = find(b"{", scan_from)
        while at >= 0 and brackets <= _FEW_BRACKETS:
            brackets += 1
            at = find(b"{", at + 1)
        at = find(b"[", scan_from)
        while at >= 0 and brackets <= _FEW_BRACKETS:
            brackets += 1
            at = find(b"[", at + 1)
        if brackets > _FEW_BRACKETS and (
            value.count(b"[", scan_from) + value.count(b"{", scan_from) > MAX_DEPTH
        ):
            return None  # the generic path walks it
        return self._interpreter.envelope_fields(
            None if op is _UNSET else op,
            None if source is _UNSET else source,
            None if before is _UNSET else before,
            None if after is _UNSET else after,
            None if transaction is _UNSET else transaction,
            None if ts_ms is _UNSET else ts_ms,
            None,
            compiled,
            position,
            key,
            topic,
            True,
            value.find(_PLACEHOLDER_TEXT, scan_from) >= 0
            or value.find(_PLACEHOLDER_B64, scan_from) >= 0,
        )

    def _same_schema_key(self, key: bytes, start: int) -> dict[str, Any] | None:
        """A schema-wrapped key whose schema bytes are the previous key's: parse the payload.

        ``start`` is where the payload object begins. Returns ``_UNPARSED`` when the payload
        is not a JSON object after all (then :meth:`decode_key` decodes the key).
        """
        try:
            parsed = _any_decoder.decode(memoryview(key)[start:-1])
        except msgspec.DecodeError:
            return _UNPARSED  # type: ignore[return-value]
        if type(parsed) is not dict:
            return _UNPARSED  # type: ignore[return-value]
        checker = self._last_key_checker
        if checker is not None:
            try:
                checker(parsed, ())
            except DecodeError as exc:
                raise DecodeError(f"message key: {exc}") from None
        return parsed

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
        converter: RowChecker | None = None
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
                    if len(self._key_schemas) >= _CACHE_LIMIT:
                        self._key_schemas.clear()
                    self._key_schemas[raw_schema] = compile_key_schema(raw_schema)
                converter = self._key_schemas[raw_schema]
                self._last_key_schema = raw_schema
                self._last_key_checker = converter
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
        """Interpret an already-parsed message payload, as another codec's decoder does.

        ``payload`` must hold Python-native values (logical types already converted);
        placeholder detection, kind detection (row, transaction, schema change, heartbeat,
        unwrapped record), key derivation and table naming work exactly as for JSON, since
        both use one :class:`EnvelopeInterpreter` (see
        :meth:`EnvelopeInterpreter.decode_payload`). ``is_envelope`` forces the
        envelope/unwrapped decision when the codec knows it.
        """
        return self._interpreter.decode_payload(
            payload, position, key, topic, table_schema=table_schema, is_envelope=is_envelope
        )

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _parse(value: bytes) -> Any:
        try:
            return _any_decoder.decode(value)
        except msgspec.DecodeError as exc:
            if not value.strip():
                return None  # a whitespace-only value is a tombstone
            raise DecodeError(_json_reason(exc, value)) from None

    def _compile(self, raw_schema: msgspec.Raw) -> CompiledSchema:
        """Return the compiled form of a schema block, compiling it on first sight only.

        Consecutive messages usually share one schema: that case costs one byte comparison.
        """
        if raw_schema == self._last_raw:
            return self._last_compiled  # type: ignore[return-value]
        key = bytes(raw_schema)
        compiled = self._value_schemas.get(key)
        if compiled is None:
            if len(self._value_schemas) >= _CACHE_LIMIT:
                self._value_schemas.clear()
            try:
                compiled = compile_value_schema(key)
            except DecodeError as exc:
                # A schema that cannot be used fails every message it comes with: remember
                # why instead of compiling it again for each one.
                compiled = CompiledSchema.failed(f"the schema block cannot be used: {exc}")
            self._value_schemas[key] = compiled
        if compiled.error is not None:
            raise DecodeError(compiled.error)
        self._last_raw = raw_schema
        self._last_compiled = compiled
        self._last_schema_bytes = key
        return compiled


#: How many opening brackets :func:`_few_brackets` looks for before it gives up.
_FEW_BRACKETS = 16


def _few_brackets(value: bytes, start: int) -> bool:
    """True when ``value[start:]`` holds at most :data:`_FEW_BRACKETS` ``{`` and ``[`` bytes.

    A payload with that few opening brackets cannot nest deeper than :data:`MAX_DEPTH`, so
    it needs no full count. ``bytes.find`` of one byte is a ``memchr``, far cheaper than
    ``bytes.count`` over the whole message when brackets are rare (a Debezium envelope has
    about five); False (count them all) as soon as more are found.
    """
    found = 0
    find = value.find
    for bracket in (b"{", b"["):
        at = find(bracket, start)
        while at >= 0:
            found += 1
            if found > _FEW_BRACKETS:
                return False
            at = find(bracket, at + 1)
    return True


def _check_depth(payload: Any) -> None:
    """Raise :class:`DecodeError` when ``payload`` nests deeper than :data:`MAX_DEPTH`."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DecodeError(f"the message nests objects and arrays deeper than {MAX_DEPTH}")
        children = item.values() if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))


def _json_reason(exc: msgspec.DecodeError, value: bytes) -> str:
    preview = value[:60].decode("utf-8", errors="replace")
    return f"not valid JSON ({exc}); the message starts with {preview!r}"
