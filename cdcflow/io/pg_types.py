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
