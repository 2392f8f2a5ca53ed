"""MongoDB Extended JSON (relaxed and canonical) to Python values.

Debezium's MongoDB connector sends ``before``/``after`` (and the key's ``id``) as strings of
Extended JSON. Conversions: ``$oid`` to its hex string, ``$date`` to a UTC-aware datetime,
``$numberInt``/``$numberLong`` to int, ``$numberDouble`` to float, ``$numberDecimal`` to
Decimal, ``$binary`` to bytes, ``$uuid`` to its string, ``$timestamp`` to ``{"t": .., "i": ..}``,
``$regularExpression`` to ``{"pattern": .., "options": ..}``; other ``$`` wrappers
(``$minKey``, ``$symbol``, ``$code``...) are kept as given.
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec

from cdcflow.errors import DecodeError
from cdcflow.schemas.logical import JSON_DECODER

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)


def _date(value: Any) -> dt.datetime:
    if isinstance(value, dict) and "$numberLong" in value:
        value = int(value["$numberLong"])
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + dt.timedelta(milliseconds=value)
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        return parsed.astimezone(_UTC) if parsed.tzinfo else parsed.replace(tzinfo=_UTC)
    raise DecodeError(f"bad Extended JSON $date {value!r}")


def _double(value: Any) -> float:
    if isinstance(value, str):
        return float({"Infinity": "inf", "-Infinity": "-inf"}.get(value, value))
    return float(value)


def _binary(value: dict[str, Any]) -> bytes:
    payload = value["$binary"]
    if isinstance(payload, dict):
        payload = payload.get("base64", "")
    return base64.b64decode(payload, validate=True)


def _convert(value: Any) -> Any:
    if isinstance(value, list):
        return [_convert(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) in (1, 2):
        keys = value.keys()
        try:
            if "$oid" in keys:
                return str(value["$oid"])
            if "$date" in keys:
                return _date(value["$date"])
            if "$numberLong" in keys or "$numberInt" in keys:
                number = value["$numberLong"] if "$numberLong" in keys else value["$numberInt"]
                return int(number)
            if "$numberDouble" in keys:
                return _double(value["$numberDouble"])
            if "$numberDecimal" in keys:
                return Decimal(value["$numberDecimal"])
            if "$binary" in keys:
                return _binary(value)
            if "$uuid" in keys:
                return str(value["$uuid"])
            if "$timestamp" in keys:
                stamp = value["$timestamp"]
                return {"t": stamp.get("t"), "i": stamp.get("i")}
            if "$regularExpression" in keys:
                regex = value["$regularExpression"]
                return {"pattern": regex.get("pattern"), "options": regex.get("options")}
        except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError) as exc:
            raise DecodeError(f"bad Extended JSON value {value!r}: {exc}") from exc
    return {k: _convert(v) for k, v in value.items()}


def decode_document(text: str | bytes) -> dict[str, Any]:
    """Parse an Extended JSON document string into a dict of Python values."""
    try:
        parsed = JSON_DECODER.decode(text)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"MongoDB document is not valid Extended JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise DecodeError(f"MongoDB document must be a JSON object, got {type(parsed).__name__}")
    result = _convert(parsed)
    assert isinstance(result, dict)
    return result


def convert_value(value: Any) -> Any:
    """Convert an already-parsed Extended JSON value (used for key ids)."""
    return _convert(value)
