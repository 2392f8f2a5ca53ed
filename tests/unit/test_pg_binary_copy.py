"""Which rows the PostgreSQL writer sends with binary ``COPY`` (:func:`binary_copy_types`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from cdcflow.io.postgres.types import binary_copy_types

UTC = dt.UTC
NAIVE = dt.datetime(2024, 1, 15, 10, 30, 0, 123456)
AWARE = dt.datetime(2024, 1, 15, 10, 30, tzinfo=UTC)

TYPES = [
    "smallint",
    "integer",
    "bigint",
    "numeric(10,2)",
    "numeric",
    "double precision",
    "boolean",
    "text",
    "character varying(20)",
    "character(3)",
    "bytea",
    "date",
    "timestamp without time zone",
    "timestamp(3) without time zone",
    "timestamp with time zone",
    "time without time zone",
]
ROW = [
    1,
    2,
    2**62,
    Decimal("10.50"),
    7,
    1.5,
    True,
    "a",
    "b",
    "c",
    b"\x00",
    dt.date(2024, 1, 1),
    NAIVE,
    NAIVE,
    AWARE,
    dt.time(1, 2, 3),
]


def test_every_mapped_type_goes_binary_with_nulls() -> None:
    names = binary_copy_types(TYPES, [ROW, [None] * len(ROW)])
    assert names == [
        "int2",
        "int4",
        "int8",
        "numeric",
        "numeric",
        "float8",
        "bool",
        "text",
        "text",
        "text",
        "bytea",
        "date",
        "timestamp",
        "timestamp",
        "timestamptz",
        "time",
    ]


@pytest.mark.parametrize(
    ("sql_type", "value"),
    [
        ("integer", 2**31),  # the binary dumper would wrap it
        ("smallint", -(2**15) - 1),
        ("bigint", 2**63),
        ("integer", True),  # text COPY rejects it (a dead letter); binary would write 1
        ("integer", "5"),
        ("numeric", 1.5),
        ("numeric", "123456789012345678901234567890"),  # a huge int, as copy_value sends it
        ("double precision", 1),
        ("text", 5),
        ("bytea", "x"),
        ("date", NAIVE),
        ("timestamp without time zone", AWARE),
        ("timestamp with time zone", NAIVE),
        ("time without time zone", dt.time(1, tzinfo=UTC)),
        ("jsonb", '{"a": 1}'),
        ("uuid", "00000000-0000-0000-0000-000000000001"),
        ("real", 1.5),
        ("interval", "1 day"),
        ("time with time zone", dt.time(1, tzinfo=UTC)),
        ("integer[]", [1]),
    ],
)
def test_values_binary_cannot_bind_exactly_go_as_text(sql_type: str, value: Any) -> None:
    assert binary_copy_types(["integer", sql_type], [[1, None], [2, value]]) is None


def test_in_range_ints_and_all_null_columns_go_binary() -> None:
    rows = [[-(2**15), None], [2**15 - 1, None]]
    assert binary_copy_types(["smallint", "integer"], rows) == [
        "int2",
        "int4",
    ]
