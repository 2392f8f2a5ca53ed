"""Canonical JSON: the one textual form of decoded values (ARCHITECTURE §2)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdcflow.schemas.canonical import (
    dead_letter_dict,
    decoded_dict,
    dumps,
    event_dict,
    to_text,
)
from cdcflow.schemas.model import (
    ChangeEvent,
    DeadLetter,
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

UTC = dt.UTC


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("10.20"), '"10.20"'),
        (Decimal("-0.00"), '"-0.00"'),
        (Decimal("1E-7"), '"0.0000001"'),
        (Decimal("1E+3"), '"1000"'),
        (
            Decimal("12345678901234567890123456789012345678.99"),
            '"12345678901234567890123456789012345678.99"',
        ),
        (Decimal("NaN"), '"NaN"'),
        (dt.date(2024, 2, 29), '"2024-02-29"'),
        (dt.date(1, 1, 1), '"0001-01-01"'),
        (dt.datetime(2024, 1, 15, 10, 30, 0, 123456), '"2024-01-15T10:30:00.123456"'),
        (dt.datetime(2024, 1, 15, 10, 30), '"2024-01-15T10:30:00"'),
        (dt.datetime(2024, 1, 15, 10, 30, tzinfo=UTC), '"2024-01-15T10:30:00Z"'),
        (
            dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            '"2024-01-15T10:30:00-05:00"',
        ),
        (dt.datetime(1969, 12, 31, 23, 59, 59, 999999), '"1969-12-31T23:59:59.999999"'),
        (dt.time(10, 30, 0, 500000), '"10:30:00.500000"'),
        (dt.time(0, 0), '"00:00:00"'),
        (dt.time(8, 0, tzinfo=UTC), '"08:00:00Z"'),
        (b"\xde\xad\xbe\xef", '"3q2+7w=="'),
        (b"", '""'),
        (float("nan"), '"NaN"'),
        (float("inf"), '"Infinity"'),
        (float("-inf"), '"-Infinity"'),
        (1.5, "1.5"),
        (None, "null"),
        (True, "true"),
        (2**63, "9223372036854775808"),
    ],
)
def test_scalar_encoding(value: object, text: str) -> None:
    assert dumps(value).decode() == text


def test_nested_values_are_fixed_too() -> None:
    out = dumps({"a": [Decimal("1E-9"), {"b": float("nan")}], "c": (Decimal("5"),)})
    assert json.loads(out) == {"a": ["0.000000001", {"b": "NaN"}], "c": ["5"]}


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimals_are_fixed_point_and_exact(value: Decimal) -> None:
    text = json.loads(dumps(value))
    assert "E" not in text and "e" not in text
    back = Decimal(text)
    assert back == value
    # == ignores the scale: compare the digits and exponent too. A positive exponent
    # (1E+3) is written out in full ("1000"), so the text then has exponent 0.
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent <= 0:
        assert back.as_tuple() == value.as_tuple()
    else:
        assert back.as_tuple().exponent == 0


def test_to_text() -> None:
    assert to_text("x") == "x"
    assert to_text(b"\x00\xff") == "AP8="
    assert to_text(Decimal("1E-8")) == "0.00000001"
    assert to_text(Decimal("10.20")) == "10.20"
    assert to_text(dt.date(2024, 1, 15)) == "2024-01-15"
    assert to_text(42) == "42"


def make_event(**changes: object) -> ChangeEvent:
    fields: dict = {
        "op": Op.UPDATE,
        "table": TableId("shop", "public", "orders"),
        "position": Position("shop.public.orders", 2, 41),
        "key": {"id": 7},
        "before": None,
        "after": {"id": 7, "total": Decimal("10.20"), "at": dt.datetime(2024, 1, 15, 10, 30)},
        "unavailable": ("notes",),
        "source": SourceInfo(
            connector="postgresql",
            name="shop",
            ts_ms=5,
            snapshot="false",
            database="shop",
            schema="public",
            table="orders",
            version="2.7.3.Final",
            native={"lsn": 99, "txId": 3},
        ),
        "ts_ms": 6,
    }
    fields.update(changes)
    return ChangeEvent(**fields)


def test_event_dict_has_the_contract_fields() -> None:
    out = json.loads(dumps(event_dict(make_event())))
    assert out == {
        "kind": "change",
        "op": "u",
        "table": "shop.public.orders",
        "key": {"id": 7},
        "before": None,
        "after": {"id": 7, "total": "10.20", "at": "2024-01-15T10:30:00"},
        "unavailable": ["notes"],
        "source": {
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": 5,
            "snapshot": "false",
            "db": "shop",
            "schema": "public",
            "table": "orders",
            "version": "2.7.3.Final",
            "lsn": 99,
            "txId": 3,
        },
        "position": {"stream": "shop.public.orders", "partition": 2, "offset": 41},
        "ts_ms": 6,
    }


def test_event_dict_optional_parts() -> None:
    event = make_event(
        transaction=TransactionInfo(id="t1", total_order=3, data_collection_order=1),
        schema=TableSchema(name="orders.Value", fingerprint="abc", columns=(), version=2),
        meta={"custom": 1},
    )
    out = event_dict(event)
    assert out["transaction"] == {"id": "t1", "total_order": 3, "data_collection_order": 1}
    assert out["schema"] == {"name": "orders.Value", "version": 2, "fingerprint": "abc"}
    assert out["meta"] == {"custom": 1}


def test_decoded_dict_kinds() -> None:
    p = Position("s", 0, 1)
    assert decoded_dict(Tombstone(position=p, key={"id": 1})) == {
        "kind": "tombstone",
        "key": {"id": 1},
        "position": {"stream": "s", "partition": 0, "offset": 1},
    }
    assert decoded_dict(Heartbeat(position=p, ts_ms=3))["kind"] == "heartbeat"
    marker = decoded_dict(TransactionMarker(status="END", id="x", position=p, event_count=2))
    assert (marker["kind"], marker["status"], marker["event_count"]) == ("transaction", "END", 2)
    change = decoded_dict(SchemaChange(position=p, database="db", ddl="DROP TABLE t"))
    assert (change["kind"], change["database"], change["ddl"]) == (
        "schema_change",
        "db",
        "DROP TABLE t",
    )
    with pytest.raises(TypeError, match="not a decoded message"):
        decoded_dict({"op": "c"})


def test_dead_letter_dict_keeps_original_bytes() -> None:
    letter = DeadLetter(
        step="decode",
        reason="bad",
        error_type="DecodeError",
        position=Position("s", 0, 4),
        value=b'{"x"',
        key=None,
        failed_at_ms=9,
    )
    out = dead_letter_dict(letter)
    assert out["value_b64"] == "eyJ4Ig=="
    assert out["key_b64"] is None
    assert out["position"] == {"stream": "s", "partition": 0, "offset": 4}
    assert "event" not in out
