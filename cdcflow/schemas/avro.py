"""Debezium Avro: the Confluent wire format, decoded to the same values as Debezium JSON.

Wire format
    Every key and value is ``0x00`` (magic byte), a 4-byte big-endian schema id, then the Avro
    binary encoding of one datum written with that schema (no container header). The writer
    schema is fetched by id from a Confluent-compatible registry (the client caches it), parsed
    once per id and kept with its compiled value converters.

Logical types
    The Avro converter used by Debezium marks Kafka Connect and Debezium semantic types with
    ``connect.name`` (and, for Connect's own Decimal/Date/Time/Timestamp, an Avro
    ``logicalType``). Avro's own logical-type conversion is switched off (fastavro would make
    Connect timestamps UTC-aware, JSON makes them naive); instead each field's wire value goes
    through the converter the JSON decoder uses (``logical.converter_for``), so ``Decimal``,
    ``date``, ``datetime`` and ``time`` values are identical whichever format a topic uses.
    Fields with only an Avro ``logicalType`` (records not written by Connect) are mapped to
    the equivalent Connect type.

Errors (each a :class:`~cdcflow.errors.DecodeError`, so the record becomes a dead letter with its
original bytes): a message shorter than the 5-byte header, a magic byte other than 0, a schema
id the registry does not know, a payload that ends early or leaves bytes unread.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from cdcflow.errors import CdcflowError, DecodeError, as_decode_error, missing_extra
from cdcflow.schemas.debezium.compiled import CompiledSchema
from cdcflow.schemas.debezium.envelope import EnvelopeInterpreter, TombstoneHandling
from cdcflow.schemas.debezium.kinds import looks_like_envelope
from cdcflow.schemas.logical import (
    CONNECT_DATE,
    CONNECT_DECIMAL,
    CONNECT_TIME,
    CONNECT_TIMESTAMP,
    DBZ_MICRO_TIME,
    DBZ_MICRO_TIMESTAMP,
    Converter,
    converter_for,
)
from cdcflow.schemas.model import (
    Column,
    Decoded,
    Position,
    TableSchema,
)

MAGIC_BYTE = 0
HEADER_SIZE = 5
_CACHE_LIMIT = 10_000

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
#: Integer ranges of the Connect types an Avro int/long carries (``connect.type``): the wire
#: format is a varint of any length, so corrupt bytes can decode to a value no column holds.
_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


class _RangeCheck:
    """A converter that only checks an integer against its Connect type's range."""

    __slots__ = ("high", "low", "type_name")

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.low, self.high = _INT_RANGES[type_name]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, int) and not self.low <= value <= self.high:
            raise DecodeError(f"expected {self.type_name}, got an integer out of its range")
        return value


_CHECKS = {name: _RangeCheck(name) for name in _INT_RANGES}


def _int_check(kind: Any, connect_type: Any = None) -> _RangeCheck | None:
    """The range check for an Avro ``int``/``long`` (narrowed by ``connect.type``), or None."""
    if kind not in ("int", "long"):
        return None
    name = str(connect_type) if connect_type in _INT_RANGES else _CONNECT_TYPE[str(kind)]
    return _CHECKS[name]


_CONNECT_TYPE = {
    "boolean": "boolean",
    "int": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "bytes": "bytes",
    "fixed": "bytes",
    "string": "string",
    "enum": "string",
    "record": "struct",
    "array": "array",
    "map": "map",
}
#: Avro logical types (records not written by Kafka Connect) and their Connect equivalents.
_AVRO_LOGICAL = {
    "decimal": CONNECT_DECIMAL,
    "date": CONNECT_DATE,
    "time-millis": CONNECT_TIME,
    "time-micros": DBZ_MICRO_TIME,
    "timestamp-millis": CONNECT_TIMESTAMP,
    "timestamp-micros": DBZ_MICRO_TIMESTAMP,
}


class SchemaSource(Protocol):
    """Anything that returns Avro schema text by registry id."""

    def get_schema(self, schema_id: int) -> str:
        """The schema registered under ``schema_id``; raises DecodeError when unknown."""
        ...


def split_wire_format(data: bytes, what: str = "value") -> tuple[int, bytes]:
    """Split a Confluent wire-format message into ``(schema id, Avro payload)``."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(
            f"{what}: truncated Confluent Avro message of {len(data)} byte(s); the header "
            "alone is 5 bytes (magic byte 0 and a 4-byte schema id)"
        )
    if data[0] != MAGIC_BYTE:
        raise DecodeError(
            f"{what}: wrong magic byte {data[0]} (the Confluent wire format starts with 0); "
            "is the topic JSON? then use format: debezium-json"
        )
    return int.from_bytes(data[1:HEADER_SIZE], "big"), data[HEADER_SIZE:]


def _fastavro() -> Any:
    try:
        import fastavro
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise missing_extra("fastavro", "kafka") from exc
    return fastavro


def _strip_logical_types(schema: Any) -> Any:
    """A copy of ``schema`` without ``logicalType`` keys (fastavro then returns wire values)."""
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(v) for v in schema]
    return schema


def _full_name(schema: Mapping[str, Any], namespace: str | None) -> tuple[str, str | None]:
    name = str(schema.get("name", ""))
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    space = schema.get("namespace", namespace)
    return (f"{space}.{name}" if space else name), space


class _Compiler:
    """Compiles an Avro schema into an in-place value converter, resolving named types."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.converters: dict[str, Converter | None] = {}

    def register(self, schema: Any, namespace: str | None = None) -> None:
        """Record every named type definition (records, enums, fixed) by full name."""
        if isinstance(schema, list):
            for branch in schema:
                self.register(branch, namespace)
            return
        if not isinstance(schema, dict):
            return
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full, namespace = _full_name(schema, namespace)
            self.named[full] = (schema, namespace)
            if "." not in full:
                self.named.setdefault(full, (schema, namespace))
        if kind in ("record", "error"):
            for field in schema.get("fields", []):
                self.register(field.get("type"), namespace)
        elif kind == "array":
            self.register(schema.get("items"), namespace)
        elif kind == "map":
            self.register(schema.get("values"), namespace)
        elif isinstance(kind, (dict, list)):
            self.register(kind, namespace)

    def resolve(self, schema: Any, namespace: str | None) -> tuple[Any, str | None]:
        """Follow a reference to a named type."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            for candidate in (f"{namespace}.{schema}" if namespace else schema, schema):
                if candidate in self.named:
                    found: tuple[Any, str | None] = self.named[candidate]
                    return found
            raise DecodeError(f"the Avro schema refers to an undefined type {schema!r}")
        return schema, namespace

    def converter(self, schema: Any, namespace: str | None = None) -> Converter | None:
        """The converter for values of ``schema`` (None: the wire value is final)."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _int_check(schema)
            resolved, space = self.resolve(schema, namespace)
            full, _ = _full_name(resolved, space)
            if full not in self.converters:
                self.converters[full] = None  # breaks recursion for recursive types
                self.converters[full] = self.converter(resolved, space)
            return self.converters[full]
        if isinstance(schema, list):
            branches = [b for b in schema if b != "null"]
            if len(branches) == 1:
                return self.converter(branches[0], namespace)
            converters = [self.converter(b, namespace) for b in branches]
            if any(c is not None and not isinstance(c, _RangeCheck) for c in converters):
                raise DecodeError(
                    "unions of several types with logical types are not supported "
                    f"({[_type_name(b) for b in branches]})"
                )
            return None
        if not isinstance(schema, dict):
            return None
        kind = schema.get("type")
        if isinstance(kind, (dict, list)):
            return self.converter(kind, namespace)
        if kind in ("record", "error"):
            logical, parameters = _logical(schema)
            semantic = converter_for(logical, "struct", parameters) if logical else None
            if semantic is not None:  # e.g. io.debezium.data.VariableScaleDecimal
                return semantic
            _, space = _full_name(schema, namespace)
            return self._record(schema, space)
        if kind == "array":
            item = self.converter(schema.get("items"), namespace)
            if item is None:
                return None
            each = item
            return lambda values: [None if v is None else each(v) for v in values]
        if kind == "map":
            value = self.converter(schema.get("values"), namespace)
            if value is None:
                return None
            each_value = value
            return lambda values: {
                k: None if v is None else each_value(v) for k, v in values.items()
            }
        logical, parameters = _logical(schema)
        if logical is None:
            return _int_check(kind, schema.get("connect.type"))
        return converter_for(logical, _CONNECT_TYPE.get(str(kind), str(kind)), parameters)

    def _record(self, schema: Mapping[str, Any], namespace: str | None) -> Converter | None:
        plan: list[tuple[str, Converter]] = []
        for field in schema.get("fields", []):
            conv = self.converter(field.get("type"), namespace)
            if conv is not None:
                plan.append((str(field["name"]), conv))
        if not plan:
            return None
        steps = tuple(plan)

        def convert(record: Any) -> Any:
            if not isinstance(record, dict):
                return record
            for name, conv in steps:
                value = record.get(name)
                if value is not None:
                    try:
                        record[name] = conv(value)
                    except DecodeError as exc:
                        raise DecodeError(f"field {name!r}: {exc}") from None
                    except (TypeError, ValueError, AttributeError) as exc:
                        raise DecodeError(f"field {name!r}: cannot decode: {exc}") from None
            return record

        return convert


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    return str(schema)


def _logical(schema: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The Connect logical name and parameters of a primitive Avro schema."""
    parameters = {str(k): str(v) for k, v in (schema.get("connect.parameters") or {}).items()}
    name = schema.get("connect.name")
    if name is None:
        name = _AVRO_LOGICAL.get(str(schema.get("logicalType")))
    if name == CONNECT_DECIMAL and "scale" not in parameters:
        if "scale" in schema:
            parameters["scale"] = str(schema["scale"])
        elif schema.get("logicalType") == "decimal":
            parameters["scale"] = "0"  # the Avro specification's default scale
        # else: a Connect Decimal without any scale, refused by converter_for
    return (str(name) if name is not None else None), parameters


def _is_optional(schema: Any) -> bool:
    return isinstance(schema, list) and "null" in schema


def _non_null(schema: Any) -> Any:
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return branches[0] if len(branches) == 1 else schema
    return schema


def _column(field: Mapping[str, Any], compiler: _Compiler, namespace: str | None) -> Column:
    schema = _non_null(field.get("type"))
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        schema, _ = compiler.resolve(schema, namespace)
    if isinstance(schema, dict) and isinstance(schema.get("type"), dict):
        schema = schema["type"]
    if isinstance(schema, dict):
        kind = str(schema.get("type"))
        base = str(schema.get("connect.type") or _CONNECT_TYPE.get(kind, kind))
        logical, parameters = _logical(schema)
        if kind in ("record", "error"):
            logical = schema.get("connect.name")
    else:
        base = _CONNECT_TYPE.get(str(schema), str(schema))
        logical, parameters = None, {}
    return Column(
        name=str(field["name"]),
        type=base,
        logical=logical,
        optional=_is_optional(field.get("type")),
        parameters=parameters,
    )


_TRANSACTION_FIELDS = frozenset({"status", "id", "event_count", "data_collections", "ts_ms"})


def _is_metadata(names: set[str]) -> bool:
    """True for transaction-marker, schema-change and heartbeat records (not rows).

    Their kind is then told from the decoded fields, as for schemaless JSON.
    """
    if {"status", "id"} <= names <= _TRANSACTION_FIELDS:
        return True
    return "ddl" in names or names == {"ts_ms"}


class _Compiled(msgspec.Struct):
    """A writer schema ready for decoding.

    ``parsed`` is fastavro's form of it, ``convert`` the value converter (None: wire values are
    final) and ``shape`` what the envelope interpreter is told about every record written with
    it: the message kind and the table schema (None: the record's fields alone tell its kind).
    """

    parsed: Any
    convert: Converter | None
    shape: CompiledSchema | None


def compile_schema(text: str) -> _Compiled:
    """Parse Avro schema text and compile its converters and table schema."""
    fastavro = _fastavro()
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"the registry returned a schema that is not JSON: {exc}") from None
    try:
        parsed = fastavro.parse_schema(_strip_logical_types(copy.deepcopy(schema)))
    except Exception as exc:  # noqa: BLE001 - fastavro raises several types for bad schemas
        raise DecodeError(f"invalid Avro schema: {exc}") from None
    compiler = _Compiler()
    compiler.register(schema)
    convert = compiler.converter(schema)
    table_schema = None
    is_envelope: bool | None = None
    shape: CompiledSchema | None = None
    if isinstance(schema, dict) and schema.get("type") in ("record", "error"):
        _, namespace = _full_name(schema, None)
        fields = {str(f["name"]): f for f in schema.get("fields", [])}
        row_schema: Any = None
        if "op" in fields and ("after" in fields or "before" in fields):
            is_envelope = True
            for image in ("after", "before"):
                candidate = _non_null(fields[image]["type"]) if image in fields else None
                if isinstance(candidate, str) and candidate not in _PRIMITIVES:
                    candidate, namespace = compiler.resolve(candidate, namespace)
                if isinstance(candidate, dict) and candidate.get("type") == "record":
                    row_schema = candidate
                    _, namespace = _full_name(candidate, namespace)
                    break
        elif not _is_metadata(set(fields)):
            row_schema = schema
        if row_schema is not None:
            name, _ = _full_name(row_schema, namespace)
            version = row_schema.get("connect.version")
            table_schema = TableSchema(
                name=name,
                version=version if isinstance(version, int) else None,
                fingerprint=hashlib.sha1(text.encode()).hexdigest()[:16],  # noqa: S324 - an id, not security
                columns=tuple(
                    _column(f, compiler, namespace)
                    for f in row_schema.get("fields", [])
                    if not str(f.get("name", "")).startswith("__")
                ),
            )
        if table_schema is not None or is_envelope is not None:
            # A decoded record has exactly the schema's fields, so they decide for every record.
            envelope = is_envelope if is_envelope is not None else looks_like_envelope(fields)
            shape = CompiledSchema(
                row_converter=None,
                table_schema=table_schema,
                kind="envelope" if envelope else "row",
            )
    return _Compiled(parsed=parsed, convert=convert, shape=shape)


class ConfluentAvroDecoder:
    """Decode Debezium messages in the Confluent Avro wire format (keys and values).

    ``registry`` provides writer schemas by id (a
    :class:`~cdcflow.schemas.registry.SchemaRegistryClient`). ``key_columns`` and
    ``tombstones`` mean what they mean for the JSON decoder: the decoded records go to the
    same :class:`~cdcflow.schemas.debezium.envelope.EnvelopeInterpreter` the JSON codec uses,
    so kinds (rows, transaction markers, schema changes, heartbeats, unwrapped records), TOAST
    placeholders, keys and table names behave exactly as for JSON.
    """

    def __init__(
        self,
        registry: SchemaSource,
        key_columns: Mapping[str, Sequence[str]] | None = None,
        tombstones: TombstoneHandling = "marker",
    ) -> None:
        self.registry = registry
        self.tombstones = tombstones
        self._interpreter = EnvelopeInterpreter(key_columns=key_columns, tombstones=tombstones)
        self._compiled: dict[int, _Compiled] = {}
        self._reader: Callable[..., Any] = _fastavro().schemaless_reader

    def _schema(self, schema_id: int) -> _Compiled:
        compiled = self._compiled.get(schema_id)
        if compiled is None:
            text = self.registry.get_schema(schema_id)
            try:
                compiled = compile_schema(text)
            except DecodeError as exc:
                raise DecodeError(f"schema id {schema_id}: {exc}") from None
            if len(self._compiled) >= _CACHE_LIMIT:
                self._compiled.clear()
            self._compiled[schema_id] = compiled
        return compiled

    def _read(self, data: bytes, what: str) -> tuple[Any, _Compiled]:
        schema_id, payload = split_wire_format(data, what)
        compiled = self._schema(schema_id)
        stream = io.BytesIO(payload)
        try:
            datum = self._reader(stream, compiled.parsed, None)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for bad input
            raise DecodeError(
                f"{what}: cannot read the Avro payload with schema id {schema_id} "
                f"({type(exc).__name__}: {exc}); it is truncated or was written with another "
                "schema"
            ) from None
        left = len(payload) - stream.tell()
        if left:
            raise DecodeError(
                f"{what}: {left} byte(s) left after reading the Avro payload with schema id "
                f"{schema_id}; the message is corrupt or was written with another schema"
            )
        if compiled.convert is not None:
            try:
                datum = compiled.convert(datum)
            except DecodeError as exc:
                raise DecodeError(f"{what}: {exc}") from None
        return datum, compiled

    def decode_key(self, key: bytes | None) -> dict[str, Any] | None:
        """Decode a message key into a column dict (a primitive key becomes ``{"id": v}``)."""
        if key is None or len(key) == 0:
            return None
        datum, _ = self._read(key, "message key")
        if datum is None:
            return None
        if isinstance(datum, dict):
            return datum
        return {"id": datum}

    def decode(
        self,
        value: bytes | None,
        position: Position,
        key: bytes | None = None,
        topic: str | None = None,
    ) -> Decoded:
        """Decode one message; raises :class:`DecodeError` (and nothing else for bad input).

        Registry failures keep their own types (the caller stops on them).
        """
        try:
            return self._decode(value, position, key, topic)
        except (DecodeError, CdcflowError):
            raise
        except Exception as exc:  # noqa: BLE001 - bad input must end as a DecodeError
            raise as_decode_error(exc) from None

    def _decode(
        self, value: bytes | None, position: Position, key: bytes | None, topic: str | None
    ) -> Decoded:
        key_dict = self.decode_key(key)
        if value is None:
            return self._interpreter.tombstone(position, key_dict, topic)
        datum, compiled = self._read(value, "value")
        if not isinstance(datum, dict):
            raise DecodeError(
                f"value: the Avro datum is a {type(datum).__name__}, not a record; "
                "Debezium values are records"
            )
        return self._interpreter.interpret(datum, compiled.shape, position, key_dict, topic)

    def close(self) -> None:
        """Close the registry client, when it has a ``close``."""
        close = getattr(self.registry, "close", None)
        if close is not None:
            close()
