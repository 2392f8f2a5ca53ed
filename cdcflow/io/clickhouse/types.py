"""Column types for ClickHouse tables created from change events, and value conversion.

:func:`ch_type` maps a Kafka Connect / Debezium column to a ClickHouse type that works on
ClickHouse 18.16 (Debian's server) and uses ``DateTime64`` when the server has it (20.1 and
later); :func:`ch_type_for_value` is the fallback for schemaless messages. :func:`converter`
returns, for a column's actual ClickHouse type, a function that turns a decoded value into what
clickhouse-driver sends, **checking ranges**: the native protocol would otherwise wrap an
out-of-range integer or clamp a date silently. A value that does not fit raises
:class:`ValueError`/:class:`TypeError` and its row goes to the dead letters.

================================================  ===========================================
Connect / Debezium                                ClickHouse
================================================  ===========================================
int8 / int16 / int32 / int64                      Int8 / Int16 / Int32 / Int64
float32 / float64                                 Float32 / Float64
boolean                                           UInt8
string, bytes, Enum, EnumSet, Json, Uuid, Xml     String
Decimal (precision p <= 38, scale s)              Decimal(p, s); otherwise String (exact text)
VariableScaleDecimal                              String (exact text)
Date                                              Date32, or String (``YYYY-MM-DD``)
Time / MicroTime / NanoTime / ZonedTime           String (``HH:MM:SS[.ffffff]``)
Timestamp                                         DateTime64(3, 'UTC'), or DateTime('UTC')
MicroTimestamp / ZonedTimestamp                   DateTime64(6, 'UTC'), or DateTime('UTC')
NanoTimestamp                                     DateTime64(9, 'UTC'), or DateTime('UTC')
Year / MicroDuration                              Int32 / Int64
struct, array, map, geometry                      String (canonical JSON)
================================================  ===========================================

Server versions decide two mappings: before 20.1 (no ``DateTime64``) timestamps are stored as
``DateTime('UTC')``: whole seconds, 1970-01-01 to 2106-02-07, the fraction dropped; before 21.9
(no ``Date32``) dates are stored as ISO text, because ``Date`` cannot hold dates before 1970
(birthdays). Every column except the key is ``Nullable``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from cdcflow.schemas import logical as lt
from cdcflow.schemas.canonical import dumps
from cdcflow.schemas.model import Column

_T = TypeVar("_T")

Convert = Callable[[Any], Any]
ConvertColumn = Callable[[list[Any]], list[Any]]

_BASE = {
    "int8": "Int8",
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "float": "Float32",
    "float32": "Float32",
    "float64": "Float64",
    "double": "Float64",
    "boolean": "UInt8",
    "string": "String",
    "bytes": "String",
}
_TIMESTAMP_PRECISION = {
    lt.DBZ_TIMESTAMP: 3,
    lt.CONNECT_TIMESTAMP: 3,
    lt.DBZ_MICRO_TIMESTAMP: 6,
    lt.DBZ_ZONED_TIMESTAMP: 6,
    lt.DBZ_NANO_TIMESTAMP: 9,
}
_DATES = frozenset({lt.DBZ_DATE, lt.CONNECT_DATE})
_LOGICAL = {
    lt.VARIABLE_SCALE_DECIMAL: "String",
    "io.debezium.time.Year": "Int32",
    "io.debezium.time.MicroDuration": "Int64",
}
_MAX_DECIMAL_PRECISION = 38

_INT_RANGES = {
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
}
_DATE_RANGE = (dt.date(1970, 1, 1), dt.date(2149, 6, 6))
_DATE32_RANGE = (dt.date(1900, 1, 1), dt.date(2299, 12, 31))
#: First ClickHouse releases with DateTime64 and Date32.
DATETIME64_SINCE = (20, 1)
DATE32_SINCE = (21, 9)
Version = tuple[int, ...]
_DATETIME_RANGE = (
    dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2106, 2, 7, 6, 28, 15, tzinfo=dt.UTC),
)
_DATETIME64_RANGE = (
    dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
)
_DECIMAL = re.compile(r"^Decimal\((\d+),\s*(\d+)\)$")


def timestamp_type(precision: int, version: Version) -> str:
    """The type of a timestamp column of ``precision`` fractional digits on ``version``."""
    return f"DateTime64({precision}, 'UTC')" if version >= DATETIME64_SINCE else "DateTime('UTC')"


def date_type(version: Version) -> str:
    """The type of a date column on ``version``."""
    return "Date32" if version >= DATE32_SINCE else "String"


def ch_type(column: Column, version: Version) -> str:
    """The ClickHouse type (no ``Nullable``) for a schema column on a server of ``version``."""
    if column.logical == lt.CONNECT_DECIMAL:
        try:
            scale = int(column.parameters.get("scale", "0"))
            precision = int(column.parameters.get("connect.decimal.precision", "0"))
        except ValueError:
            return "String"
        if 0 < precision <= _MAX_DECIMAL_PRECISION and 0 <= scale <= precision:
            return f"Decimal({precision}, {scale})"
        return "String"
    if column.logical in _TIMESTAMP_PRECISION:
        return timestamp_type(_TIMESTAMP_PRECISION[column.logical], version)
    if column.logical in _DATES:
        return date_type(version)
    if column.logical is not None and column.logical in _LOGICAL:
        return _LOGICAL[column.logical]
    if column.logical is not None:
        return "String"
    return _BASE.get(column.type, "String")


def ch_type_for_value(value: Any, version: Version) -> str:
    """The ClickHouse type for a column known only from a decoded value."""
    if isinstance(value, bool):
        return "UInt8"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, dt.datetime):
        return timestamp_type(6, version)
    if isinstance(value, dt.date):
        return date_type(version)
    return "String"


def nullable(sql_type: str) -> str:
    """``Nullable(T)``."""
    return sql_type if sql_type.startswith("Nullable(") else f"Nullable({sql_type})"


def converter(sql_type: str) -> Convert:
    """A checking converter from decoded values to what clickhouse-driver sends for ``sql_type``.

    ``None`` passes through for ``Nullable`` types and is rejected otherwise.
    """
    inner = sql_type
    is_nullable = sql_type.startswith("Nullable(") and sql_type.endswith(")")
    if is_nullable:
        inner = sql_type[len("Nullable(") : -1]
    base = _base_converter(inner)

    def convert(value: Any) -> Any:
        if value is None:
            if is_nullable:
                return None
            raise ValueError(f"null value for the non-nullable {sql_type} column")
        return base(value)

    return convert


def column_converter(sql_type: str) -> ConvertColumn:
    """Like :func:`converter`, for a whole column at once; raises on the first bad value.

    Values already of the right type and range pass through a fast check.
    """
    convert = converter(sql_type)
    inner = sql_type[len("Nullable(") : -1] if sql_type.startswith("Nullable(") else sql_type
    if inner in _INT_RANGES:
        low, high = _INT_RANGES[inner]
        return lambda values: [
            v if type(v) is int and low <= v <= high else convert(v) for v in values
        ]
    if inner == "String":
        return lambda values: [v if type(v) is str else convert(v) for v in values]
    if inner in ("Float32", "Float64"):
        return lambda values: [v if type(v) is float else convert(v) for v in values]
    return lambda values: [convert(v) for v in values]


def _base_converter(sql_type: str) -> Convert:
    if sql_type in _INT_RANGES:
        low, high = _INT_RANGES[sql_type]
        return lambda value: _int(value, low, high, sql_type)
    if sql_type in ("Float32", "Float64"):
        return _float
    match = _DECIMAL.match(sql_type)
    if match:
        return _decimal_converter(int(match.group(1)), int(match.group(2)), sql_type)
    if sql_type == "Date":
        return lambda value: _date(value, _DATE_RANGE, sql_type)
    if sql_type == "Date32":
        return lambda value: _date(value, _DATE32_RANGE, sql_type)
    if sql_type.startswith("DateTime64"):
        return lambda value: _datetime(value, _DATETIME64_RANGE, sql_type)
    if sql_type.startswith("DateTime"):
        return lambda value: _datetime(value, _DATETIME_RANGE, sql_type)
    if sql_type in ("String", "UUID") or sql_type.startswith("FixedString"):
        return _string
    return lambda value: value


def _int(value: Any, low: int, high: int, sql_type: str) -> int:
    if isinstance(value, bool):
        value = int(value)
    elif isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"expected an integer for {sql_type}, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"value {value} out of range for {sql_type} ({low} .. {high})")
    return value


def _float(value: Any) -> float:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number for a float column, got {type(value).__name__}")


def _decimal_converter(precision: int, scale: int, sql_type: str) -> Convert:
    limit = Decimal(10) ** (precision - scale)
    quantum = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
            raise TypeError(f"expected a decimal for {sql_type}, got {type(value).__name__}")
        try:
            number = Decimal(str(value)) if not isinstance(value, Decimal) else value
            exact = number.quantize(quantum)
        except InvalidOperation as exc:
            raise ValueError(f"value {value!r} is not a valid {sql_type}") from exc
        if exact != number:
            raise ValueError(f"value {value} has more than {scale} decimal places for {sql_type}")
        if abs(exact) >= limit:
            raise ValueError(f"value {value} out of range for {sql_type}")
        return exact

    return convert


def _from_iso(text: str, parse: Callable[[str], _T], what: str) -> _T:
    """``parse(text)``; a ValueError names the text and what it should have been."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"value {text!r} is not a {what}") from exc


def _date(value: Any, bounds: tuple[dt.date, dt.date], sql_type: str) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    elif isinstance(value, str):
        value = _from_iso(value, dt.date.fromisoformat, "date")
    if not isinstance(value, dt.date):
        raise TypeError(f"expected a date, got {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"date {value} out of range for {sql_type} ({bounds[0]} .. {bounds[1]})")
    return value


def _datetime(value: Any, bounds: tuple[dt.datetime, dt.datetime], sql_type: str) -> dt.datetime:
    if isinstance(value, str):
        value = _from_iso(value, dt.datetime.fromisoformat, "timestamp")
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a timestamp for {sql_type}, got {type(value).__name__}")
    aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if not bounds[0] <= aware <= bounds[1]:
        raise ValueError(f"timestamp {value.isoformat()} out of range for {sql_type}")
    return aware


def _string(value: Any) -> str | bytes:
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dict, list, tuple)):
        return dumps(value).decode()
    if isinstance(value, (dt.datetime, dt.date, dt.time, Decimal)):
        return dumps(value).decode().strip('"')
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
