"""Confluent Avro decoding: wire format, logical types equal to JSON's, errors, caching."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal

import pytest

from cdcflow.errors import DecodeError
from cdcflow.schemas.avro import ConfluentAvroDecoder, compile_schema, split_wire_format
from cdcflow.schemas.debezium import DebeziumJsonDecoder
from cdcflow.schemas.model import (
    ChangeEvent,
    Op,
    Position,
    RawBatch,
    RawRecord,
    TableId,
    Tombstone,
    TransactionMarker,
)
from cdcflow.schemas.registry import SchemaRegistryConfig, UnknownSchemaError
from cdcflow.transforms.decode import DecodeStep
from tests.unit.avro_samples import (
    KEY_SCHEMA,
    DictRegistry,
    envelope,
    envelope_schema,
    wire,
)

POS = Position("shop.public.orders", 0, 42)
UTC = dt.UTC


def _decoder(**kwargs: object) -> tuple[ConfluentAvroDecoder, DictRegistry]:
    registry = DictRegistry({1: envelope_schema(), 2: KEY_SCHEMA})
    return ConfluentAvroDecoder(registry, **kwargs), registry  # type: ignore[arg-type]


def test_envelope_decodes_logical_types_to_python_values() -> None:
    decoder, _ = _decoder()
    event = decoder.decode(
        wire(1, envelope_schema(), envelope(1)), POS, key=wire(2, KEY_SCHEMA, {"id": 1})
    )
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.CREATE
    assert event.table == TableId("shop", "public", "orders")
    assert event.key == {"id": 1}
    assert event.position == POS
    assert event.source.native["lsn"] == 1001
    assert event.ts_ms == 1_700_000_000_500
    after = event.after
    assert after is not None
    assert after["amount"] == Decimal("123.46")
    assert str(after["amount"]) == "123.46"
    assert after["created"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123456)
    assert after["day"] == dt.date(2024, 1, 1)
    assert after["zoned"] == dt.datetime(2024, 1, 15, 8, 30, 0, 123456, tzinfo=UTC)
    assert str(after["ratio"]) == "-1.500"  # str() compares the exponent (scale) too
    assert after["stamped"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000)
    assert after["stamped"].tzinfo is None
    assert after["at"] == dt.time(10, 30)
    assert after["small"] == 7
    assert after["blob"] == b"\x00\xff"
    assert after["doc"] == '{"a": 1}'
    schema = event.schema
    assert schema is not None
    assert schema.name == "shop.public.orders.Value"
    assert schema.key_columns == ("id",)
    amount = schema.column("amount")
    assert amount is not None and amount.logical == "org.apache.kafka.connect.data.Decimal"
    assert amount.parameters["scale"] == "2" and amount.optional
    small = schema.column("small")
    assert small is not None and small.type == "int16" and not small.optional
    ratio = schema.column("ratio")
    assert ratio is not None and ratio.logical == "io.debezium.data.VariableScaleDecimal"


def test_avro_values_equal_json_values() -> None:
    """The same row through the JSON converter (with its schema block) decodes identically."""
    decoder, _ = _decoder()
    avro_event = decoder.decode(wire(1, envelope_schema(), envelope(3)), POS)
    row_fields = [
        {"field": "id", "type": "int32", "optional": False},
        {
            "field": "amount",
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2"},
        },
        {
            "field": "created",
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.MicroTimestamp",
        },
        {"field": "day", "type": "int32", "optional": True, "name": "io.debezium.time.Date"},
        {
            "field": "zoned",
            "type": "string",
            "optional": True,
            "name": "io.debezium.time.ZonedTimestamp",
        },
        {
            "field": "ratio",
            "type": "struct",
            "optional": True,
            "name": "io.debezium.data.VariableScaleDecimal",
            "fields": [{"field": "scale", "type": "int32"}, {"field": "value", "type": "bytes"}],
        },
        {
            "field": "stamped",
            "type": "int64",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Timestamp",
        },
        {"field": "at", "type": "int64", "optional": True, "name": "io.debezium.time.MicroTime"},
        {"field": "blob", "type": "bytes", "optional": True},
    ]
    avro_after = avro_event.after  # type: ignore[union-attr]
    assert avro_after is not None
    payload_after = {
        "id": 3,
        "amount": base64.b64encode((12348).to_bytes(4, "big", signed=True)).decode(),
        "created": 1_700_000_000_123_456,
        "day": 19_723,
        "zoned": "2024-01-15T10:30:00.123456789+02:00",
        "ratio": {
            "scale": 3,
            "value": base64.b64encode((-1500).to_bytes(2, "big", signed=True)).decode(),
        },
        "stamped": 1_700_000_000_123,
        "at": 37_800_000_000,
        "blob": base64.b64encode(b"\x00\xff").decode(),
    }
    message = {
        "schema": {
            "type": "struct",
            "fields": [
                {"field": "before", "type": "struct", "optional": True, "fields": row_fields},
                {"field": "after", "type": "struct", "optional": True, "fields": row_fields},
                {"field": "op", "type": "string"},
            ],
        },
        "payload": {
            "before": None,
            "after": payload_after,
            "op": "c",
            "source": {"db": "shop", "schema": "public", "table": "orders"},
        },
    }
    json_event = DebeziumJsonDecoder().decode(json.dumps(message).encode(), POS)
    assert isinstance(json_event, ChangeEvent)
    assert json_event.after is not None
    for name in payload_after:
        assert avro_after[name] == json_event.after[name], name
        assert type(avro_after[name]) is type(json_event.after[name]), name


def test_delete_and_tombstones() -> None:
    decoder, _ = _decoder()
    key = wire(2, KEY_SCHEMA, {"id": 5})
    deleted = decoder.decode(wire(1, envelope_schema(), envelope(5, op="d")), POS, key=key)
    assert isinstance(deleted, ChangeEvent) and deleted.op is Op.DELETE
    assert deleted.before is not None and deleted.before["amount"] == Decimal("123.50")
    marker = decoder.decode(None, POS, key=key)
    assert isinstance(marker, Tombstone) and marker.key == {"id": 5}
    as_delete, _ = _decoder(tombstones="delete")
    event = as_delete.decode(None, POS, key=key, topic="shop.public.orders")
    assert isinstance(event, ChangeEvent) and event.op is Op.DELETE and event.key == {"id": 5}


def test_schema_fetched_once_per_id() -> None:
    decoder, registry = _decoder()
    for i in range(50):
        decoder.decode(
            wire(1, envelope_schema(), envelope(i)), POS, key=wire(2, KEY_SCHEMA, {"id": i})
        )
    assert sorted(registry.fetches) == [1, 2]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "truncated Confluent Avro message of 0 byte"),
        (b"\x00\x00\x01", "truncated Confluent Avro message of 3 byte"),
        (b'{"op": "c"}', "wrong magic byte 123"),
        (b"\x01\x00\x00\x00\x01abc", "wrong magic byte 1"),
        (b"\x00\x00\x00\x00\x63abc", "schema id 99 is not in the registry"),
    ],
)
def test_bad_wire_format(value: bytes, reason: str) -> None:
    decoder, _ = _decoder()
    with pytest.raises(DecodeError, match=reason):
        decoder.decode(value, POS)


def test_truncated_and_trailing_payloads() -> None:
    decoder, _ = _decoder()
    good = wire(1, envelope_schema(), envelope(1))
    with pytest.raises(DecodeError, match="truncated or was written with another schema"):
        decoder.decode(good[:-12], POS)
    with pytest.raises(DecodeError, match="byte\\(s\\) left after reading"):
        decoder.decode(good + b"\x00\x01", POS)
    with pytest.raises(DecodeError, match="message key"):
        decoder.decode(good, POS, key=b"\x00\x00\x00\x00\x02")


def test_unknown_id_is_a_decode_error() -> None:
    assert issubclass(UnknownSchemaError, DecodeError)
    assert split_wire_format(b"\x00\x00\x00\x01\x00rest") == (256, b"rest")


def test_unwrapped_record_and_transaction_marker() -> None:
    unwrapped_schema = {
        "type": "record",
        "name": "Value",
        "namespace": "shop.public.orders",
        "fields": [
            {"name": "id", "type": "int"},
            {
                "name": "day",
                "type": ["null", {"type": "int", "connect.name": "io.debezium.time.Date"}],
            },
            {"name": "__op", "type": ["null", "string"]},
            {"name": "__table", "type": ["null", "string"]},
            {"name": "__deleted", "type": ["null", "string"]},
        ],
    }
    marker_schema = {
        "type": "record",
        "name": "TransactionMetadataValue",
        "namespace": "io.debezium.connector.common",
        "fields": [
            {"name": "status", "type": "string"},
            {"name": "id", "type": "string"},
            {"name": "event_count", "type": ["null", "long"]},
            {"name": "ts_ms", "type": "long"},
        ],
    }
    registry = DictRegistry({3: unwrapped_schema, 4: marker_schema})
    decoder = ConfluentAvroDecoder(registry, key_columns={"*": ["id"]})  # type: ignore[arg-type]
    value = wire(
        3,
        unwrapped_schema,
        {"id": 9, "day": 1, "__op": "u", "__table": "orders", "__deleted": "false"},
    )
    event = decoder.decode(value, POS, topic="shop.public.orders")
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.UPDATE and event.after == {"id": 9, "day": dt.date(1970, 1, 2)}
    assert event.key == {"id": 9}
    marker = decoder.decode(
        wire(4, marker_schema, {"status": "BEGIN", "id": "tx1", "event_count": None, "ts_ms": 5}),
        POS,
    )
    assert isinstance(marker, TransactionMarker) and marker.status == "BEGIN" and marker.id == "tx1"


def test_plain_avro_logical_types_map_to_connect_types() -> None:
    schema = {
        "type": "record",
        "name": "Row",
        "fields": [
            {"name": "id", "type": "long"},
            {
                "name": "price",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 1},
            },
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
    compiled = compile_schema(json.dumps(schema))
    assert compiled.convert is not None
    row = compiled.convert({"id": 1, "price": (125).to_bytes(2, "big"), "at": 1_000_000})
    assert row == {"id": 1, "price": Decimal("12.5"), "at": dt.datetime(1970, 1, 1, 0, 0, 1)}


def test_decode_step_dead_letters_keep_original_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = DictRegistry({1: envelope_schema(), 2: KEY_SCHEMA})
    monkeypatch.setattr(SchemaRegistryConfig, "client", lambda self: registry)
    step = DecodeStep(
        format="debezium-avro",
        schema_registry=SchemaRegistryConfig(url="http://127.0.0.1:1"),
    )
    good = wire(1, envelope_schema(), envelope(1))
    bad = b"\x07not avro"
    records = [
        RawRecord(wire(2, KEY_SCHEMA, {"id": 1}), good, Position("shop.public.orders", 0, 0)),
        RawRecord(wire(2, KEY_SCHEMA, {"id": 2}), bad, Position("shop.public.orders", 0, 1)),
    ]
    result = step.process(RawBatch("shop.public.orders", 0, records, 1))
    assert len(result.batch.events) == 1 and result.batch.last_offset == 1
    assert [d.value for d in result.dead_letters] == [bad]
    assert result.dead_letters[0].key == wire(2, KEY_SCHEMA, {"id": 2})
    assert "wrong magic byte 7" in result.dead_letters[0].reason
    with pytest.raises(ValueError, match="schema registry"):
        DecodeStep(format="debezium-avro")


def _with_field_type(schema: object, field: str, new_type: object) -> object:
    """``schema`` (an envelope schema) with row field ``field`` of ``before``/``after`` retyped."""
    text = json.loads(json.dumps(schema))
    for part in text["fields"]:
        if part["name"] in ("before", "after"):
            for branch in part["type"]:
                if isinstance(branch, dict):
                    for column in branch["fields"]:
                        if column["name"] == field:
                            column["type"] = new_type
    return text


def test_an_avro_int16_out_of_range_is_a_decode_error_naming_the_column() -> None:
    # int16 columns travel as Avro `int` with connect.type int16: the wire format holds any
    # 32-bit value, so 40000 must be refused, not stored in a smallint column.
    decoder, _ = _decoder()
    image = envelope(1)
    image["after"]["small"] = 40_000
    with pytest.raises(DecodeError, match=r"'small'.*int16"):
        decoder.decode(wire(1, envelope_schema(), image), POS)


def test_an_avro_int_whose_varint_exceeds_32_bits_is_a_decode_error() -> None:
    # Corrupt (or mis-registered) bytes: a long's varint read where the schema says int.
    decoder, _ = _decoder()
    image = envelope(1)
    image["after"]["id"] = 2**40
    writer_schema = _with_field_type(envelope_schema(), "id", "long")
    with pytest.raises(DecodeError, match=r"'id'.*int32"):
        decoder.decode(wire(1, writer_schema, image), POS)


def test_avro_ints_in_range_decode_unchanged() -> None:
    decoder, _ = _decoder()
    image = envelope(1)
    image["after"]["small"] = -32_768
    image["after"]["id"] = 2**31 - 1
    event = decoder.decode(wire(1, envelope_schema(), image), POS)
    assert isinstance(event, ChangeEvent)
    assert event.after is not None
    assert (event.after["small"], event.after["id"]) == (-32_768, 2**31 - 1)
