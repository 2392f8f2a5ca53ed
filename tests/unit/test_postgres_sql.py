"""PostgreSQL sink without a server: SQL generation, type mapping, value adaptation, config."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal
from pathlib import Path

import pytest

from cdcflow.errors import ConfigError
from cdcflow.io.postgres import (
    PostgresSinkConfig,
    PostgresWriter,
    create_table_sql,
    delete_sql,
    hypertable_sql,
    migrate_offsets_sql,
    offsets_ddl,
    quote,
    upsert_sql,
)
from cdcflow.io.postgres.types import copy_value, pg_type, pg_type_for_value
from cdcflow.pipelines.config import parse_pipeline
from cdcflow.schemas.model import Column, TableId


def test_quote_doubles_embedded_quotes() -> None:
    assert quote("order") == '"order"'
    assert quote('we"ird') == '"we""ird"'


def test_upsert_sql_updates_only_non_key_columns() -> None:
    sql = upsert_sql('"s"."t"', "stage", ["id", "a", "b"], ["id"])
    assert sql == (
        'INSERT INTO "s"."t" ("id", "a", "b") SELECT "id", "a", "b" FROM stage '
        'ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a", "b" = EXCLUDED."b"'
    )


def test_upsert_sql_with_only_key_columns_does_nothing_on_conflict() -> None:
    assert upsert_sql('"t"', "s", ["k1", "k2"], ["k1", "k2"]).endswith(
        'ON CONFLICT ("k1", "k2") DO NOTHING'
    )


def test_delete_sql_matches_every_key_column() -> None:
    assert delete_sql('"t"', "s", ["a", "b"]) == (
        'DELETE FROM "t" AS t USING s AS s WHERE t."a" = s."a" AND t."b" = s."b"'
    )


def test_create_table_sql_with_and_without_key() -> None:
    assert create_table_sql('"t"', [("id", "integer"), ("v", "text")], ["id"]) == (
        'CREATE TABLE IF NOT EXISTS "t" ("id" integer, "v" text, PRIMARY KEY ("id"))'
    )
    assert "PRIMARY KEY" not in create_table_sql('"t"', [("v", "text")], None)


def test_offsets_table_is_keyed_by_pipeline_sink_stream_partition() -> None:
    ddl = offsets_ddl("wh")
    assert '"wh"."cdcflow_offsets"' in ddl
    assert "PRIMARY KEY (pipeline, sink, stream, partition)" in ddl
    assert '"offset" numeric(1000,0) NOT NULL' in ddl  # exact offsets of any size
    assert migrate_offsets_sql('"wh"."cdcflow_offsets"') == (
        'ALTER TABLE "wh"."cdcflow_offsets" ALTER COLUMN "offset" TYPE numeric(1000,0)'
    )


def test_hypertable_call_names_the_time_column_parameter() -> None:
    assert "create_hypertable(%s::regclass, %s::name, if_not_exists => TRUE)" in hypertable_sql()


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (Column(name="a", type="int16"), "smallint"),
        (Column(name="a", type="int32"), "integer"),
        (Column(name="a", type="int64"), "bigint"),
        (Column(name="a", type="float32"), "real"),
        (Column(name="a", type="float64"), "double precision"),
        (Column(name="a", type="boolean"), "boolean"),
        (Column(name="a", type="string"), "text"),
        (Column(name="a", type="bytes"), "bytea"),
        (
            Column(
                name="a",
                type="bytes",
                logical="org.apache.kafka.connect.data.Decimal",
                parameters={"scale": "2", "connect.decimal.precision": "10"},
            ),
            "numeric(10,2)",
        ),
        (
            Column(
                name="a",
                type="bytes",
                logical="org.apache.kafka.connect.data.Decimal",
                parameters={"scale": "3"},
            ),
            "numeric",
        ),
        (
            Column(name="a", type="struct", logical="io.debezium.data.VariableScaleDecimal"),
            "numeric",
        ),
        (Column(name="a", type="int32", logical="io.debezium.time.Date"), "date"),
        (Column(name="a", type="int64", logical="io.debezium.time.MicroTime"), "time"),
        (Column(name="a", type="string", logical="io.debezium.time.ZonedTime"), "timetz"),
        (Column(name="a", type="int64", logical="io.debezium.time.MicroTimestamp"), "timestamp"),
        (Column(name="a", type="int64", logical="io.debezium.time.NanoTimestamp"), "timestamp"),
        (Column(name="a", type="int64", logical="io.debezium.time.Timestamp"), "timestamp"),
        (Column(name="a", type="string", logical="io.debezium.time.ZonedTimestamp"), "timestamptz"),
        (Column(name="a", type="string", logical="io.debezium.data.Json"), "jsonb"),
        (Column(name="a", type="string", logical="io.debezium.data.Uuid"), "uuid"),
        (Column(name="a", type="string", logical="io.debezium.data.Enum"), "text"),
        (Column(name="a", type="struct"), "jsonb"),
        (Column(name="a", type="array"), "jsonb"),
        (Column(name="a", type="mystery"), "text"),
    ],
)
def test_type_mapping_from_schema(column: Column, expected: str) -> None:
    assert pg_type(column) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "boolean"),
        (5, "bigint"),
        (2**70, "numeric"),
        (1.5, "double precision"),
        (Decimal("1.50"), "numeric"),
        (dt.datetime(2024, 1, 1), "timestamp"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "timestamptz"),
        (dt.date(2024, 1, 1), "date"),
        (dt.time(1, 2), "time"),
        (b"x", "bytea"),
        ({"a": 1}, "jsonb"),
        ([1], "jsonb"),
        ("x", "text"),
        (None, "text"),
    ],
)
def test_type_mapping_from_values(value: object, expected: str) -> None:
    assert pg_type_for_value(value) == expected


def test_copy_values() -> None:
    assert copy_value({"b": 1, "a": [1, 2]}) == '{"b":1,"a":[1,2]}'
    assert copy_value(2**70) == str(2**70)
    assert copy_value(7) == 7
    assert copy_value(Decimal("1.50")) == Decimal("1.50")
    assert copy_value(bytearray(b"ab")) == b"ab"
    with pytest.raises(TypeError, match="cannot write a object value"):
        copy_value(object())


def test_target_table_naming_and_mapping() -> None:
    writer = PostgresWriter(
        name="wh",
        dsn="postgresql://u:secret@h/db",
        pipeline="p",
        schema="mirror",
        table_map={"shop.public.orders": "orders_v2", "shop.public.users": "crm.people"},
    )
    assert writer.target_table(TableId("shop", "public", "items")) == ("mirror", "items")
    assert writer.target_table(TableId("shop", "public", "orders")) == ("mirror", "orders_v2")
    assert writer.target_table(TableId("shop", "public", "users")) == ("crm", "people")


def test_writer_never_shows_the_dsn_secret_and_pickles_without_a_connection() -> None:
    writer = PostgresWriter(
        name="wh", dsn="postgresql://u:hunter2@db.example:6543/shop", pipeline="p"
    )
    assert "hunter2" not in repr(writer)
    assert writer.target == "db.example:6543/shop"
    clone = pickle.loads(pickle.dumps(writer))
    assert clone.target == writer.target and clone._conn is None


def test_writer_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        PostgresWriter(name="wh", dsn="x", pipeline="p", mode="merge")  # type: ignore[arg-type]


PIPELINE = """
pipeline: p
source: {type: file, path: "*.jsonl"}
sinks:
  - name: wh
    type: postgres
    dsn: postgresql://u:hunter2@localhost/db
    schema: mirror
    mode: append
    truncate: ignore
    table_map: {"a.b.c": d}
    retry: {max_attempts: 3, initial_backoff_s: 0.1}
"""


def test_config_builds_a_writer_with_every_option(tmp_path: Path) -> None:
    config = parse_pipeline(PIPELINE, tmp_path / "p.yaml")
    sink = config.sinks[0]
    assert isinstance(sink, PostgresSinkConfig)
    assert "hunter2" not in repr(sink)
    writer = sink.build(config.context)
    assert isinstance(writer, PostgresWriter)
    assert (writer.schema, writer.mode, writer.truncate) == ("mirror", "append", "ignore")
    assert writer.retry.max_attempts == 3
    assert writer.table_map == {"a.b.c": "d"}


def test_config_rejects_a_bad_mode_with_its_location(tmp_path: Path) -> None:
    text = PIPELINE.replace("mode: append", "mode: merge")
    with pytest.raises(ConfigError, match=r"p.yaml:\d+: sinks\[0\].mode"):
        parse_pipeline(text, tmp_path / "p.yaml")
