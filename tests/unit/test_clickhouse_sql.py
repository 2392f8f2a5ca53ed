"""ClickHouse sink without a server: DDL, type mapping by server version, checked conversions."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal
from pathlib import Path

import pytest

from cdcflow.errors import ConfigError
from cdcflow.io.clickhouse import (
    ClickHouseSinkConfig,
    ClickHouseWriter,
    create_table_sql,
    offsets_ddl,
    parse_version,
    positions_sql,
    quote,
    view_sql,
)
from cdcflow.io.clickhouse.types import (
    ch_type,
    ch_type_for_value,
    column_converter,
    converter,
    nullable,
)
from cdcflow.pipelines.config import parse_pipeline
from cdcflow.schemas.model import Column, TableId

DECIMAL = "org.apache.kafka.connect.data.Decimal"


def test_quote_escapes_backticks() -> None:
    assert quote("a`b") == "`a\\`b`"


def test_create_table_is_a_replacing_merge_tree_on_the_version() -> None:
    sql = create_table_sql("`db`.`t`", [("id", "Int32"), ("v", "Nullable(String)")], ["id"])
    assert sql == (
        "CREATE TABLE IF NOT EXISTS `db`.`t` (`id` Int32, `v` Nullable(String), "
        "`_version` UInt64, `_deleted` UInt8) ENGINE = ReplacingMergeTree(`_version`) "
        "ORDER BY (`id`)"
    )


def test_view_reads_final_without_deleted_rows() -> None:
    assert view_sql("`db`.`t_current`", "`db`.`t`", ["id", "v"]) == (
        "CREATE VIEW IF NOT EXISTS `db`.`t_current` AS SELECT `id`, `v`, `_version` "
        "FROM `db`.`t` FINAL WHERE `_deleted` = 0"
    )


def test_offsets_table_keeps_exact_offsets_read_numerically() -> None:
    ddl = offsets_ddl("db")
    assert "offset String" in ddl  # 129-digit offsets fit no ClickHouse number type
    assert "ENGINE = ReplacingMergeTree ORDER BY (pipeline, sink, stream, partition)" in ddl
    # every distinct stored offset is read, the highest chosen as a number in Python
    assert "groupUniqArray(toString(offset))" in positions_sql("db")


def test_version_parsing() -> None:
    assert parse_version("18.16.1") == (18, 16, 1)
    assert parse_version("24.3.2.23") == (24, 3, 2, 23)
    assert parse_version("21.8.testing") == (21, 8)


@pytest.mark.parametrize(
    ("column", "old", "new"),
    [
        (Column(name="a", type="int32"), "Int32", "Int32"),
        (Column(name="a", type="int64"), "Int64", "Int64"),
        (Column(name="a", type="boolean"), "UInt8", "UInt8"),
        (Column(name="a", type="float64"), "Float64", "Float64"),
        (Column(name="a", type="string"), "String", "String"),
        (
            Column(
                name="a",
                type="bytes",
                logical=DECIMAL,
                parameters={"scale": "2", "connect.decimal.precision": "12"},
            ),
            "Decimal(12, 2)",
            "Decimal(12, 2)",
        ),
        (
            Column(
                name="a",
                type="bytes",
                logical=DECIMAL,
                parameters={"scale": "2", "connect.decimal.precision": "60"},
            ),
            "String",
            "String",
        ),
        (Column(name="a", type="int32", logical="io.debezium.time.Date"), "String", "Date32"),
        (
            Column(name="a", type="int64", logical="io.debezium.time.MicroTimestamp"),
            "DateTime('UTC')",
            "DateTime64(6, 'UTC')",
        ),
        (
            Column(name="a", type="int64", logical="io.debezium.time.Timestamp"),
            "DateTime('UTC')",
            "DateTime64(3, 'UTC')",
        ),
        (
            Column(name="a", type="string", logical="io.debezium.time.ZonedTimestamp"),
            "DateTime('UTC')",
            "DateTime64(6, 'UTC')",
        ),
        (Column(name="a", type="int64", logical="io.debezium.time.MicroTime"), "String", "String"),
        (Column(name="a", type="string", logical="io.debezium.data.Json"), "String", "String"),
        (Column(name="a", type="struct"), "String", "String"),
    ],
)
def test_type_mapping_depends_on_the_server_version(column: Column, old: str, new: str) -> None:
    assert ch_type(column, (18, 16, 1)) == old
    assert ch_type(column, (24, 3)) == new


def test_type_mapping_from_values() -> None:
    old, new = (18, 16, 1), (21, 9)
    assert ch_type_for_value(True, old) == "UInt8"
    assert ch_type_for_value(3, old) == "Int64"
    assert ch_type_for_value(dt.datetime(2024, 1, 1), old) == "DateTime('UTC')"
    assert ch_type_for_value(dt.datetime(2024, 1, 1), new) == "DateTime64(6, 'UTC')"
    assert ch_type_for_value(dt.date(2024, 1, 1), old) == "String"
    assert ch_type_for_value(dt.date(2024, 1, 1), new) == "Date32"
    assert ch_type_for_value({"a": 1}, old) == "String"
    assert nullable("Int32") == "Nullable(Int32)"
    assert nullable("Nullable(Int32)") == "Nullable(Int32)"


def test_integer_conversion_checks_the_range() -> None:
    assert converter("Int8")(127) == 127
    assert converter("UInt8")(True) == 1
    with pytest.raises(ValueError, match="out of range for Int8"):
        converter("Int8")(300)
    with pytest.raises(TypeError, match="expected an integer"):
        converter("Int32")("12")
    assert converter("Nullable(Int32)")(None) is None
    with pytest.raises(ValueError, match="null value"):
        converter("Int32")(None)


def test_decimal_conversion_checks_precision_and_scale() -> None:
    convert = converter("Decimal(5, 2)")
    assert convert(Decimal("123.4")) == Decimal("123.40")
    assert convert(7) == Decimal("7.00")
    with pytest.raises(ValueError, match="out of range"):
        convert(Decimal("1000.00"))
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        convert(Decimal("1.234"))


def test_date_and_datetime_conversion_check_the_range() -> None:
    assert converter("Date")(dt.date(2024, 1, 1)) == dt.date(2024, 1, 1)
    with pytest.raises(ValueError, match="out of range for Date "):
        converter("Date")(dt.date(1969, 12, 31))
    assert converter("Date32")(dt.date(1954, 9, 2)) == dt.date(1954, 9, 2)
    assert converter("Nullable(String)")(dt.date(1954, 9, 2)) == "1954-09-02"
    naive = converter("DateTime('UTC')")(dt.datetime(2024, 1, 1, 12))
    assert naive == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    zoned = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert converter("DateTime64(6, 'UTC')")(zoned) == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="out of range"):
        converter("DateTime('UTC')")(dt.datetime(1950, 1, 1))
    assert converter("DateTime64(6, 'UTC')")(dt.datetime(1950, 1, 1)).year == 1950


def test_string_conversion_uses_canonical_text() -> None:
    convert = converter("Nullable(String)")
    assert convert({"b": [1, 2]}) == '{"b":[1,2]}'
    assert convert(Decimal("1.50")) == "1.50"
    assert convert(dt.time(1, 2, 3)) == "01:02:03"
    assert convert(b"\x00\x01") == b"\x00\x01"


def test_writer_naming_secrets_and_pickling() -> None:
    writer = ClickHouseWriter(
        name="ch",
        dsn="clickhouse://u:hunter2@ch.example:9440/wh",
        pipeline="p",
        table_map={"shop.public.orders": "orders_v2", "shop.public.users": "crm.people"},
    )
    assert writer.database == "wh"
    assert writer.target == "ch.example:9440/wh"
    assert "hunter2" not in repr(writer)
    assert writer.target_table(TableId("shop", "public", "items")) == ("wh", "items")
    assert writer.target_table(TableId("shop", "public", "orders")) == ("wh", "orders_v2")
    assert writer.target_table(TableId("shop", "public", "users")) == ("crm", "people")
    assert pickle.loads(pickle.dumps(writer))._client is None


PIPELINE = """
pipeline: p
source: {type: file, path: "*.jsonl"}
sinks:
  - name: olap
    type: clickhouse
    dsn: clickhouse://default:hunter2@localhost:9000/wh
    view_suffix: _live
    truncate: ignore
"""


def test_config_builds_a_writer(tmp_path: Path) -> None:
    config = parse_pipeline(PIPELINE, tmp_path / "p.yaml")
    sink = config.sinks[0]
    assert isinstance(sink, ClickHouseSinkConfig)
    assert "hunter2" not in repr(sink)
    writer = sink.build(config.context)
    assert (writer.database, writer.view_suffix, writer.truncate) == ("wh", "_live", "ignore")


def test_config_rejects_a_non_clickhouse_dsn(tmp_path: Path) -> None:
    text = PIPELINE.replace("clickhouse://default:hunter2@", "http://default:hunter2@")
    with pytest.raises(ConfigError, match=r"sinks\[0\].*dsn must be a clickhouse://") as info:
        parse_pipeline(text, tmp_path / "p.yaml")
    assert "hunter2" not in str(info.value)


def test_column_converter_passes_good_values_and_raises_on_bad_ones() -> None:
    ints = column_converter("Nullable(Int16)")
    assert ints([1, None, True, Decimal("7")]) == [1, None, 1, 7]
    with pytest.raises(ValueError, match="out of range for Int16"):
        ints([1, 40_000])
    strings = column_converter("String")
    assert strings(["a", {"k": 1}, Decimal("1.50")]) == ["a", '{"k":1}', "1.50"]
    with pytest.raises(ValueError, match="null value"):
        strings(["a", None])
    assert column_converter("Float64")([1.5, 2]) == [1.5, 2.0]
    assert column_converter("Decimal(4, 1)")([Decimal("1.5")]) == [Decimal("1.5")]
