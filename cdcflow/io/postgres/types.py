"""Column types for PostgreSQL tables created from change events, and value adaptation.

:func:`pg_type` maps a Kafka Connect / Debezium column (base type, logical name, parameters) to a
PostgreSQL type; :func:`pg_type_for_value` is the fallback for columns the message's schema does
not describe (schemaless JSON), from the decoded Python value. :func:`copy_value` turns a decoded
value into what ``COPY`` sends (PostgreSQL parses it into the column's type, so a value that does
not fit is rejected by the server and the row goes to the dead letters).

The mapping (documented in docs/sinks.md):

================================================  ====================================
Connect / Debezium                                PostgreSQL
================================================  ====================================
int8, int16                                       smallint
int32                                             integer
int64                                             bigint
float32 / float                                   real
float64 / double                                  double precision
boolean                                           boolean
string                                            text
bytes                                             bytea
org.apache.kafka.connect.data.Decimal             numeric(p, s) (numeric without precision)
io.debezium.data.VariableScaleDecimal             numeric
io.debezium.time.Date, connect Date               date
io.debezium.time.Time/MicroTime/NanoTime          time
io.debezium.time.ZonedTime                        timetz
io.debezium.time.Timestamp/MicroTimestamp/Nano..  timestamp
io.debezium.time.ZonedTimestamp                   timestamptz
io.debezium.data.Json                             jsonb
io.debezium.data.Uuid                             uuid
io.debezium.data.Xml                              xml
io.debezium.time.Year                             integer
io.debezium.time.MicroDuration                    bigint (microseconds)
io.debezium.time.Interval                         interval
Enum, EnumSet, Bits, other strings                text
struct, array, map, geometry                      jsonb
================================================  ====================================
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cdcflow.schemas import logical as lt
from cdcflow.schemas.canonical import dumps
from cdcflow.schemas.model import Column

_BASE = {
    "int8": "smallint",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float": "real",
    "float32": "real",
    "float64": "double precision",
    "double": "double precision",
    "boolean": "boolean",
    "string": "text",
    "bytes": "bytea",
    "struct": "jsonb",
    "array": "jsonb",
    "map": "jsonb",
}

_LOGICAL = {
    lt.VARIABLE_SCALE_DECIMAL: "numeric",
    lt.DBZ_DATE: "date",
    lt.CONNECT_DATE: "date",
    lt.DBZ_TIME: "time",
    lt.CONNECT_TIME: "time",
    lt.DBZ_MICRO_TIME: "time",
    lt.DBZ_NANO_TIME: "time",
    lt.DBZ_ZONED_TIME: "timetz",
    lt.DBZ_TIMESTAMP: "timestamp",
    lt.CONNECT_TIMESTAMP: "timestamp",
    lt.DBZ_MICRO_TIMESTAMP: "timestamp",
    lt.DBZ_NANO_TIMESTAMP: "timestamp",
    lt.DBZ_ZONED_TIMESTAMP: "timestamptz",
    "io.debezium.data.Json": "jsonb",
    "io.debezium.data.Uuid": "uuid",
    "io.debezium.data.Xml": "xml",
    "io.debezium.data.Enum": "text",
    "io.debezium.data.EnumSet": "text",
    "io.debezium.data.Bits": "text",
    "io.debezium.time.Year": "integer",
    "io.debezium.time.MicroDuration": "bigint",
    "io.debezium.time.Interval": "interval",
    "io.debezium.data.geometry.Geometry": "jsonb",
    "io.debezium.data.geometry.Geography": "jsonb",
    "io.debezium.data.geometry.Point": "jsonb",
}

#: Largest precision PostgreSQL's numeric accepts in a type modifier.
_MAX_NUMERIC_PRECISION = 1000


def pg_type(column: Column) -> str:
    """The PostgreSQL type for a column described by the message's schema."""
    if column.logical == lt.CONNECT_DECIMAL:
        return _decimal_type(column.parameters)
    if column.logical is not None and column.logical in _LOGICAL:
        return _LOGICAL[column.logical]
    return _BASE.get(column.type, "text")


def _decimal_type(parameters: dict[str, str]) -> str:
    try:
        scale = int(parameters.get("scale", "0"))
        precision = int(parameters.get("connect.decimal.precision", "0"))
    except ValueError:
        return "numeric"
    if 0 < precision <= _MAX_NUMERIC_PRECISION and 0 <= scale <= precision:
        return f"numeric({precision},{scale})"
    return "numeric"


def pg_type_for_value(value: Any) -> str:
    """The PostgreSQL type for a column known only from a decoded value (``text`` for None)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if -(2**63) <= value < 2**63 else "numeric"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, Decimal):
        return "numeric"
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "timetz" if value.tzinfo is not None else "time"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytea"
    if isinstance(value, (dict, list, tuple)):
        return "jsonb"
    return "text"


def copy_value(value: Any) -> Any:
    """A decoded value as ``COPY`` (text format) sends it.

    Scalars psycopg knows go as they are; dicts and lists become canonical JSON text; an
    ``int`` too large for ``bigint`` goes as text so ``numeric`` columns keep it exactly.
    """
    if value is None or isinstance(value, (str, bool, float, Decimal, dt.date, dt.time)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, (dict, list, tuple)):
        return dumps(value).decode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cannot write a {type(value).__name__} value to PostgreSQL")


#: Column types (``format_type`` without modifiers) that ``COPY`` sends in binary: the psycopg
#: type whose binary dumper writes them and the Python types a value may have. A value of any
#: other type, an ``int`` outside the column's range or a datetime/time whose time zone does
#: not match the column makes the whole ``COPY`` use text (:func:`binary_copy_types`): the
#: binary dumpers would otherwise accept it and write something else (an ``int`` too large for
#: ``integer`` wraps; ``True`` becomes 1, where text ``COPY`` rejects both with an SQLSTATE that
#: sends the row to the dead letters).
_BINARY: dict[str, tuple[str, frozenset[type]]] = {
    "smallint": ("int2", frozenset({int})),
    "integer": ("int4", frozenset({int})),
    "bigint": ("int8", frozenset({int})),
    "numeric": ("numeric", frozenset({Decimal, int})),
    "double precision": ("float8", frozenset({float})),
    "boolean": ("bool", frozenset({bool})),
    "text": ("text", frozenset({str})),
    "character varying": ("text", frozenset({str})),
    "character": ("text", frozenset({str})),
    "bytea": ("bytea", frozenset({bytes})),
    "date": ("date", frozenset({dt.date})),
    "timestamp without time zone": ("timestamp", frozenset({dt.datetime})),
    "timestamp with time zone": ("timestamptz", frozenset({dt.datetime})),
    "time without time zone": ("time", frozenset({dt.time})),
}
_INT_RANGE = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
#: Whether values must be naive (False) or aware (True), per psycopg type.
_ZONED = {"timestamp": False, "timestamptz": True, "time": False}
_MODIFIER = re.compile(r"\(\d+(?:,\d+)?\)")
_NONE_TYPE = type(None)


def binary_copy_types(sql_types: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str] | None:
    """The psycopg type names for a binary ``COPY`` of ``rows``, or None to use text.

    ``sql_types`` are the target columns' types as ``format_type`` spells them (modifiers such
    as ``numeric(10,2)`` or ``character varying(20)`` are applied by the server in binary as
    in text). None when a column's type has no binary mapping here (jsonb, uuid, interval,
    real, timetz, arrays...) or a value does not have exactly the Python type the mapping
    binds (see :data:`_BINARY`): then the rows go as text and the server parses them, as
    before. NULLs go either way.
    """
    names: list[str] = []
    for index, sql_type in enumerate(sql_types):
        spec = _BINARY.get(_MODIFIER.sub("", sql_type))
        if spec is None:
            return None
        name, accepted = spec
        column = [row[index] for row in rows]
        kinds = set(map(type, column))
        kinds.discard(_NONE_TYPE)
        if not kinds <= accepted:
            return None
        bound = _INT_RANGE.get(name)
        zoned = _ZONED.get(name)
        if kinds and (bound is not None or zoned is not None):
            values = [v for v in column if v is not None]
            if bound is not None and not (-bound <= min(values) and max(values) < bound):
                return None
            if zoned is not None and any((v.tzinfo is not None) is not zoned for v in values):
                return None
        names.append(name)
    return names
