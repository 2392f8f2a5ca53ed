"""Issue 9: exact decimals, values checked against the schema, no envelope read as a row.

Each test feeds the message the issue reported (or a close variant) and asserts the exact
value, or that the message is refused with a DecodeError naming what is wrong.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from cdcflow.errors import DecodeError
from cdcflow.schemas.debezium import DebeziumJsonDecoder
from cdcflow.schemas.model import ChangeEvent, Op, Position, RawBatch, RawRecord
from cdcflow.transforms.decode import DecodeStep

DECIMAL = "org.apache.kafka.connect.data.Decimal"


def pos(offset: int = 0) -> Position:
    return Position("t", 0, offset)


def field(column: str, type_: str, optional: bool = True, **extra: Any) -> dict[str, Any]:
    return {"field": column, "type": type_, "optional": optional, **extra}


def wrapped(fields: list[dict[str, Any]], after: Any, op: str = "c") -> bytes:
    schema = {
        "type": "struct",
        "name": "shop.public.t.Envelope",
        "fields": [
            {"type": "struct", "fields": fields, "optional": True, "field": "before"},
            {"type": "struct", "fields": fields, "optional": True, "field": "after"},
            {"type": "struct", "fields": [field("table", "string")], "field": "source"},
            field("op", "string", optional=False),
        ],
    }
    payload = {"op": op, "before": None, "after": after, "source": {"table": "t"}}
    return json.dumps({"schema": schema, "payload": payload}).encode()


def after_of(value: bytes) -> dict[str, Any]:
    event = DebeziumJsonDecoder().decode(value, pos())
    assert isinstance(event, ChangeEvent)
    assert event.after is not None
    return event.after


def decimal_field(scale: str | None = "3") -> dict[str, Any]:
    params = {} if scale is None else {"parameters": {"scale": scale}}
    return field("d", "bytes", name=DECIMAL, **params)


# -- 1. decimals sent as JSON numbers -------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "scale", "expected"),
    [
        ("12345.110", "3", "12345.110"),
        ("123456789876543212345678987654321.110", "3", "123456789876543212345678987654321.110"),
        ("12345", "3", "12345.000"),
        ('"12.5"', "2", "12.50"),
        ("-0.5", "4", "-0.5000"),
        ("1e2", "1", "100.0"),
    ],
)  # fmt: skip
def test_numeric_decimals_are_exact_with_the_scale(number: str, scale: str, expected: str) -> None:
    value = wrapped([decimal_field(scale)], {}).replace(
        b'"after": {}', b'"after": {"d": %s}' % number.encode()
    )
    got = after_of(value)["d"]
    assert isinstance(got, Decimal)
    assert str(got) == expected  # str() keeps the exponent: the scale is compared too


def test_numeric_decimal_with_digits_beyond_the_scale_is_refused() -> None:
    value = wrapped([decimal_field("2")], {"d": 0}).replace(b'"d": 0', b'"d": 12.345')
    with pytest.raises(DecodeError, match=r"column 'd'.*more digits than the schema's scale 2"):
        DebeziumJsonDecoder().decode(value, pos())


def test_schemaless_numbers_too_large_for_a_float_stay_exact() -> None:
    value = (
        b'{"op": "c", "source": {"table": "t"}, "after": {"i": 123456789876543212345678987654321,'
        b' "f": 123456789876543212345678987654321.110, "g": 1.5}}'
    )
    after = after_of(value)
    assert after["i"] == 123456789876543212345678987654321 and type(after["i"]) is int
    assert str(after["f"]) == "123456789876543212345678987654321.110"
    assert after["g"] == 1.5 and type(after["g"]) is float


# -- 2. a Decimal schema without scale -------------------------------------------------------


def test_decimal_schema_without_scale_is_refused_naming_the_column() -> None:
    value = wrapped([decimal_field(None)], {"d": "BNI="})
    decoder = DebeziumJsonDecoder()
    for _ in range(2):  # the failure is remembered with the schema, and stays the same
        with pytest.raises(DecodeError, match=r"column 'd'.*no 'scale' parameter"):
            decoder.decode(value, pos())


# -- 3. values checked against the schema ----------------------------------------------------


@pytest.mark.parametrize(
    ("schema_field", "row", "expected"),
    [
        (field("b", "boolean"), {"b": "maybe"}, "column 'b': expected boolean, got text"),
        (field("i", "int32"), {"i": "abc"}, "column 'i': expected int32, got text"),
        (field("i", "int32"), {"i": 10**40}, "column 'i': expected int32, got an integer outside"),
        (field("i", "int8"), {"i": 128}, "column 'i': expected int8"),
        (field("i", "int64"), {"i": 2**63}, "column 'i': expected int64"),
        (field("i", "int16"), {"i": True}, "column 'i': expected int16, got a boolean"),
        (field("s", "string"), {"s": {"a": 1}}, "column 's': expected string, got an object"),
        (field("f", "float64"), {"f": "1.5"}, "column 'f': expected float64, got text"),
        (field("x", "bytes"), {"x": 5}, "column 'x': expected bytes, got an integer"),
        (field("s", "string", optional=False), {}, "column 's': a value is required"),
        (field("s", "string", optional=False), {"s": None}, "column 's': a value is required"),
        (field("a", "array", items={"type": "int32", "optional": False}), {"a": [1, "x"]},
         "column 'a\\[\\]': expected int32, got text"),
        (field("a", "array", items={"type": "int32"}), {"a": {}}, "column 'a': expected array"),
        (field("m", "map", keys={"type": "string"}, values={"type": "boolean"}),
         {"m": {"k": 1}}, "column 'm\\[\\]': expected boolean, got an integer"),
        (field("st", "struct", fields=[field("z", "int32", optional=False)]), {"st": {}},
         "column 'st.z': a value is required"),
    ],
)  # fmt: skip
def test_values_that_contradict_the_schema_are_refused(
    schema_field: dict[str, Any], row: dict[str, Any], expected: str
) -> None:
    with pytest.raises(DecodeError, match=expected):
        DebeziumJsonDecoder().decode(wrapped([schema_field], row), pos())


def test_valid_values_pass_and_are_checked_on_every_message() -> None:
    fields = [
        field("i", "int32", optional=False),
        field("f", "float64"),
        field("s", "string"),
        field("b", "boolean"),
        field("st", "struct", fields=[field("z", "int16")]),
    ]
    decoder = DebeziumJsonDecoder()
    good = {"i": 1, "f": 2.5, "s": "x", "b": False, "st": {"z": 3}}
    for offset in range(3):  # the second and third use the remembered type combination
        event = decoder.decode(wrapped(fields, good), pos(offset))
        assert isinstance(event, ChangeEvent) and event.after == good
    # same Python types as the accepted rows, but out of range: still refused
    with pytest.raises(DecodeError, match="column 'i': expected int32"):
        decoder.decode(wrapped(fields, dict(good, i=2**31)), pos(9))
    with pytest.raises(DecodeError, match=r"column 'st\.z': expected int16"):
        decoder.decode(wrapped(fields, dict(good, st={"z": 2**15})), pos(9))
    optional_null = dict(good, f=None, s=None)
    event = decoder.decode(wrapped(fields, optional_null), pos(10))
    assert isinstance(event, ChangeEvent) and event.after == optional_null


def test_a_required_field_with_a_default_takes_the_default() -> None:
    fields = [field("id", "int32", optional=False), field("n", "int32", optional=False, default=7)]
    assert after_of(wrapped(fields, {"id": 1, "n": None})) == {"id": 1, "n": 7}


def test_key_struct_missing_its_fields_is_refused() -> None:
    key = json.dumps(
        {
            "schema": {"type": "struct", "fields": [field("id", "int32", optional=False)]},
            "payload": {},
        }
    ).encode()
    value = wrapped([field("id", "int32")], {"id": 1})
    with pytest.raises(DecodeError, match="message key: column 'id': a value is required"):
        DebeziumJsonDecoder().decode(value, pos(), key=key)


def test_schemaless_values_stay_as_sent() -> None:
    after = after_of(b'{"op": "c", "source": {"table": "t"}, "after": {"b": "maybe", "i": "x"}}')
    assert after == {"b": "maybe", "i": "x"}


# -- 4. what is not an envelope is not a row ---------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b'{"before": null, "after": {"id": 1}, "source": {"table": "t"}, "ts_ms": 1}',
         "not a valid Debezium envelope \\(it has no 'op'\\)"),
        (b'{"schema": {"type": "struct", "fields": []}}', "wrapper without its 'payload'"),
        (b"{}", "an empty object"),
        (b'{"after": {"id": 1}, "transaction": null}', "not a valid Debezium envelope"),
        (b'{"payload": {}}', "an empty object"),
    ],
)  # fmt: skip
def test_broken_envelopes_are_never_rows(message: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        DebeziumJsonDecoder().decode(message, pos(), topic="db.t")


def test_genuine_unwrapped_records_are_still_rows() -> None:
    event = DebeziumJsonDecoder().decode(
        b'{"id": 1, "source": "web", "__op": "c"}', pos(), topic="db.t"
    )
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.CREATE and event.after == {"id": 1, "source": "web"}


def test_avro_payloads_follow_the_same_rule() -> None:
    decoder = DebeziumJsonDecoder()
    with pytest.raises(DecodeError, match="not a valid Debezium envelope"):
        decoder.decode_payload({"before": None, "after": {"id": 1}}, pos(), topic="db.t")
    with pytest.raises(DecodeError, match="an empty object"):
        decoder.decode_payload({}, pos(), topic="db.t", is_envelope=False)
    # an unwrapped record with a column called "op" is a row, not a broken envelope
    event = decoder.decode_payload({"id": 1, "op": "x"}, pos(), topic="db.t", is_envelope=None)
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "op": "x"}


# -- 5. {"payload": ...} without schema ------------------------------------------------------


def test_payload_without_schema_is_unwrapped() -> None:
    inner = {"op": "u", "before": None, "after": {"id": 3}, "source": {"table": "t"}}
    event = DebeziumJsonDecoder().decode(json.dumps({"payload": inner}).encode(), pos())
    assert isinstance(event, ChangeEvent) and event.op is Op.UPDATE and event.after == {"id": 3}


# -- 6. malformed envelope parts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"source": [1, 2]}, "'source' must be an object or null, got list"),
        ({"source": "pg"}, "'source' must be an object or null, got str"),
        ({"ts_ms": "soon"}, "'ts_ms' must be an integer"),
        ({"source": {"table": "t", "ts_ms": "x"}}, "'source.ts_ms' must be an integer"),
        ({"transaction": [1]}, "'transaction' must be an object or null, got list"),
    ],
)
def test_malformed_envelope_parts_are_refused(extra: dict[str, Any], reason: str) -> None:
    message = {"op": "c", "after": {"id": 1}, "source": {"table": "t"}, **extra}
    with pytest.raises(DecodeError, match=reason):
        DebeziumJsonDecoder().decode(json.dumps(message).encode(), pos(), topic="db.t")


# -- 7. a delete naming no row -----------------------------------------------------------------


def test_delete_without_key_or_before_is_refused() -> None:
    message = b'{"op": "d", "before": null, "after": null, "source": {"table": "t"}}'
    with pytest.raises(DecodeError, match="neither a key nor a 'before'"):
        DebeziumJsonDecoder().decode(message, pos())
    event = DebeziumJsonDecoder().decode(message, pos(), key=b'{"id": 4}')
    assert isinstance(event, ChangeEvent) and event.key == {"id": 4}


# -- 8. base64 or number -----------------------------------------------------------------------


def test_text_that_is_base64_and_a_number_is_read_as_base64() -> None:
    unscaled = int.from_bytes(bytes.fromhex("d74d34"), "big", signed=True)  # base64 "1000"
    got = after_of(wrapped([decimal_field("2")], {"d": "1000"}))["d"]
    assert str(got) == str(Decimal(unscaled).scaleb(-2))
    assert str(after_of(wrapped([decimal_field("2")], {"d": "1000.5"}))["d"]) == "1000.50"


# -- 14. nothing but DecodeError, and bytes kept exactly ---------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"op": "c", "source": {"table": "t"}, "after": {"a": ' + b"[" * 900 + b"]" * 900 + b"}}",
        b'{"op": "c", "source": {"table": "t"}, "after": {"a": "\xff\xfe"}}',
        b'{"op": "c", "source": {"table": "t"}, "after": {"a": 1}, "ts_ms": 1e999999}',
    ],
)
def test_hostile_input_raises_decode_error_only(message: bytes) -> None:
    with pytest.raises(DecodeError):
        DebeziumJsonDecoder().decode(message, pos())


def test_non_utf8_bytes_become_a_dead_letter_with_the_original_bytes() -> None:
    bad = b'{"op": "c", "source": {"table": "t"}, "after": {"name": "caf\xe9 \x80\xff"}}'
    key = b'{"id": "\xc3\x28"}'
    good = b'{"op": "c", "source": {"table": "t"}, "after": {"name": "ok"}}'
    records = [
        RawRecord(key=key, value=bad, position=pos(0)),
        RawRecord(key=None, value=good, position=pos(1)),
    ]
    step = DecodeStep(stream_is_topic=False)
    result = step.process(RawBatch(stream="t", partition=0, records=records, last_offset=1))
    assert [e.after for e in result.batch.events] == [{"name": "ok"}]
    [letter] = result.dead_letters
    assert letter.value == bad and letter.key == key  # byte for byte
    assert letter.error_type == "DecodeError"
    assert "UTF-8" in letter.reason
