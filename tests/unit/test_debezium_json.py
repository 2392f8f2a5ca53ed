"""DebeziumJsonDecoder on hand-written envelopes of every connector (tests/fixtures/debezium)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdcflow.errors import DecodeError
from cdcflow.schemas import logical as logical_names
from cdcflow.schemas.debezium import DebeziumJsonDecoder, json_codec
from cdcflow.schemas.model import (
    ChangeEvent,
    Heartbeat,
    Op,
    Position,
    SchemaChange,
    TableId,
    TableSchema,
    Tombstone,
    TransactionMarker,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def lines(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()


def pos(offset: int = 0, stream: str = "t") -> Position:
    return Position(stream, 0, offset)


def decode_all(
    name: str, keys: str | None = None, topic: str | None = None, **options: Any
) -> list[Any]:
    decoder = DebeziumJsonDecoder(**options)
    key_lines: list[bytes | None] = lines(keys) if keys else [None] * len(lines(name))
    return [
        decoder.decode(value, pos(i, name), key=key, topic=topic)
        for i, (value, key) in enumerate(zip(lines(name), key_lines, strict=True))
    ]


def change(item: Any) -> ChangeEvent:
    assert isinstance(item, ChangeEvent), item
    return item


# -- PostgreSQL -------------------------------------------------------------------------------


def test_postgres_schemaless_envelopes() -> None:
    events = [
        change(e) for e in decode_all("postgres/schemaless.jsonl", keys="postgres/keys.jsonl")
    ]
    assert [e.op for e in events] == [
        Op.READ,
        Op.READ,
        Op.READ,
        Op.CREATE,
        Op.UPDATE,
        Op.UPDATE,
        Op.DELETE,
        Op.TRUNCATE,
        Op.READ,
        Op.READ,
        Op.CREATE,
    ]
    first = events[0]
    assert first.table == TableId("shop", "public", "customers")
    assert str(first.table) == "shop.public.customers"
    assert first.key == {"id": 1}
    assert first.before is None
    assert first.after == {
        "id": 1,
        "email": "ada@example.com",
        "full_name": "Ada Lovelace",
        "vip": True,
        "bio": "Countess",
    }
    assert first.ts_ms == 1705314500100
    assert first.position == Position("postgres/schemaless.jsonl", 0, 0)
    source = first.source
    assert (source.connector, source.name, source.database, source.schema, source.table) == (
        "postgresql",
        "shop",
        "shop",
        "public",
        "customers",
    )
    assert source.ts_ms == 1705314500000
    assert source.version == "2.7.3.Final"
    assert source.native["lsn"] == 24023000
    assert source.native["txId"] == 570
    assert source.native["sequence"] == '["24023119","24023000"]'
    assert source.is_snapshot
    # snapshot as string enum, as boolean (1.x) and incremental
    assert [e.source.snapshot for e in events] == [
        "first",
        "true",
        "last",
        "false",
        "false",
        "false",
        "false",
        "false",
        "true",
        "incremental",
        "false",
    ]
    assert not events[3].source.is_snapshot
    update = events[4]
    assert update.before is not None and update.before["email"] == "ada@example.com"
    assert update.after is not None and update.after["email"] == "ada@example.org"
    delete = events[6]
    assert delete.after is None
    assert delete.before == {"id": 4, "email": None, "full_name": None, "vip": None, "bio": None}
    assert delete.key == {"id": 4}
    assert delete.row == delete.before
    truncate = events[7]
    assert truncate.table == TableId("shop", "public", "audit_log")
    assert truncate.before is None and truncate.after is None and truncate.key is None


def test_postgres_toast_placeholders_in_every_form() -> None:
    toast = change(decode_all("postgres/schemaless.jsonl")[5])
    # string form (text), base64 form (bytea) and one-element array form (text[])
    assert toast.unavailable == ("body", "cover", "keywords")
    assert toast.after == {"id": 10, "title": "CDC in practice", "views": 1042}
    assert "__debezium_unavailable_value" not in json.dumps(toast.after)


PRODUCT_AFTER = {
    "id": 101,
    "name": "Espresso cup",
    "price": Decimal("12.34"),
    "weight": Decimal("314.159"),
    "released": dt.date(2024, 2, 29),
    "discontinued": None,
    "restock_at": dt.time(10, 30, 0, 500000),
    "created_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
    "updated_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=UTC),
    "opens_at": dt.time(8, 0, tzinfo=UTC),
    "photo": bytes.fromhex("deadbeef"),
    "tags": ["kitchen", "ceramic"],
    "attrs": '{"color":"red","dishwasher":true}',
    "sku": "a3c5e2f0-1b7d-4c9e-8f00-123456789abc",
    "shelf_life": 31557600000000,
    "rating": 4.5,
    "stock": 12,
}


def test_postgres_with_schema_decodes_logical_types() -> None:
    items = decode_all("postgres/with_schema.jsonl", keys="postgres/with_schema.keys.jsonl")
    create, update, toast, delete, tombstone = items
    create = change(create)
    assert create.op is Op.CREATE
    assert create.after == PRODUCT_AFTER
    assert create.key == {"id": 101}
    assert create.after is not None
    assert create.after["price"].as_tuple().exponent == -2
    assert create.after["updated_at"].tzinfo is not None
    assert create.after["created_at"].tzinfo is None
    schema = create.schema
    assert isinstance(schema, TableSchema)
    assert schema.name == "shop.public.products.Value"
    assert schema.key_columns == ("id",)
    assert [c.name for c in schema.columns][:4] == ["id", "name", "price", "weight"]
    price = schema.column("price")
    assert price is not None
    assert price.logical == "org.apache.kafka.connect.data.Decimal"
    assert price.parameters == {"scale": "2", "connect.decimal.precision": "10"}
    assert price.type == "bytes" and price.optional
    id_column = schema.column("id")
    assert id_column is not None and not id_column.optional
    assert schema.column("nope") is None

    update = change(update)
    assert update.before is not None
    # negative decimal, zero with scale 0, pre-1970 date and timestamp, midnight
    assert update.before["price"] == Decimal("-12.34")
    assert update.before["weight"] == Decimal(0)
    assert update.before["released"] == dt.date(1900, 1, 1)
    assert update.before["created_at"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    assert update.before["restock_at"] == dt.time(0, 0)
    assert update.before["stock"] == 13
    assert update.transaction is not None
    assert (update.transaction.id, update.transaction.total_order) == ("591:24023512", 1)
    assert update.transaction.data_collection_order == 1
    assert update.schema is not None and update.schema.fingerprint == schema.fingerprint

    toast = change(toast)
    assert toast.unavailable == ("photo", "tags", "attrs")
    assert toast.after is not None
    assert set(PRODUCT_AFTER) - set(toast.after) == {"photo", "tags", "attrs"}
    assert toast.after["price"] == Decimal("12.34")

    delete = change(delete)
    assert delete.op is Op.DELETE and delete.after is None
    assert delete.before == PRODUCT_AFTER

    assert isinstance(tombstone, Tombstone)
    assert tombstone.key == {"id": 101}


def test_schema_is_compiled_once_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = json_codec.compile_value_schema

    def counting(raw: bytes) -> Any:
        calls.append(raw)
        return real(raw)

    monkeypatch.setattr(json_codec, "compile_value_schema", counting)
    field_calls: list[str] = []
    real_converter_for = logical_names.converter_for

    def counting_converter_for(name: Any, base: str, params: dict[str, str]) -> Any:
        field_calls.append(base)
        return real_converter_for(name, base, params)

    monkeypatch.setattr(logical_names, "converter_for", counting_converter_for)
    decoder = DebeziumJsonDecoder()
    products = lines("postgres/with_schema.jsonl")[:4]
    orders = lines("mysql/with_schema.jsonl")
    for i, value in enumerate(products + orders + products + orders):
        decoder.decode(value, pos(i))
    assert len(calls) == 2  # one per distinct schema, however many messages and interleavings
    per_schema = len(field_calls)
    for i, value in enumerate(products * 3):
        decoder.decode(value, pos(i))
    assert len(calls) == 2
    assert len(field_calls) == per_schema  # no field of any schema was looked at again


def test_a_second_decoder_has_its_own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = json_codec.compile_value_schema
    monkeypatch.setattr(
        json_codec, "compile_value_schema", lambda raw: calls.append(raw) or real(raw)
    )
    value = lines("postgres/with_schema.jsonl")[0]
    for decoder in (DebeziumJsonDecoder(), DebeziumJsonDecoder()):
        decoder.decode(value, pos())
        decoder.decode(value, pos(1))
    assert len(calls) == 2


# -- MySQL ------------------------------------------------------------------------------------


def test_mysql_with_schema_connect_and_debezium_time_types() -> None:
    create, update, delete = (change(e) for e in decode_all("mysql/with_schema.jsonl"))
    assert create.table == TableId("inventory", None, "orders")
    assert str(create.table) == "inventory.orders"
    assert create.after == {
        "order_number": 10001,
        "order_date": dt.date(2024, 1, 15),
        "pickup": dt.time(10, 30, 0, 500000),
        "placed_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123000),
        "shipped_at": dt.datetime(2024, 2, 29, 12, 0),
        "paid_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
        "modified": dt.datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
        "slot": dt.time(0, 0),
        "year": 2024,
        "quantity": 2,
        "amount": Decimal("99999999.99"),
        "state": "paid",
        "flags": 3,
    }
    native = create.source.native
    assert (native["file"], native["pos"], native["row"], native["server_id"]) == (
        "mysql-bin.000003",
        1042,
        0,
        223344,
    )
    assert native["gtid"] == "3e11fa47-71ca-11e1-9e33-c80aa9429562:23"
    assert update.after is not None and update.after["amount"] == Decimal("19.99")
    assert update.after["state"] == "shipped"
    assert delete.before is not None and delete.before["quantity"] == 3


def test_mysql_schemaless_and_snapshot_markers() -> None:
    events = [
        change(e) for e in decode_all("mysql/schemaless.jsonl", key_columns={"inventory.*": ["id"]})
    ]
    assert [e.op.value for e in events] == ["r", "r", "c", "u", "d", "t", "r"]
    assert [e.source.snapshot for e in events] == [
        "first",
        "last_in_data_collection",
        "false",
        "false",
        "false",
        "false",
        "true",
    ]
    assert [e.key for e in events] == [
        {"id": 1001},
        {"id": 1002},
        {"id": 1003},
        {"id": 1003},
        {"id": 1003},
        None,
        {"id": 1004},
    ]
    assert events[0].source.native["gtid"] is None


def test_mysql_schema_changes_are_not_rows() -> None:
    items = decode_all("mysql/schema_changes.jsonl")
    assert all(isinstance(i, SchemaChange) for i in items)
    alter, history, set_charset, wrapped = items
    assert isinstance(alter, SchemaChange)
    assert alter.database == "inventory"
    assert alter.ddl == "ALTER TABLE customers ADD COLUMN phone VARCHAR(32) NULL"
    assert alter.table_changes[0]["type"] == "ALTER"
    assert alter.table_changes[0]["table"]["primaryKeyColumnNames"] == ["id"]
    assert alter.source.connector == "mysql"
    assert alter.ts_ms == 1705314600900
    # the schema history topic: source {"server": ...} and the binlog position beside it
    assert isinstance(history, SchemaChange)
    assert history.ddl is not None and history.ddl.startswith("CREATE TABLE `customers`")
    assert history.source.native["server"] == "shop"
    assert history.source.native["file"] == "mysql-bin.000003"
    assert history.source.native["pos"] == 3000
    assert isinstance(set_charset, SchemaChange)
    assert set_charset.table_changes == [] and set_charset.database is None
    assert isinstance(wrapped, SchemaChange)
    assert wrapped.table_changes == [{"type": "ALTER", "id": '"inventory"."customers"'}]


# -- MongoDB ----------------------------------------------------------------------------------

SALLY = {
    "_id": "65a5036c8f1d2e3a4b5c6d7e",
    "name": "Sally Thomas",
    "age": 42,
    "visits": 9007199254740993,
    "balance": Decimal("1234.50"),
    "score": 4.25,
    "joined": dt.datetime(2024, 1, 15, 10, 30, 0, 123000, tzinfo=UTC),
    "born": dt.datetime(1969, 12, 31, tzinfo=UTC),
    "avatar": bytes.fromhex("deadbeef"),
    "ref": "a3c5e2f0-1b7d-4c9e-8f00-123456789abc",
    "address": {"city": "Vienna", "zip": "1010"},
    "tags": ["a", 7],
}
SALLY_UPDATED = {
    "_id": "65a5036c8f1d2e3a4b5c6d7e",
    "name": "Sally Thomas",
    "age": 43,
    "joined": dt.datetime(2024, 1, 15, 10, 30, 0, 123000, tzinfo=UTC),
    "address": {"city": "Graz", "zip": "8010"},
}


def test_mongodb_extended_json_documents() -> None:
    items = [change(e) for e in decode_all("mongodb/schemaless.jsonl", keys="mongodb/keys.jsonl")]
    read, create, full_update, patch_update, pre_image, delete, legacy = items
    assert read.op is Op.READ and read.source.snapshot == "true"
    assert read.after == SALLY
    assert read.key == {"_id": "65a5036c8f1d2e3a4b5c6d7e"}
    assert read.table == TableId("inventory", None, "customers")
    assert read.source.table == "customers"
    assert read.source.native["ord"] == 1
    assert create.op is Op.CREATE and create.after == SALLY and create.meta == {}
    # change_streams_update_full: the full document plus the decoded description
    assert full_update.after == SALLY_UPDATED
    assert full_update.meta["updateDescription"] == {
        "updatedFields": {"age": 43, "address.city": "Graz", "address.zip": "8010"},
        "removedFields": ["visits"],
        "truncatedArrays": None,
    }
    # change_streams: no document, only what changed
    assert patch_update.op is Op.UPDATE and patch_update.after is None
    assert patch_update.key == {"_id": "65a5036c8f1d2e3a4b5c6d7e"}
    assert patch_update.meta["updateDescription"] == {
        "updatedFields": {
            "age": 44,
            "joined": dt.datetime(2024, 1, 15, 10, 30, 0, 123000, tzinfo=UTC),
        },
        "removedFields": None,
        "truncatedArrays": [{"field": "tags", "newSize": 1}],
    }
    # pre-images
    assert pre_image.before == SALLY and pre_image.after == SALLY_UPDATED
    assert delete.op is Op.DELETE and delete.before is None and delete.after is None
    assert delete.key == {"_id": "65a5036c8f1d2e3a4b5c6d7e"}
    # legacy oplog mode: patch and filter, key from the filter when there is no message key
    assert legacy.after is None
    assert legacy.meta["patch"] == {"$v": 1, "$set": {"name": "Sally T."}}
    assert legacy.key == {"_id": "65a5036c8f1d2e3a4b5c6d7e"}
    assert legacy.source.snapshot == "false"
    assert legacy.source.native["rs"] == "rs0"


def test_mongodb_with_schema_block() -> None:
    create, patch_update = (change(e) for e in decode_all("mongodb/with_schema.jsonl"))
    assert create.after == SALLY
    assert create.key == {"_id": "65a5036c8f1d2e3a4b5c6d7e"}  # derived from the document
    assert patch_update.after is None
    assert patch_update.meta["updateDescription"]["updatedFields"]["age"] == 44


def test_mongodb_numeric_and_string_ids() -> None:
    decoder = DebeziumJsonDecoder()
    value = lines("mongodb/schemaless.jsonl")[5]  # a delete: the key is all there is
    assert change(decoder.decode(value, pos(), key=b'{"id": "1004"}')).key == {"_id": 1004}
    assert change(decoder.decode(value, pos(), key=b'{"id": "\\"ab\\""}')).key == {"_id": "ab"}


# -- SQL Server and Oracle --------------------------------------------------------------------


def test_sqlserver_with_schema() -> None:
    read, update, delete = (change(e) for e in decode_all("sqlserver/with_schema.jsonl"))
    assert read.table == TableId("testDB", "dbo", "customers")
    assert read.source.snapshot == "last"
    assert read.after == {
        "id": 1001,
        "first_name": "Sally",
        "balance": Decimal("999999.9999"),
        "birthday": dt.date(1969, 12, 31),
        "created": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
        "changed": dt.datetime(2024, 1, 15, 15, 30, 0, 123456, tzinfo=UTC),
        "alarm": dt.time(10, 30, 0, 500000),
        "legacy": dt.datetime(1969, 12, 31, 23, 59, 59),
        "active": True,
    }
    assert update.after is not None and update.after["balance"] == Decimal("-0.0128")
    assert update.source.native == {
        "sequence": None,
        "ts_us": 1705314600000000,
        "ts_ns": 1705314600000000000,
        "change_lsn": "00000027:00000758:0003",
        "commit_lsn": "00000027:00000758:0005",
        "event_serial_no": 2,
    }
    assert update.transaction is not None and update.transaction.total_order == 2
    assert delete.before is not None and delete.before["first_name"] == "Sal"


def test_sqlserver_schemaless_values_as_sent() -> None:
    create, delete = (change(e) for e in decode_all("sqlserver/schemaless.jsonl"))
    assert create.after == {"id": 1002, "first_name": "George", "balance": 10.5, "active": False}
    assert delete.op is Op.DELETE


def test_oracle_with_schema() -> None:
    read, update = (change(e) for e in decode_all("oracle/with_schema.jsonl"))
    assert read.table == TableId("ORCLPDB1", "DEBEZIUM", "CUSTOMERS")
    assert read.after == {
        "ID": Decimal(1001),
        "FIRST_NAME": "Sally",
        "SALARY": Decimal("1.00"),
        "HIRED": dt.datetime(2000, 2, 29),
        "LAST_LOGIN": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
        "LOGIN_TZ": dt.datetime(2024, 1, 15, 9, 30, 0, 123456, tzinfo=UTC),
        "NOTES": "hired in the leap year",
    }
    assert read.source.native["scn"] == "1513700"
    assert read.source.native["commit_scn"] is None
    assert update.unavailable == ("NOTES",)
    assert update.after is not None and "NOTES" not in update.after
    assert update.after["SALARY"] == Decimal("-1.29")
    assert update.source.native["txId"] == "02000a0037030000"


def test_oracle_schemaless_values_as_sent() -> None:
    create, delete = (change(e) for e in decode_all("oracle/schemaless.jsonl"))
    assert create.after == {
        "ID": 1009,
        "FIRST_NAME": "Anne",
        "SALARY": "ZA==",
        "HIRED": 951782400000,
    }
    assert delete.before == create.after


# -- ExtractNewRecordState --------------------------------------------------------------------


def test_unwrapped_records_keep_metadata_out_of_the_row() -> None:
    items = [
        change(e) for e in decode_all("unwrapped/records.jsonl", topic="shop.public.customers")
    ]
    create, update, delete, snapshot, rewrite_delete, mysql = items
    assert create.op is Op.CREATE
    assert create.after == {"id": 1, "email": "ada@example.com", "full_name": "Ada Lovelace"}
    assert create.before is None
    assert create.table == TableId(None, None, "customers")
    assert create.source.ts_ms == 1705314600123
    assert create.source.native == {"lsn": 24023128}
    assert create.meta == {}
    assert update.op is Op.UPDATE and update.source.native["lsn"] == 24023192
    assert delete.op is Op.DELETE and delete.after is None
    assert delete.before == {"id": 1, "email": "ada@example.org", "full_name": None}
    assert snapshot.op is Op.READ
    assert snapshot.table == TableId("shop", "public", "articles")
    assert snapshot.after == {"id": 10, "title": "CDC in practice"}
    assert snapshot.unavailable == ("body",)
    assert snapshot.source.connector == "postgresql"
    assert snapshot.source.snapshot == "true"
    assert snapshot.ts_ms == 1705314500100
    assert snapshot.source.native == {"txId": 570}
    # __deleted without __op (delete.handling.mode=rewrite) is a delete
    assert rewrite_delete.op is Op.DELETE
    assert rewrite_delete.before == {
        "id": 2,
        "email": "alan@example.com",
        "full_name": "Alan Turing",
    }
    assert mysql.table == TableId("inventory", None, "customers")
    assert mysql.source.native == {"file": "mysql-bin.000003", "pos": 1042, "row": 0}
    for event in items:
        for image in (event.before, event.after):
            assert image is None or not any(name.startswith("__") for name in image)


def test_unwrapped_record_without_table_uses_the_topic() -> None:
    decoder = DebeziumJsonDecoder()
    event = change(
        decoder.decode(b'{"id": 7, "__op": "c", "__lsn": 5}', pos(), topic="shop.public.x")
    )
    assert event.table == TableId("shop", "public", "x")
    assert event.after == {"id": 7}
    with pytest.raises(DecodeError, match="which table"):
        decoder.decode(b'{"id": 7, "__op": "c"}', pos())


def test_unwrapped_unknown_metadata_goes_to_meta() -> None:
    event = change(
        DebeziumJsonDecoder().decode(
            b'{"id": 1, "__op": "u", "__table": "t", "__custom": "x", "__source_query": "q"}', pos()
        )
    )
    assert event.after == {"id": 1}
    assert event.meta == {"custom": "x"}
    assert event.source.native == {"query": "q"}


def test_unwrapped_with_schema_converts_logical_types() -> None:
    (event,) = decode_all("unwrapped/with_schema.jsonl")
    event = change(event)
    assert event.op is Op.UPDATE
    assert event.after == {
        "id": 5,
        "amount": Decimal("12.34"),
        "happened_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
    }
    assert event.schema is not None
    assert [c.name for c in event.schema.columns] == ["id", "amount", "happened_at"]


def test_unwrapped_bad_op_is_an_error() -> None:
    with pytest.raises(DecodeError, match="__op"):
        DebeziumJsonDecoder().decode(b'{"id": 1, "__op": "z", "__table": "t"}', pos())


# -- transactions, tombstones, heartbeats -----------------------------------------------------


def test_transaction_markers_are_their_own_kind() -> None:
    items = decode_all("transactions/transactions.jsonl")
    kinds = [type(i).__name__ for i in items]
    assert kinds == [
        "TransactionMarker",
        "ChangeEvent",
        "ChangeEvent",
        "TransactionMarker",
        "TransactionMarker",
        "TransactionMarker",
    ]
    begin, first, second, end, wrapped_begin, wrapped_end = items
    assert isinstance(begin, TransactionMarker) and isinstance(end, TransactionMarker)
    assert (begin.status, begin.id, begin.ts_ms, begin.event_count) == (
        "BEGIN",
        "571:53195829",
        1705314600100,
        None,
    )
    assert (end.status, end.event_count) == ("END", 2)
    assert end.data_collections == [
        {"data_collection": "public.orders", "event_count": 1},
        {"data_collection": "public.customers", "event_count": 1},
    ]
    assert change(first).transaction is not None
    assert change(second).transaction.total_order == 2  # type: ignore[union-attr]
    assert isinstance(wrapped_end, TransactionMarker) and wrapped_end.event_count == 0
    assert isinstance(wrapped_begin, TransactionMarker) and wrapped_begin.id == "572:53195900"


def test_a_row_with_status_and_id_columns_is_still_a_row() -> None:
    event = DebeziumJsonDecoder().decode(
        b'{"id": 1, "status": "BEGIN", "note": "x", "__table": "jobs"}', pos()
    )
    assert isinstance(event, ChangeEvent)
    assert event.after == {"id": 1, "status": "BEGIN", "note": "x"}
    ddl_row = DebeziumJsonDecoder().decode(b'{"id": 1, "ddl": "x", "__table": "migrations"}', pos())
    assert isinstance(ddl_row, ChangeEvent)


@pytest.mark.parametrize("value", [None, b"", b"null", b"  ", b'{"schema":null,"payload":null}'])
def test_tombstones(value: bytes | None) -> None:
    item = DebeziumJsonDecoder().decode(value, pos(3), key=b'{"id": 9}')
    assert isinstance(item, Tombstone)
    assert item.key == {"id": 9}
    assert item.position == pos(3)


def test_tombstones_from_fixture() -> None:
    assert all(isinstance(i, Tombstone) for i in decode_all("misc/tombstones.jsonl"))


def test_tombstone_as_delete() -> None:
    decoder = DebeziumJsonDecoder(tombstones="delete")
    event = change(decoder.decode(None, pos(), key=b'{"id": 9}', topic="shop.public.orders"))
    assert event.op is Op.DELETE
    assert event.table == TableId("shop", "public", "orders")
    assert event.key == {"id": 9} and event.before == {"id": 9}
    with pytest.raises(DecodeError, match="no topic"):
        decoder.decode(None, pos(), key=b'{"id": 9}')
    with pytest.raises(DecodeError, match="no key"):
        decoder.decode(None, pos(), topic="shop.public.orders")


def test_heartbeats() -> None:
    items = decode_all("misc/heartbeats.jsonl")
    assert [type(i) for i in items] == [Heartbeat, Heartbeat]
    assert [i.ts_ms for i in items] == [1705314600999, 1705314601999]


# -- keys -------------------------------------------------------------------------------------


def test_keys_with_schema_are_converted() -> None:
    decoder = DebeziumJsonDecoder()
    key = (
        b'{"schema": {"type": "struct", "fields": [{"type": "bytes", "optional": false, '
        b'"name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "1"}, '
        b'"field": "k"}], "optional": false, "name": "x.Key"}, "payload": {"k": "BNI="}}'
    )
    assert decoder.decode_key(key) == {"k": Decimal("123.4")}
    assert decoder.decode_key(b'{"schema": null, "payload": {"id": 1}}') == {"id": 1}
    assert decoder.decode_key(b'"abc"') == {"id": "abc"}
    assert decoder.decode_key(b"null") is None
    assert decoder.decode_key(b"") is None
    with pytest.raises(DecodeError, match="message key"):
        decoder.decode_key(b"{oops")


def test_key_columns_globs() -> None:
    decoder = DebeziumJsonDecoder(key_columns={"shop.public.cust*": ["id", "email"]})
    value = lines("postgres/schemaless.jsonl")[3]
    assert change(decoder.decode(value, pos())).key == {"id": 4, "email": "edsger@example.com"}
    other = lines("postgres/schemaless.jsonl")[5]
    assert change(decoder.decode(other, pos())).key is None
    bad = DebeziumJsonDecoder(key_columns={"*": ["nope"]})
    with pytest.raises(DecodeError, match="nope"):
        bad.decode(value, pos())


def test_message_key_wins_over_key_columns() -> None:
    decoder = DebeziumJsonDecoder(key_columns={"*": ["email"]})
    value = lines("postgres/schemaless.jsonl")[3]
    assert change(decoder.decode(value, pos(), key=b'{"id": 4}')).key == {"id": 4}


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"op": "c", "after": {"id": 1}, "source": {"tabl', "not valid JSON"),
        (b"[1, 2, 3]", "must be a JSON object, got list"),
        (b'[1, "payload"]', "must be a JSON object, got list"),
        (b"42", "must be a JSON object, got int"),
        (b'{"op": "x", "after": {"id": 1}, "source": {"table": "t"}}', "unknown op 'x'"),
        (b'{"op": "c", "after": null, "source": {"table": "t"}}', "needs an 'after'"),
        (b'{"op": "u", "after": [1], "source": {"table": "t"}}', "'after' must be an object"),
        (b'{"op": "c", "after": {"id": 1}, "source": {}}', "which table"),
        (b'{"op": "c", "after": "{not json", "source": {"table": "t"}}', "Extended JSON"),
        (b'{"schema": [1], "payload": {"op": "c"}}', "schema block must be a JSON object"),
    ],
)
def test_bad_messages_raise_decode_errors(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason.replace("(", r"\(").replace("[", r"\[")):
        DebeziumJsonDecoder().decode(value, pos())


def test_bad_logical_value_names_the_column() -> None:
    bad = lines("misc/bad.jsonl")[5]
    with pytest.raises(DecodeError, match=r"column 'd'.*io\.debezium\.time\.Date"):
        DebeziumJsonDecoder().decode(bad, pos())


def test_the_decoder_keeps_working_after_errors() -> None:
    decoder = DebeziumJsonDecoder()
    results: list[str] = []
    for i, value in enumerate(lines("misc/bad.jsonl")):
        try:
            decoder.decode(value, pos(i))
            results.append("ok")
        except DecodeError:
            results.append("error")
    assert results == ["ok", "error", "error", "error", "error", "error", "ok"]


def test_a_column_named_payload_is_not_a_wrapper() -> None:
    event = change(
        DebeziumJsonDecoder().decode(
            b'{"op": "c", "after": {"id": 1, "payload": {"x": 1}}, "source": {"table": "t"}}', pos()
        )
    )
    assert event.after == {"id": 1, "payload": {"x": 1}}


# -- decode_payload (used by the Avro codec) --------------------------------------------------


def test_decode_payload_interprets_native_values() -> None:
    decoder = DebeziumJsonDecoder()
    payload = {
        "before": None,
        "after": {
            "id": 1,
            "price": Decimal("1.50"),
            "body": "__debezium_unavailable_value",
            "blob": b"__debezium_unavailable_value",
        },
        "source": {
            "connector": "postgresql",
            "db": "shop",
            "schema": "public",
            "table": "t",
            "snapshot": True,
            "lsn": 9,
        },
        "op": "c",
        "ts_ms": 5,
    }
    event = change(decoder.decode_payload(payload, pos(), key={"id": 1}))
    assert event.after == {"id": 1, "price": Decimal("1.50")}
    assert event.unavailable == ("body", "blob")  # text and raw-bytes (Avro) forms
    assert event.source.snapshot == "true"
    assert event.source.native == {"lsn": 9}
    assert event.key == {"id": 1}
    schema = TableSchema(name="t.Value", fingerprint="f", columns=())
    row = change(
        decoder.decode_payload(
            {"id": 2, "op": "x"}, pos(), topic="a.b.c", table_schema=schema, is_envelope=False
        )
    )
    assert row.after == {"id": 2, "op": "x"} and row.schema == schema
    marker = decoder.decode_payload({"status": "END", "id": "1", "event_count": 3}, pos())
    assert isinstance(marker, TransactionMarker) and marker.event_count == 3


def test_wrapper_in_any_field_order_and_layout() -> None:
    original = json.loads(lines("postgres/with_schema.jsonl")[0])
    expected = change(DebeziumJsonDecoder().decode(lines("postgres/with_schema.jsonl")[0], pos()))
    payload_first = json.dumps({"payload": original["payload"], "schema": original["schema"]})
    pretty = json.dumps(original, indent=2)
    for text in (payload_first, pretty, " " + json.dumps(original)):
        event = change(DebeziumJsonDecoder().decode(text.encode(), pos()))
        assert event.after == PRODUCT_AFTER == expected.after
        assert event.schema is not None and event.schema.name == "shop.public.products.Value"


def test_placeholder_text_in_the_schema_block_does_not_hide_values() -> None:
    original = json.loads(lines("postgres/with_schema.jsonl")[0])
    original["schema"]["fields"][1]["fields"][1]["default"] = "__debezium_unavailable_value"
    event = change(DebeziumJsonDecoder().decode(json.dumps(original).encode(), pos()))
    assert event.unavailable == ()
    assert event.after == PRODUCT_AFTER


def test_markers_under_unknown_schema_names_are_still_markers() -> None:
    schema = {
        "type": "struct",
        "name": "some.older.TransactionValue",
        "fields": [
            {"type": "string", "optional": False, "field": "status"},
            {"type": "string", "optional": False, "field": "id"},
            {"type": "int64", "optional": True, "field": "event_count"},
        ],
    }
    value = json.dumps(
        {"schema": schema, "payload": {"status": "END", "id": "9", "event_count": 1}}
    )
    marker = DebeziumJsonDecoder().decode(value.encode(), pos())
    assert isinstance(marker, TransactionMarker)
    assert (marker.status, marker.id, marker.event_count) == ("END", "9", 1)


def test_repeated_schema_fast_path_falls_back_on_other_layouts() -> None:
    first = lines("postgres/with_schema.jsonl")[0]
    original = json.loads(first)
    schema = json.dumps(original["schema"], separators=(",", ":"))
    payload = json.dumps(original["payload"], separators=(",", ":"))
    assert first.decode() == f'{{"schema":{schema},"payload":{payload}}}'
    decoder = DebeziumJsonDecoder()
    assert change(decoder.decode(first, pos())).after == PRODUCT_AFTER
    # the same schema bytes again: only the payload is parsed
    again = change(decoder.decode(first, pos(1)))
    assert again.after == PRODUCT_AFTER and again.schema is not None
    extra_key = f'{{"schema":{schema},"payload":{payload},"extra":1}}'.encode()
    assert change(decoder.decode(extra_key, pos(2))).after == PRODUCT_AFTER
    spaced = f'{{"schema":{schema},"payload": {payload} }}'.encode()
    assert change(decoder.decode(spaced, pos(3))).after == PRODUCT_AFTER
    tombstone = f'{{"schema":{schema},"payload":null}}'.encode()
    assert isinstance(decoder.decode(tombstone, pos(4)), Tombstone)
    broken = f'{{"schema":{schema},"payload":{payload[:-5]}}}'.encode()
    with pytest.raises(DecodeError, match="not valid JSON"):
        decoder.decode(broken, pos(5))
    toast = lines("postgres/with_schema.jsonl")[2]
    assert change(decoder.decode(toast, pos(6))).unavailable == ("photo", "tags", "attrs")


def test_unwrapped_table_fields_never_stay_in_meta() -> None:
    event = change(
        DebeziumJsonDecoder().decode(
            b'{"id": 1, "__op": "c", "__db": "a", "__source_db": "b", "__table": "t",'
            b' "__source_table": "t2", "__schema": "s"}',
            pos(),
            key=b'{"id": 1}',
        )
    )
    assert event.meta == {}
    assert event.table == TableId("b", "s", "t2")  # the source fields win
    assert event.key == {"id": 1}


# -- robustness: any JSON either decodes or raises DecodeError --------------------------------

_KEYS = [
    "op", "before", "after", "source", "ts_ms", "transaction", "status", "id", "ddl",
    "databaseName", "tableChanges", "__op", "__deleted", "__table", "__db", "__source_ts_ms",
    "updateDescription", "patch", "filter", "schema", "payload", "position", "event_count",
    "data_collections", "table", "db", "collection", "snapshot", "connector", "x",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from(["c", "u", "d", "r", "t", "BEGIN", "END", "__debezium_unavailable_value",
                     '{"a": 1}', "{bad", "AA==", "2024-01-15T10:30:00Z", ""]),
    st.text(max_size=5),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)
    ),
    max_leaves=20,
)
_LOGICAL = [
    None,
    *sorted(
        {v for v in vars(logical_names).values() if isinstance(v, str) and v.startswith("io.")}
        | {v for v in vars(logical_names).values() if isinstance(v, str) and v.startswith("org.")}
    ),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8),
    st.sampled_from([None, b'{"id": 1}', b'"k"', b"[1]", b'{"id": "{\\"$oid\\": \\"ab\\"}"}']),
    st.sampled_from([None, "a.b.c"]),
)
def test_any_json_message_decodes_or_raises_decode_error(
    message: dict[str, Any], key: bytes | None, topic: str | None
) -> None:
    value = json.dumps(message).encode()
    try:
        item = DebeziumJsonDecoder().decode(value, pos(), key=key, topic=topic)
    except DecodeError:
        # Oracle: a well-formed schemaless change envelope is never refused.
        assert not _is_plain_envelope(message, key), message
        return
    # Oracle for what does decode: the right kind, with values taken from the message.
    if isinstance(item, ChangeEvent):
        assert message, "an empty object is never a change"
        assert isinstance(item.op, Op)
        assert str(item.table)
        for image in (item.before, item.after):
            assert image is None or isinstance(image, dict)
        if _is_plain_envelope(message, key):
            assert item.op.value == message["op"]
            assert item.after == message["after"]  # schemaless: values as sent
            assert str(item.table) == message["source"]["table"]
        found = {"op", "before", "after", "source", "transaction"} & message.keys()
        if "op" not in message or not ({"before", "after", "source"} & message.keys()):
            assert len(found) < 2, "a broken envelope was read as a row"
    else:
        assert not _is_plain_envelope(message, key)


def _is_plain_envelope(message: dict[str, Any], key: bytes | None) -> bool:
    """A message any decoder must accept: a create/update/read of a plain row."""
    after = message.get("after")
    source = message.get("source")
    return (
        message.get("op") in ("c", "u", "r")
        and type(after) is dict
        and all(
            not k.startswith("__") and (v is None or type(v) in (int, bool))
            for k, v in after.items()
        )
        and type(source) is dict
        and type(source.get("table")) is str
        and bool(source["table"])
        and source.keys() <= {"table"}
        and message.keys() <= {"op", "after", "source", "before"}
        and message.get("before") is None
        and key is None
    )


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["c", "u", "r"]),
    st.dictionaries(st.text(min_size=1, max_size=5).filter(lambda k: not k.startswith("__")),
                    st.one_of(st.none(), st.integers(-(2**70), 2**70), st.booleans()),
                    max_size=6),
    st.text(min_size=1, max_size=6),
)  # fmt: skip
def test_plain_envelopes_always_decode_as_sent(op: str, after: dict[str, Any], table: str) -> None:
    message = {"op": op, "after": after, "source": {"table": table}}
    assert _is_plain_envelope(message, None)
    item = DebeziumJsonDecoder().decode(json.dumps(message).encode(), pos())
    assert isinstance(item, ChangeEvent)
    assert item.op.value == op
    assert item.after == after
    assert str(item.table) == table


def test_logical_names_are_fuzzed() -> None:
    assert logical_names.DBZ_NANO_TIMESTAMP in _LOGICAL
    assert logical_names.CONNECT_DECIMAL in _LOGICAL
    assert len(_LOGICAL) > 14


_FIELD = st.fixed_dictionaries(
    {
        "field": st.sampled_from(["a", "b"]),
        "type": st.sampled_from(["int32", "int64", "string", "bytes", "struct", "array", "map"]),
    },
    optional={
        "name": st.sampled_from(_LOGICAL),
        "parameters": st.sampled_from([{"scale": "2"}, {"scale": "-5"}, {"scale": "x"}, {}]),
        "items": st.fixed_dictionaries(
            {"type": st.just("int64")}, optional={"name": st.sampled_from(_LOGICAL)}
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_FIELD, max_size=4),
    st.dictionaries(st.sampled_from(["a", "b"]), _VALUES, max_size=2),
    st.booleans(),
)
def test_any_schema_and_row_decodes_or_raises_decode_error(
    fields: list[dict[str, Any]], row: dict[str, Any], envelope: bool
) -> None:
    if envelope:
        schema = {
            "type": "struct",
            "fields": [
                {"type": "struct", "fields": fields, "field": "after"},
                {"type": "string", "field": "op"},
            ],
        }
        payload: dict[str, Any] = {"op": "c", "after": row, "source": {"table": "t"}}
    else:
        schema = {"type": "struct", "fields": fields}
        payload = dict(row, __table="t")
    value = json.dumps({"schema": schema, "payload": payload}).encode()
    try:
        item = DebeziumJsonDecoder().decode(value, pos())
    except DecodeError:
        return
    # Oracle: what decodes has every schema-typed plain value of the type its schema says.
    assert isinstance(item, ChangeEvent)
    image = item.after if item.after is not None else item.before
    assert image is not None
    by_name = {f["field"]: f for f in fields}  # the last definition of a name wins
    for name, column in by_name.items():
        if name not in image or image[name] is None or column.get("name") is not None:
            continue
        got = image[name]
        expected_type = {"int32": int, "int64": int, "string": str, "bytes": bytes,
                         "struct": dict, "array": list, "map": dict}[column["type"]]  # fmt: skip
        assert type(got) is expected_type, (name, column, got)
        if column["type"] == "int32":
            assert -(2**31) <= got < 2**31


def test_table_names_must_be_text() -> None:
    decoder = DebeziumJsonDecoder()
    with pytest.raises(DecodeError, match="table name must be text, got int"):
        decoder.decode(b'{"id": 1, "__table": 7}', pos())
    with pytest.raises(DecodeError, match="db name must be text, got list"):
        decoder.decode(b'{"op": "c", "after": {}, "source": {"table": "t", "db": [1]}}', pos())
