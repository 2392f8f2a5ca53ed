"""The issue-12 hot-path workload: a seeded Debezium JSON changelog and its expected table.

``shop.public.orders`` rows ``(id, customer, email, qty, amount, created_at)``: ``amount`` is a
Connect Decimal (base64 of the big-endian two's-complement unscaled value, scale 2) and
``created_at`` an ``io.debezium.time.MicroTimestamp``. Events are 60 % creates, 35 % updates and
5 % deletes over ``keys`` ids (an update or delete of an absent id becomes a create, a create of a
live id an update, so the changelog is consistent). With ``tables`` > 1 the ids are split over
that many tables ``orders_00``, ``orders_01``, ... (id ``% tables`` picks the table), one topic
each (``shop.public.orders_00``, ...); with one table the names stay ``orders`` and
``shop.public.orders``. Each id goes to partition ``(id // tables) % partitions`` of its table's
topic (``id % partitions`` for one table), so per-key order holds and every partition is used.
With ``schema_block`` every key and value carries the JSON converter's
``schema``/``payload`` wrapper; without, the payloads are the same bytes minus the wrapper (the
decimal stays base64 and the timestamp an integer, as Debezium sends them schemaless).

:func:`expected_state` is what a sink must end with once the ``email`` column is hashed with
cdcflow's ``hash-sha256`` strategy (hex SHA-256 of ``salt || 0x00 || utf8(email)``, see
``cdcflow/transforms/redact/strategies.py``), in the Python types psycopg reads back from the
tables :func:`table_ddl` creates.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

TOPIC = "shop.public.orders"
SCALE = 2
EPOCH = dt.datetime(1970, 1, 1)

#: (customer, email, qty, amount in cents, created_at in µs since the epoch)
State = tuple[str, str, int, int, int]

_ROW_FIELDS: list[dict[str, Any]] = [
    {"type": "int64", "optional": False, "field": "id"},
    {"type": "string", "optional": True, "field": "customer"},
    {"type": "string", "optional": True, "field": "email"},
    {"type": "int32", "optional": True, "field": "qty"},
    {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": str(SCALE), "connect.decimal.precision": "12"},
        "field": "amount",
    },
    {
        "type": "int64",
        "optional": True,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
        "field": "created_at",
    },
]
_SOURCE_FIELDS: list[dict[str, Any]] = [
    {"type": "string", "optional": False, "field": "version"},
    {"type": "string", "optional": False, "field": "connector"},
    {"type": "string", "optional": False, "field": "name"},
    {"type": "int64", "optional": False, "field": "ts_ms"},
    {"type": "string", "optional": True, "field": "snapshot"},
    {"type": "string", "optional": False, "field": "db"},
    {"type": "string", "optional": False, "field": "schema"},
    {"type": "string", "optional": False, "field": "table"},
    {"type": "int64", "optional": True, "field": "txId"},
    {"type": "int64", "optional": True, "field": "lsn"},
]
KEY_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "name": f"{TOPIC}.Key",
    "optional": False,
    "fields": [{"type": "int64", "optional": False, "field": "id"}],
}


def value_schema(topic: str = TOPIC) -> dict[str, Any]:
    """The JSON converter's schema block of an ``orders`` envelope on ``topic``."""
    row = {"type": "struct", "optional": True, "name": f"{topic}.Value", "fields": _ROW_FIELDS}
    return {
        "type": "struct",
        "name": f"{topic}.Envelope",
        "optional": False,
        "version": 1,
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {
                "type": "struct",
                "name": "io.debezium.connector.postgresql.Source",
                "optional": False,
                "fields": _SOURCE_FIELDS,
                "field": "source",
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


def decimal_b64(cents: int) -> str:
    """A Connect Decimal's wire form: base64 of the minimal big-endian signed unscaled value."""
    length = max(1, (cents.bit_length() + 8) // 8)
    return base64.b64encode(cents.to_bytes(length, "big", signed=True)).decode()


def sha256_hex(salt: str, text: str) -> str:
    """cdcflow's ``hash-sha256``: hex SHA-256 of ``utf8(salt) || 0x00 || utf8(text)``."""
    return hashlib.sha256(
        salt.encode() + b"\x00" + text.encode("utf-8", "surrogatepass")
    ).hexdigest()


@dataclass
class Workload:
    """Messages per partition and the live rows after the last event."""

    tables: int = 1
    #: ``(table index, partition, key bytes, value bytes)`` in production order.
    messages: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    #: The live rows by id (an id belongs to table ``id % tables``).
    live: dict[int, State] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def per_partition(self, partitions: int) -> dict[tuple[str, int], int]:
        """How many messages each ``(topic, partition)`` holds (every partition listed)."""
        names = topics(self.tables)
        sizes = {(topic, p): 0 for topic in names for p in range(partitions)}
        for table, partition, _, _ in self.messages:
            sizes[(names[table], partition)] += 1
        return sizes


def table_names(tables: int) -> list[str]:
    """The target tables: ``orders`` for one, else ``orders_00``, ``orders_01``, ..."""
    if tables == 1:
        return ["orders"]
    return [f"orders_{i:02d}" for i in range(tables)]


def topics(tables: int) -> list[str]:
    """The topics, one per table: ``shop.public.<table>``."""
    return [f"shop.public.{name}" for name in table_names(tables)]


def generate(
    events: int, keys: int, partitions: int, schema_block: bool, seed: int, tables: int = 1
) -> Workload:
    """The seeded changelog (see the module docstring)."""
    rng = random.Random(seed)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    names = table_names(tables)
    schemas = [value_schema(topic) for topic in topics(tables)]
    key_schemas = [{**KEY_SCHEMA, "name": f"{topic}.Key"} for topic in topics(tables)]
    work = Workload(tables=tables, counts={"c": 0, "u": 0, "d": 0})
    live = work.live
    base_ms = 1_700_000_000_000
    for index in range(events):
        ident = rng.randrange(1, keys + 1)
        table = ident % tables
        draw = rng.random()
        op = "c" if draw < 0.60 else ("u" if draw < 0.95 else "d")
        if op in ("u", "d") and ident not in live:
            op = "c"
        elif op == "c" and ident in live:
            op = "u"
        work.counts[op] += 1
        before = _row(ident, live[ident]) if ident in live else None
        ts = base_ms + index
        if op == "d":
            after = None
            del live[ident]
        else:
            state: State = (
                f"customer-{ident}-{index}",
                f"user{ident}.{rng.randrange(100)}@example.com",
                rng.randrange(0, 1000),
                rng.randrange(-(10**6), 10**9),
                (base_ms - 86_400_000 + index) * 1000 + rng.randrange(1000),
            )
            live[ident] = state
            after = _row(ident, state)
        payload = {
            "before": before,
            "after": after,
            "source": {
                "version": "2.7.3.Final",
                "connector": "postgresql",
                "name": "shop",
                "ts_ms": ts,
                "snapshot": "false",
                "db": "shop",
                "schema": "public",
                "table": names[table],
                "txId": 1000 + index,
                "lsn": 30_000_000 + 64 * index,
            },
            "op": op,
            "ts_ms": ts + 5,
        }
        if schema_block:
            key = dumps({"schema": key_schemas[table], "payload": {"id": ident}})
            value = dumps({"schema": schemas[table], "payload": payload})
        else:
            key = dumps({"id": ident})
            value = dumps(payload)
        partition = (ident // tables) % partitions
        work.messages.append((table, partition, key.encode(), value.encode()))
    return work


def _row(ident: int, state: State) -> dict[str, Any]:
    customer, email, qty, cents, micros = state
    return {
        "id": ident,
        "customer": customer,
        "email": email,
        "qty": qty,
        "amount": decimal_b64(cents),
        "created_at": micros,
    }


def table_ddl(table: str, schema_block: bool) -> str:
    """The target table, the same for both systems.

    With the schema block it is what cdcflow would create from the schema (``numeric(12,2)``,
    ``timestamp``); schemaless, what it would create from the values (the decimal's base64 text,
    the timestamp's integer).
    """
    qty, amount, created = (
        ("integer", "numeric(12,2)", "timestamp") if schema_block else ("bigint", "text", "bigint")
    )
    return (
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, customer text, email text, "
        f"qty {qty}, amount {amount}, created_at {created})"
    )


def expected_state(
    work: Workload, salt: str, schema_block: bool
) -> dict[str, dict[int, tuple[Any, ...]]]:
    """``{table: {id: (customer, hashed email, qty, amount, created_at)}}`` as psycopg reads it.

    Every table is listed, an empty one too.
    """
    names = table_names(work.tables)
    expected: dict[str, dict[int, tuple[Any, ...]]] = {name: {} for name in names}
    for ident, (customer, email, qty, cents, micros) in work.live.items():
        amount: Any
        created: Any
        if schema_block:
            amount = Decimal(cents).scaleb(-SCALE)
            created = EPOCH + dt.timedelta(microseconds=micros)
        else:
            amount, created = decimal_b64(cents), micros
        expected[names[ident % work.tables]][ident] = (
            customer,
            sha256_hex(salt, email),
            qty,
            amount,
            created,
        )
    return expected
