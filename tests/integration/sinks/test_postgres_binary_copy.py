"""Binary ``COPY``: every type the writer binds in binary round-trips exactly (real server)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import pytest

from cdcflow.io.postgres import PostgresWriter
from cdcflow.schemas.model import ChangeEvent, TableId
from tests.integration.sinks.events import FAST_RETRY, batch, event

pytestmark = pytest.mark.integration

UTC = dt.UTC
TABLE = TableId("shop", "public", "typed")
COLUMNS = {
    "id": "integer PRIMARY KEY",
    "i2": "smallint",
    "i8": "bigint",
    "money": "numeric(12,3)",
    "free": "numeric",
    "f8": "double precision",
    "flag": "boolean",
    "label": "text",
    "code": "character varying(8)",
    "fixed": "character(3)",
    "blob": "bytea",
    "day": "date",
    "at": "timestamp without time zone",
    "at_ms": "timestamp(3) without time zone",
    "at_tz": "timestamp with time zone",
    "clock": "time without time zone",
    "note": "text",
}
FULL: dict[str, Any] = {
    "i2": -32768,
    "i8": 2**63 - 1,
    "money": Decimal("-12345.678"),
    "free": Decimal("0.000000000000000000001"),
    "f8": 1.0000000000000002,
    "flag": False,
    "label": "é ünïcode \\ tab\t newline\n quote'\"",
    "code": "abc",
    "fixed": "xy ",
    "blob": b"\x00\x01\\\xff",
    "day": dt.date(1, 1, 1),
    "at": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    "at_ms": dt.datetime(2024, 1, 15, 10, 30, 0, 123000),
    "at_tz": dt.datetime(2024, 1, 15, 10, 30, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    "clock": dt.time(23, 59, 59, 999999),
    "note": "stored",
}


def change(op: str, offset: int, ident: int, row: dict[str, Any] | None, **kw: Any) -> ChangeEvent:
    e = event(op, offset, ident, table=TABLE, schema=None, **kw)
    if op == "d":
        return msgspec.structs.replace(e, before=row)
    return msgspec.structs.replace(e, after=row)


def test_binary_copy_round_trips_every_mapped_type(pg_database: str) -> None:
    with psycopg.connect(pg_database) as admin:
        admin.execute(
            "CREATE TABLE typed (" + ", ".join(f"{c} {t}" for c, t in COLUMNS.items()) + ")"
        )
    nulls = {c: None for c in FULL}
    w = PostgresWriter(name="wh", dsn=pg_database, pipeline="p1", retry=FAST_RETRY)
    w.open()
    try:
        first = [
            change("c", 0, 1, {"id": 1, **FULL}),
            change("c", 1, 2, {"id": 2, **nulls}),
            change("c", 2, 3, {"id": 3, **FULL}),
            change("c", 3, 4, {"id": 4, **FULL}),
        ]
        assert w.write(batch(first)).rejected == []
        unsent = {k: v for k, v in FULL.items() if k != "note"}
        second = [
            # note is TOASTed and not sent: the stored value stays
            change("u", 4, 1, {"id": 1, **unsent, "i2": 7}, unavailable=["note"]),
            change("d", 5, 3, {"id": 3}),
            # a value text COPY rejects (out of range for integer) is a dead letter, not wrapped
            change("u", 6, 4, {"id": 4, **FULL, "i2": 2**40}),
        ]
        dead = w.write(batch(second)).rejected
    finally:
        w.close()
    assert [d.position.offset for d in dead if d.position] == [6]
    names = ", ".join(COLUMNS)
    with psycopg.connect(pg_database) as conn:
        got = {
            r[0]: dict(zip(COLUMNS, r, strict=True))
            for r in conn.execute(f"SELECT {names} FROM typed ORDER BY id")
        }
    assert sorted(got) == [1, 2, 4]
    assert got[1] == {"id": 1, **FULL, "i2": 7}
    assert got[2] == {"id": 2, **nulls}
    assert got[4] == {"id": 4, **FULL}
    assert got[1]["money"].as_tuple().exponent == -3  # the column's scale, exactly
