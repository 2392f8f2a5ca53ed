"""MongoDB Extended JSON (canonical and relaxed) to Python values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cdcflow.errors import DecodeError
from cdcflow.schemas.ejson import convert_value, decode_document

UTC = dt.UTC


def test_canonical_types() -> None:
    doc = decode_document(
        '{"_id": {"$oid": "65a5036c8f1d2e3a4b5c6d7e"}, "i": {"$numberInt": "-7"},'
        ' "l": {"$numberLong": "9223372036854775807"}, "d": {"$numberDouble": "-0.5"},'
        ' "inf": {"$numberDouble": "-Infinity"}, "dec": {"$numberDecimal": "0.10"},'
        ' "when": {"$date": {"$numberLong": "-1"}},'
        ' "bin": {"$binary": {"base64": "AAE=", "subType": "00"}},'
        ' "u": {"$uuid": "a3c5e2f0-1b7d-4c9e-8f00-123456789abc"},'
        ' "ts": {"$timestamp": {"t": 1705314600, "i": 3}},'
        ' "re": {"$regularExpression": {"pattern": "^a", "options": "i"}}, "min": {"$minKey": 1}}'
    )
    assert doc == {
        "_id": "65a5036c8f1d2e3a4b5c6d7e",
        "i": -7,
        "l": 9223372036854775807,
        "d": -0.5,
        "inf": float("-inf"),
        "dec": Decimal("0.10"),
        "when": dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "bin": b"\x00\x01",
        "u": "a3c5e2f0-1b7d-4c9e-8f00-123456789abc",
        "ts": {"t": 1705314600, "i": 3},
        "re": {"pattern": "^a", "options": "i"},
        "min": {"$minKey": 1},
    }
    assert str(doc["dec"]) == "0.10"


def test_relaxed_types() -> None:
    doc = decode_document(
        '{"n": 42, "f": 1.5, "when": {"$date": "2024-02-29T10:30:00.123Z"},'
        ' "local": {"$date": "2024-01-15T10:30:00+02:00"}, "ms": {"$date": 1705314600123},'
        ' "legacy": {"$binary": "3q2+7w==", "$type": "00"}}'
    )
    assert doc == {
        "n": 42,
        "f": 1.5,
        "when": dt.datetime(2024, 2, 29, 10, 30, 0, 123000, tzinfo=UTC),
        "local": dt.datetime(2024, 1, 15, 8, 30, tzinfo=UTC),
        "ms": dt.datetime(2024, 1, 15, 10, 30, 0, 123000, tzinfo=UTC),
        "legacy": bytes.fromhex("deadbeef"),
    }


def test_nested_documents_and_arrays() -> None:
    doc = decode_document(
        '{"a": {"b": [{"c": {"$numberLong": "1"}}, [{"$oid": "00000000000000000000000a"}]]},'
        ' "plain": {"x": 1, "y": 2, "z": 3}}'
    )
    assert doc == {
        "a": {"b": [{"c": 1}, ["00000000000000000000000a"]]},
        "plain": {"x": 1, "y": 2, "z": 3},
    }


def test_convert_value_for_key_ids() -> None:
    assert convert_value({"$oid": "65a5036c8f1d2e3a4b5c6d7e"}) == "65a5036c8f1d2e3a4b5c6d7e"
    assert convert_value(1004) == 1004
    assert convert_value([{"$numberInt": "1"}]) == [1]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not valid Extended JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"x": {"$numberInt": "seven"}}', "bad Extended JSON"),
        ('{"x": {"$date": true}}', r"\$date"),
        ('{"x": {"$numberDecimal": "1.2.3"}}', "bad Extended JSON"),
        ('{"x": {"$date": {"$numberLong": "99999999999999999999"}}}', "bad Extended JSON"),
        ('{"x": {"$binary": {"base64": "***", "subType": "00"}}}', "bad Extended JSON"),
    ],
)
def test_errors(text: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_document(text)
