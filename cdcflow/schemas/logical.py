"""Debezium and Kafka Connect logical types: from their wire form to Python values.

Each converter takes the value as the JSON converter (or Avro) delivers it and returns the
Python-native value of ARCHITECTURE §2. Converters raise :class:`~cdcflow.errors.DecodeError`
with the logical type's name on malformed input; ``None`` passes through unchanged (the caller
never calls a converter with ``None``).
"""

from __future__ import annotations

import binascii
import datetime as dt
import decimal
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from cdcflow.errors import DecodeError

Converter = Callable[[Any], Any]

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)
UTC = dt.UTC

CONNECT_DECIMAL = "org.apache.kafka.connect.data.Decimal"
CONNECT_DATE = "org.apache.kafka.connect.data.Date"
CONNECT_TIME = "org.apache.kafka.connect.data.Time"
CONNECT_TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
DBZ_DATE = "io.debezium.time.Date"
DBZ_TIME = "io.debezium.time.Time"
DBZ_MICRO_TIME = "io.debezium.time.MicroTime"
DBZ_NANO_TIME = "io.debezium.time.NanoTime"
DBZ_TIMESTAMP = "io.debezium.time.Timestamp"
DBZ_MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
DBZ_NANO_TIMESTAMP = "io.debezium.time.NanoTimestamp"
DBZ_ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
DBZ_ZONED_TIME = "io.debezium.time.ZonedTime"

#: The TOAST / unavailable-value placeholder Debezium sends for unchanged large columns.
UNAVAILABLE_PLACEHOLDER = "__debezium_unavailable_value"


def _fail(logical: str, value: Any, why: str) -> DecodeError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return DecodeError(f"cannot decode {logical} value {shown}: {why}")


_a2b = binascii.a2b_base64


def _as_bytes(value: Any, logical: str) -> bytes:
    if type(value) is str:
        try:
            return _a2b(value, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail(logical, value, "not valid base64") from exc
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise _fail(logical, value, "expected base64 text or bytes")


def _as_int(value: Any, logical: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(logical, value, "expected an integer")
    return value


#: The largest decimal scale accepted (PostgreSQL's numeric allows 16383 fractional digits).
MAX_SCALE = 1_000_000

#: A context that never rounds: unscaled values of any size keep every digit.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
#: The same, but a quantize that would drop a non-zero digit raises instead of rounding.
_STRICT = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.Inexact, decimal.InvalidOperation],
)


def exact_json_float(text: str) -> float | Decimal:
    """The JSON decoders' ``float_hook``: a float when it holds the number exactly as written.

    A number text of under 16 characters without an exponent has at most 15 significant
    digits and a magnitude between 1e-14 and 1e15 (or is zero), so the float is exact to its
    text: that is the fast path. Any other number whose float would lose digits, overflow to
    infinity or underflow to zero is returned as the exact ``Decimal`` of its text.
    """
    if len(text) < 16 and "e" not in text and "E" not in text:
        return float(text)
    value = float(text)
    number = Decimal(text)
    if value != value or value in (_INF, -_INF):
        return number
    if Decimal(repr(value)) == number:
        return value
    return number


_INF = float("inf")

#: The JSON decoder every codec uses: numbers keep every digit (see exact_json_float).
JSON_DECODER = msgspec.json.Decoder(float_hook=exact_json_float)


def unscaled_to_decimal(raw: bytes, scale: int) -> Decimal:
    """Turn big-endian two's-complement unscaled bytes and a scale into an exact Decimal.

    The result has exactly ``scale`` fractional digits (bytes ``04 00`` with scale 2 is
    ``Decimal("10.24")``), whatever the number of digits: no context precision applies.
    """
    unscaled = int.from_bytes(raw, "big", signed=True)
    return Decimal(unscaled).scaleb(-scale, _EXACT)


def _quantizer(scale: int) -> Callable[[Decimal, Any], Decimal]:
    """A function giving a Decimal exactly ``scale`` places, refusing to drop a digit."""
    quantum = Decimal(1).scaleb(-scale, _EXACT)
    exponent = -scale

    def quantize(number: Decimal, shown: Any) -> Decimal:
        if not number.is_finite():
            raise _fail(CONNECT_DECIMAL, shown, "not a finite number")
        if number.as_tuple().exponent == exponent:
            return number
        try:
            return number.quantize(quantum, context=_STRICT)
        except (decimal.Inexact, InvalidOperation):
            raise _fail(
                CONNECT_DECIMAL, shown, f"has more digits than the schema's scale {scale} allows"
            ) from None

    return quantize


def decimal_converter(scale: int) -> Converter:
    """``org.apache.kafka.connect.data.Decimal``: the value with exactly ``scale`` places.

    Accepted wire forms (docs/decoding.md, *Decimals*):

    * text that is valid (strict, padded) base64: the big-endian two's-complement unscaled
      integer, which is what the JSON converter writes with ``decimal.format=BASE64`` (the
      default; Debezium ``decimal.handling.mode=precise``). Text that is both base64 and a
      number (``"1000"``) is therefore always read as base64;
    * a JSON number (``decimal.format=NUMERIC``), taken from its exact text, never through a
      float (the JSON decoder hands long numbers over as ``Decimal``);
    * text that is not base64 but a decimal number (``"12.5"``), for producers that rendered
      the value themselves;
    * raw bytes (the Avro converter).

    Numbers are given exactly ``scale`` places (``12345`` with scale 3 is ``12345.000``); a
    number with more non-zero fractional digits than the scale is a :class:`DecodeError`,
    never rounded.
    """
    exponent = -scale
    exact = _EXACT
    from_bytes = int.from_bytes
    quantize = _quantizer(scale)

    def convert(value: Any) -> Decimal:
        kind = type(value)
        if kind is str:
            try:
                raw = _a2b(value, strict_mode=True)
            except (binascii.Error, ValueError):
                return quantize(_numeric_text(value), value)
            return Decimal(from_bytes(raw, "big", signed=True)).scaleb(exponent, exact)
        if kind is bytes or kind is bytearray:
            return unscaled_to_decimal(bytes(value), scale)
        if kind is int:
            return quantize(Decimal(value), value)
        if kind is float:
            # Only floats that are their shortest text exactly arrive here (the JSON decoder
            # turns longer numbers into Decimal), so repr() is the number as sent.
            return quantize(Decimal(repr(value)), value)
        if kind is Decimal:
            return quantize(value, value)
        raise _fail(CONNECT_DECIMAL, value, "expected base64 unscaled bytes or a number")

    return convert


def _numeric_text(value: str) -> Decimal:
    if value.strip() != value or not value:
        raise _fail(CONNECT_DECIMAL, value, "neither base64 unscaled bytes nor a number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _fail(CONNECT_DECIMAL, value, "neither base64 unscaled bytes nor a number") from None
    if not number.is_finite():
        raise _fail(CONNECT_DECIMAL, value, "neither base64 unscaled bytes nor a number")
    return number


def variable_scale_decimal(value: Any) -> Decimal:
    """``io.debezium.data.VariableScaleDecimal``: ``{"scale": s, "value": base64}``."""
    if not isinstance(value, dict) or "scale" not in value or "value" not in value:
        raise _fail(VARIABLE_SCALE_DECIMAL, value, 'expected {"scale": int, "value": base64}')
    scale = _as_int(value["scale"], VARIABLE_SCALE_DECIMAL)
    if not -MAX_SCALE <= scale <= MAX_SCALE:
        raise _fail(VARIABLE_SCALE_DECIMAL, value, f"scale beyond ±{MAX_SCALE}")
    return unscaled_to_decimal(_as_bytes(value["value"], VARIABLE_SCALE_DECIMAL), scale)


_timedelta = dt.timedelta
_fromordinal = dt.date.fromordinal
_EPOCH_ORDINAL = EPOCH_DATE.toordinal()


def days_to_date(value: Any) -> dt.date:
    """``io.debezium.time.Date`` / ``org.apache.kafka.connect.data.Date``: days since epoch."""
    if type(value) is int and -719_162 <= value <= 2_932_896:
        return _fromordinal(_EPOCH_ORDINAL + value)
    days = _as_int(value, DBZ_DATE)
    try:
        return EPOCH_DATE + dt.timedelta(days=days)
    except OverflowError as exc:
        raise _fail(DBZ_DATE, value, "date out of range") from exc


def _micros_to_time(micros: int, logical: str) -> dt.time:
    if not 0 <= micros < 86_400_000_000:
        # 24:00:00 (PostgreSQL allows it) and negative values have no Python time.
        raise _fail(logical, micros, "time of day out of range 00:00:00..23:59:59.999999")
    return (EPOCH + dt.timedelta(0, 0, micros)).time()


def millis_to_time(value: Any) -> dt.time:
    """``io.debezium.time.Time`` / ``org.apache.kafka.connect.data.Time``: ms of the day."""
    return _micros_to_time(_as_int(value, DBZ_TIME) * 1000, DBZ_TIME)


def micros_to_time(value: Any) -> dt.time:
    """``io.debezium.time.MicroTime``: microseconds of the day."""
    if type(value) is int and 0 <= value < 86_400_000_000:
        return (EPOCH + _timedelta(0, 0, value)).time()
    return _micros_to_time(_as_int(value, DBZ_MICRO_TIME), DBZ_MICRO_TIME)


def nanos_to_time(value: Any) -> dt.time:
    """``io.debezium.time.NanoTime``: nanoseconds of the day (truncated to microseconds)."""
    return _micros_to_time(_as_int(value, DBZ_NANO_TIME) // 1000, DBZ_NANO_TIME)


def _micros_to_datetime(micros: int, logical: str) -> dt.datetime:
    try:
        return EPOCH + dt.timedelta(0, 0, micros)
    except OverflowError as exc:
        raise _fail(logical, micros, "timestamp out of range (years 1..9999)") from exc


def millis_to_datetime(value: Any) -> dt.datetime:
    """``io.debezium.time.Timestamp`` / connect ``Timestamp``: ms since epoch, naive."""
    return _micros_to_datetime(_as_int(value, DBZ_TIMESTAMP) * 1000, DBZ_TIMESTAMP)


#: The µs range of Python datetimes (0001-01-01 .. 9999-12-31T23:59:59.999999) around the epoch.
_MIN_MICROS = -62_135_596_800_000_000
_MAX_MICROS = 253_402_300_799_999_999


def micros_to_datetime(value: Any) -> dt.datetime:
    """``io.debezium.time.MicroTimestamp``: µs since epoch, naive."""
    if type(value) is int and _MIN_MICROS <= value <= _MAX_MICROS:
        return EPOCH + _timedelta(0, 0, value)
    return _micros_to_datetime(_as_int(value, DBZ_MICRO_TIMESTAMP), DBZ_MICRO_TIMESTAMP)


def nanos_to_datetime(value: Any) -> dt.datetime:
    """``io.debezium.time.NanoTimestamp``: ns since epoch, naive (floored to µs)."""
    return _micros_to_datetime(_as_int(value, DBZ_NANO_TIMESTAMP) // 1000, DBZ_NANO_TIMESTAMP)


_FRACTION = re.compile(r"(\.\d{6})\d+")
_fromisoformat = dt.datetime.fromisoformat


def zoned_timestamp(value: Any) -> dt.datetime:
    """``io.debezium.time.ZonedTimestamp``: ISO-8601 text with an offset, UTC-aware result.

    Fractions beyond microseconds are truncated. The result is converted to UTC so equal
    instants compare and encode equally.
    """
    if type(value) is not str:
        raise _fail(DBZ_ZONED_TIMESTAMP, value, "expected ISO-8601 text")
    try:
        # Python 3.11+ truncates fractions beyond microseconds itself.
        parsed = _fromisoformat(value)
    except ValueError:
        try:
            parsed = _fromisoformat(_FRACTION.sub(r"\1", value))
        except ValueError as exc:
            raise _fail(DBZ_ZONED_TIMESTAMP, value, "not an ISO-8601 timestamp") from exc
    zone = parsed.tzinfo
    if zone is UTC:
        return parsed
    if zone is None:
        raise _fail(DBZ_ZONED_TIMESTAMP, value, "no zone offset")
    return parsed.astimezone(UTC)


def zoned_time(value: Any) -> dt.time:
    """``io.debezium.time.ZonedTime``: ``HH:MM:SS[.f]`` with an offset, kept with its offset."""
    if not isinstance(value, str):
        raise _fail(DBZ_ZONED_TIME, value, "expected ISO-8601 time text")
    try:
        parsed = dt.time.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError as exc:
        raise _fail(DBZ_ZONED_TIME, value, "not an ISO-8601 time") from exc
    if parsed.tzinfo is None:
        raise _fail(DBZ_ZONED_TIME, value, "no zone offset")
    return parsed


def base64_bytes(value: Any) -> bytes:
    """A plain ``bytes`` field: the JSON converter sends base64 text."""
    return _as_bytes(value, "bytes")


_SIMPLE: dict[str, Converter] = {
    VARIABLE_SCALE_DECIMAL: variable_scale_decimal,
    DBZ_DATE: days_to_date,
    CONNECT_DATE: days_to_date,
    DBZ_TIME: millis_to_time,
    CONNECT_TIME: millis_to_time,
    DBZ_MICRO_TIME: micros_to_time,
    DBZ_NANO_TIME: nanos_to_time,
    DBZ_TIMESTAMP: millis_to_datetime,
    CONNECT_TIMESTAMP: millis_to_datetime,
    DBZ_MICRO_TIMESTAMP: micros_to_datetime,
    DBZ_NANO_TIMESTAMP: nanos_to_datetime,
    DBZ_ZONED_TIMESTAMP: zoned_timestamp,
    DBZ_ZONED_TIME: zoned_time,
}

#: Logical names whose wire value is kept as given (ARCHITECTURE §2).
PASS_THROUGH = frozenset(
    {
        "io.debezium.data.Json",
        "io.debezium.data.Uuid",
        "io.debezium.data.Enum",
        "io.debezium.data.EnumSet",
        "io.debezium.data.Xml",
        "io.debezium.data.Bits",
        "io.debezium.data.geometry.Geometry",
        "io.debezium.data.geometry.Geography",
        "io.debezium.data.geometry.Point",
        "io.debezium.time.Year",
        "io.debezium.time.MicroDuration",
        "io.debezium.time.Interval",
    }
)


def converter_for(
    logical: str | None, base_type: str, parameters: dict[str, str]
) -> Converter | None:
    """Return the converter for a field, or None when its wire value is already final.

    ``logical`` is the schema's ``name``, ``base_type`` the Connect type and ``parameters`` the
    schema parameters (``scale`` for decimals).
    """
    if logical == CONNECT_DECIMAL:
        if "scale" not in parameters:
            # Kafka Connect refuses such a schema: guessing 0 would store values 10^s too large.
            raise DecodeError(
                f"{CONNECT_DECIMAL} schema has no 'scale' parameter (Kafka Connect requires it)"
            )
        try:
            scale = int(parameters["scale"])
        except ValueError as exc:
            raise DecodeError(f"decimal schema has a non-integer scale {parameters!r}") from exc
        if not -MAX_SCALE <= scale <= MAX_SCALE:
            raise DecodeError(f"decimal schema scale {scale} is beyond ±{MAX_SCALE}")
        return decimal_converter(scale)
    if isinstance(logical, str) and logical in _SIMPLE:
        return _SIMPLE[logical]
    if logical is None and base_type == "bytes":
        return base64_bytes
    return None
