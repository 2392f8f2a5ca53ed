"""Test data for the sink tests: ChangeEvents, Debezium JSON lines and expected states.

:func:`event` builds a :class:`ChangeEvent` directly (for the Writer API tests);
:func:`generate_changelog` makes a deterministic (seeded) Debezium JSON changelog of one table
with creates, updates and deletes, and computes the table's expected final state and the list
of events, so tests can compare every sink with it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdcflow.io.retry import RetryPolicy
from cdcflow.schemas.model import (
    ChangeEvent,
    Column,
    EventBatch,
    Op,
    Position,
    SourceInfo,
    TableId,
    TableSchema,
)

ORDERS = TableId("shop", "public", "orders")

#: The schema the hand-built events carry (mirrors what the Debezium decoder produces).
ORDERS_SCHEMA = TableSchema(
    name="shop.public.orders.Value",
    fingerprint="orders-v1",
    key_columns=("id",),
    columns=(
        Column(name="id", type="int32", optional=False),
        Column(name="customer", type="string"),
        Column(name="qty", type="int32"),
        Column(
            name="amount",
            type="bytes",
            logical="org.apache.kafka.connect.data.Decimal",
            parameters={"scale": "2", "connect.decimal.precision": "10"},
        ),
        Column(name="created_at", type="int64", logical="io.debezium.time.MicroTimestamp"),
        Column(name="paid_at", type="string", logical="io.debezium.time.ZonedTimestamp"),
        Column(name="ship_date", type="int32", logical="io.debezium.time.Date"),
        Column(name="attrs", type="string", logical="io.debezium.data.Json"),
        Column(name="note", type="string"),
    ),
)


def event(
    op: str,
    offset: int,
    key: int | None = None,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    unavailable: Iterable[str] = (),
    table: TableId = ORDERS,
    schema: TableSchema | None = ORDERS_SCHEMA,
    stream: str = "orders.jsonl",
    ts_ms: int | None = 1_700_000_000_000,
) -> ChangeEvent:
    """A change event at ``offset`` of ``stream``/0."""
    return ChangeEvent(
        op=Op(op),
        table=table,
        position=Position(stream, 0, offset),
        key={"id": key} if key is not None else None,
        before=before,
        after=after,
        unavailable=tuple(unavailable),
        source=SourceInfo(connector="postgresql", name="shop", ts_ms=ts_ms),
        ts_ms=ts_ms,
        schema=schema,
    )


def batch(events: list[ChangeEvent], last_offset: int | None = None) -> EventBatch:
    """An EventBatch of ``events`` (their stream/partition; ``last_offset`` the last event's)."""
    first = events[0].position
    return EventBatch(
        stream=first.stream,
        partition=first.partition,
        last_offset=last_offset if last_offset is not None else events[-1].position.offset,
        events=events,
    )


#: Retries for writer tests: three attempts, 50 ms apart.
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.05)


def order_row(ident: int, **values: Any) -> dict[str, Any]:
    """A row of :data:`ORDERS` with every column set (``values`` override columns)."""
    row: dict[str, Any] = {
        "id": ident,
        "customer": f"c{ident}",
        "qty": ident,
        "amount": Decimal("10.50"),
        "created_at": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
        "paid_at": dt.datetime(2024, 1, 15, 9, 0, tzinfo=dt.UTC),
        "ship_date": dt.date(2024, 2, 1),
        "attrs": '{"gift": true}',
        "note": "hello",
    }
    row.update(values)
    return row


def note_unsent(op: str, offset: int, ident: int, **values: Any) -> ChangeEvent:
    """A ``c``/``u`` event of order ``ident`` without ``note``: a TOASTed column the source
    did not send (named in ``unavailable``)."""
    row = {k: v for k, v in order_row(ident, **values).items() if k != "note"}
    return event(op, offset, ident, after=row, unavailable=["note"])


def opening_orders() -> list[ChangeEvent]:
    """Offsets 0-3: orders 1, 2 and 3 created, then order 1 updated (qty 5, note ``x``)."""
    return [
        event("c", 0, 1, after=order_row(1)),
        event("c", 1, 2, after=order_row(2)),
        event("r", 2, 3, after=order_row(3)),
        event("u", 3, 1, after=order_row(1, qty=5, note="x")),
    ]


# -- a generated Debezium JSON changelog ---------------------------------------------------------

_KEY_SCHEMA = {
    "type": "struct",
    "name": "shop.public.items.Key",
    "optional": False,
    "fields": [{"type": "int64", "optional": False, "field": "id"}],
}
_ROW_FIELDS = [
    {"type": "int64", "optional": False, "field": "id"},
    {"type": "string", "optional": True, "field": "name"},
    {"type": "int32", "optional": True, "field": "qty"},
    {
        "type": "bytes",
        "optional": True,
        "field": "price",
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2", "connect.decimal.precision": "12"},
    },
    {
        "type": "int64",
        "optional": True,
        "field": "updated_at",
        "name": "io.debezium.time.MicroTimestamp",
    },
]


def _envelope_schema() -> dict[str, Any]:
    row = {
        "type": "struct",
        "optional": True,
        "name": "shop.public.items.Value",
        "fields": _ROW_FIELDS,
    }
    return {
        "type": "struct",
        "name": "shop.public.items.Envelope",
        "optional": False,
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {
                "type": "struct",
                "optional": False,
                "field": "source",
                "name": "io.debezium.connector.postgresql.Source",
                "fields": [
                    {"type": "string", "optional": False, "field": "connector"},
                    {"type": "string", "optional": False, "field": "name"},
                    {"type": "int64", "optional": False, "field": "ts_ms"},
                    {"type": "string", "optional": True, "field": "db"},
                    {"type": "string", "optional": True, "field": "schema"},
                    {"type": "string", "optional": True, "field": "table"},
                ],
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


def _price_bytes(cents: int) -> str:
    import base64

    length = max(1, (cents.bit_length() + 8) // 8)
    return base64.b64encode(cents.to_bytes(length, "big", signed=True)).decode()


@dataclass
class Changelog:
    """A generated changelog: message ``(key, value)`` lines and what a sink must end with."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    #: id -> (name, qty, price as a 2-decimal string) after every event.
    final: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    #: (op, id) of every row event, in order.
    ops: list[tuple[str, int]] = field(default_factory=list)

    def lines(self) -> str:
        """The changelog as a file-source text (key TAB value per line)."""
        return "".join(f"{k}\t{v}\n" for k, v in self.messages)


def generate_changelog(
    count: int,
    keys: int,
    seed: int = 7,
    mix: tuple[float, float, float] = (0.6, 0.35, 0.05),
    with_schema: bool = True,
) -> Changelog:
    """``count`` Debezium JSON messages for ``shop.public.items`` over up to ``keys`` ids.

    ``mix`` is the share of creates, updates and deletes; an update or delete of an id that
    does not exist becomes a create, a create of an existing id an update (so the changelog is
    consistent). With ``with_schema`` the schema block is included (as Debezium's JSON converter
    sends it, the price a Connect Decimal); without, messages are schemaless and the price is a
    decimal string (Debezium's ``decimal.handling.mode=string``).
    """
    rng = random.Random(seed)
    schema = _envelope_schema()
    log = Changelog()
    live: dict[int, tuple[str, int, int]] = {}
    base_ts = 1_700_000_000_000
    for index in range(count):
        ident = rng.randrange(1, keys + 1)
        draw = rng.random()
        op = "c" if draw < mix[0] else ("u" if draw < mix[0] + mix[1] else "d")
        if op in ("u", "d") and ident not in live:
            op = "c"
        elif op == "c" and ident in live:
            op = "u"
        before = _row(ident, live[ident], with_schema=with_schema) if ident in live else None
        ts = base_ts + index
        if op == "d":
            after = None
            del live[ident]
        else:
            state = (f"item-{ident}-{index}", rng.randrange(0, 1000), rng.randrange(0, 10**7))
            live[ident] = state
            after = _row(ident, state, ts, with_schema=with_schema)
        payload = {
            "before": before,
            "after": after,
            "source": {
                "connector": "postgresql",
                "name": "shop",
                "ts_ms": ts,
                "db": "shop",
                "schema": "public",
                "table": "items",
            },
            "op": op,
            "ts_ms": ts + 5,
        }
        if with_schema:
            key = json.dumps(
                {"schema": _KEY_SCHEMA, "payload": {"id": ident}}, separators=(",", ":")
            )
            value = json.dumps({"schema": schema, "payload": payload}, separators=(",", ":"))
        else:
            key = json.dumps({"id": ident}, separators=(",", ":"))
            value = json.dumps(payload, separators=(",", ":"))
        log.messages.append((key, value))
        log.ops.append((op, ident))
    log.final = {
        ident: (name, qty, f"{cents // 100}.{cents % 100:02d}")
        for ident, (name, qty, cents) in live.items()
    }
    return log


def _row(
    ident: int, state: tuple[str, int, int], ts: int | None = None, with_schema: bool = True
) -> dict[str, Any]:
    name, qty, cents = state
    return {
        "id": ident,
        "name": name,
        "qty": qty,
        "price": _price_bytes(cents) if with_schema else f"{cents // 100}.{cents % 100:02d}",
        "updated_at": (ts or 1_600_000_000_000) * 1000,
    }


# -- running the CLI -------------------------------------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[3]


def cdcflow_argv(*args: str) -> list[str]:
    """The argv of the ``cdcflow`` CLI in this interpreter."""
    import sys

    return [sys.executable, "-c", "from cdcflow.cli.app import main; main()", *args]


def run_cli(*args: str, timeout: float = 300) -> Any:
    """Run the CLI to completion; returns the CompletedProcess (text output)."""
    import os
    import subprocess

    return subprocess.run(
        cdcflow_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
