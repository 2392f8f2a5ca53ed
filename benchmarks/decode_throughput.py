"""Debezium JSON decode throughput, with and without the ``schema`` block.

Generates realistic ~1 KB PostgreSQL Debezium envelopes in memory (an ``orders`` row with
decimals, timestamps, dates, text and a nested source block), wraps the same payloads in the
JSON converter's ``schema``/``payload`` wrapper for the second run, and decodes them in batches
with the decode step the pipelines use (:class:`cdcflow.transforms.decode.DecodeStep`, one
:class:`DebeziumJsonDecoder` per step). Prints messages/s, CPU seconds and peak RSS.

Run: ``.venv/bin/python benchmarks/decode_throughput.py [--messages 200000] [--batch 1000]
[--mode both|schemaless|schema] [--runs 1]`` (``make bench``). ``--runs N`` decodes the same
batches N times with one step (warmed on the first batch) and prints each run and the
medians; ``--runs 0`` only generates and warms, the baseline to subtract when counting
instructions (``valgrind --tool=cachegrind --cache-sim=no``, see docs/benchmarks.md). Not part of
the test suite; put the numbers in docs/benchmarks.md ("Decode").
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stopwatch, peak_rss_mb

from cdcflow.schemas.model import ChangeEvent, Position, RawBatch, RawRecord
from cdcflow.transforms.decode import DecodeStep

TOPIC = "shop.public.orders"
STATUSES = ["new", "paid", "packed", "shipped", "delivered", "cancelled"]
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike".split()


def _field(name: str, type_: str, optional: bool = True, logical: str | None = None,
           params: dict[str, str] | None = None, version: int | None = None) -> dict:
    field: dict = {"type": type_, "optional": optional, "field": name}
    if logical:
        field["name"] = logical
    if version is not None:
        field["version"] = version
    if params:
        field["parameters"] = params
    return field


def _row_fields() -> list[dict]:
    dec = {"scale": "2", "connect.decimal.precision": "12"}
    return [
        _field("id", "int64", optional=False),
        _field("customer_id", "int64", optional=False),
        _field("status", "string", optional=False),
        _field("total", "bytes", logical="org.apache.kafka.connect.data.Decimal", params=dec,
               version=1),
        _field("shipping", "bytes", logical="org.apache.kafka.connect.data.Decimal", params=dec,
               version=1),
        _field("currency", "string"),
        _field("items", "int32"),
        _field("weight_kg", "double"),
        _field("gift", "boolean"),
        _field("note", "string"),
        _field("ship_to", "string"),
        _field("order_date", "int32", logical="io.debezium.time.Date", version=1),
        _field("created_at", "int64", logical="io.debezium.time.MicroTimestamp", version=1),
        _field("updated_at", "string", logical="io.debezium.time.ZonedTimestamp", version=1),
        _field("pickup_time", "int64", logical="io.debezium.time.MicroTime", version=1),
        _field("tracking", "string", logical="io.debezium.data.Uuid", version=1),
    ]


def _source_fields() -> list[dict]:
    return [
        _field("version", "string", optional=False),
        _field("connector", "string", optional=False),
        _field("name", "string", optional=False),
        _field("ts_ms", "int64", optional=False),
        _field("snapshot", "string", logical="io.debezium.data.Enum", version=1,
               params={"allowed": "true,last,false,incremental"}),
        _field("db", "string", optional=False),
        _field("sequence", "string"),
        _field("ts_us", "int64"),
        _field("ts_ns", "int64"),
        _field("schema", "string", optional=False),
        _field("table", "string", optional=False),
        _field("txId", "int64"),
        _field("lsn", "int64"),
        _field("xmin", "int64"),
    ]


def value_schema() -> dict:
    """The JSON converter's schema block for the orders envelope (about 3.5 KB)."""
    row = {"type": "struct", "fields": _row_fields(), "optional": True,
           "name": "shop.public.orders.Value"}
    return {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "struct", "fields": _source_fields(), "optional": False,
             "name": "io.debezium.connector.postgresql.Source", "field": "source"},
            _field("op", "string", optional=False),
            _field("ts_ms", "int64"),
            _field("ts_us", "int64"),
            _field("ts_ns", "int64"),
            {"type": "struct", "fields": [
                _field("id", "string", optional=False),
                _field("total_order", "int64", optional=False),
                _field("data_collection_order", "int64", optional=False),
            ], "optional": True, "name": "event.block", "version": 1, "field": "transaction"},
        ],
        "optional": False,
        "name": "shop.public.orders.Envelope",
        "version": 2,
    }


def _unscaled(cents: int) -> str:
    length = max(1, (cents.bit_length() + 8) // 8)
    return base64.b64encode(cents.to_bytes(length, "big", signed=True)).decode()


def envelope(i: int, rnd: random.Random) -> dict:
    """One PostgreSQL update envelope (payload only), about 1 KB as JSON."""
    ts_ms = 1_717_000_000_000 + i * 37
    row = {
        "id": 100_000 + i,
        "customer_id": rnd.randrange(1, 50_000),
        "status": rnd.choice(STATUSES),
        "total": _unscaled(rnd.randrange(100, 10_000_000)),
        "shipping": _unscaled(rnd.randrange(0, 5_000)),
        "currency": "EUR",
        "items": rnd.randrange(1, 20),
        "weight_kg": round(rnd.random() * 30, 3),
        "gift": rnd.random() < 0.1,
        "note": " ".join(rnd.choice(WORDS) for _ in range(6)),
        "ship_to": f"{rnd.randrange(1, 200)} {rnd.choice(WORDS).title()} Street, 1010 Vienna, AT",
        "order_date": 19_800 + i % 400,
        "created_at": ts_ms * 1000 - 86_400_000_000,
        "updated_at": "2024-06-01T12:34:56.789012Z",
        "pickup_time": rnd.randrange(0, 86_400_000_000),
        "tracking": f"7d9f8a1e-1c2b-4e0f-9a55-{i:012x}",
    }
    before = dict(row, status="new")
    return {
        "before": before,
        "after": row,
        "source": {
            "version": "2.7.3.Final", "connector": "postgresql", "name": "shop",
            "ts_ms": ts_ms, "snapshot": "false", "db": "shop",
            "sequence": f'["{24023119 + i}","{24023128 + i}"]', "ts_us": ts_ms * 1000,
            "ts_ns": ts_ms * 1_000_000, "schema": "public", "table": "orders",
            "txId": 5_000 + i, "lsn": 24_023_128 + i * 64, "xmin": None,
        },
        "op": "u",
        "ts_ms": ts_ms + 5,
        "ts_us": (ts_ms + 5) * 1000,
        "ts_ns": (ts_ms + 5) * 1_000_000,
        "transaction": None,
    }


POOL = 20_000


def make_batches(count: int, batch_size: int, with_schema: bool) -> tuple[list[RawBatch], int]:
    """Build the raw batches in memory; returns them and the mean value size in bytes.

    ``POOL`` distinct messages are generated and reused round-robin (each record still has
    its own offset), so the input does not dominate the peak RSS.
    """
    rnd = random.Random(42)
    schema = value_schema()
    pool: list[tuple[bytes, bytes]] = []
    for i in range(min(count, POOL)):
        payload = envelope(i, rnd)
        message = {"schema": schema, "payload": payload} if with_schema else payload
        value = json.dumps(message, separators=(",", ":")).encode()
        pool.append((f'{{"id":{100_000 + i}}}'.encode(), value))
    batches: list[RawBatch] = []
    records: list[RawRecord] = []
    for i in range(count):
        key, value = pool[i % len(pool)]
        records.append(RawRecord(key=key, value=value, position=Position(TOPIC, 0, i)))
        if len(records) == batch_size or i == count - 1:
            batches.append(RawBatch(TOPIC, 0, records, records[-1].position.offset))
            records = []
    mean_size = sum(len(v) for _, v in pool) // max(len(pool), 1)
    return batches, mean_size


def run(
    count: int, batch_size: int, with_schema: bool, step: DecodeStep | None = None,
    batches: list[RawBatch] | None = None, mean_size: int = 0,
) -> dict[str, float]:
    """Decode ``count`` messages (``batches`` when given, else generated); the measurements."""
    if batches is None:
        batches, mean_size = make_batches(count, batch_size, with_schema)
    if step is None:
        step = DecodeStep(stream_is_topic=True)
        step.setup()
    decoded = failed = 0
    with Stopwatch(collect=True) as watch:
        for batch in batches:
            result = step.process(batch)
            decoded += len(result.batch.events)
            failed += len(result.dead_letters)
    wall, cpu = watch.wall, watch.cpu
    if failed or decoded != count:
        raise SystemExit(f"decoding failed: {failed} dead letters, {decoded}/{count} events")
    assert isinstance(result.batch.events[0], ChangeEvent)
    return {"messages": count, "bytes": mean_size, "wall": wall, "cpu": cpu,
            "rate": count / wall, "cpu_rate": count / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--mode", choices=("both", "schemaless", "schema"), default="both")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(f"decoding {args.messages} PostgreSQL envelopes in batches of {args.batch}")
    modes = (("without schema block", False), ("with schema block", True))
    for label, with_schema in modes:
        if args.mode != "both" and with_schema != (args.mode == "schema"):
            continue
        batches, mean_size = make_batches(args.messages, args.batch, with_schema)
        step = DecodeStep(stream_is_topic=True)
        step.setup()
        step.process(batches[0])  # warm: the caches of the step are filled before any run
        results = []
        for _ in range(args.runs):
            r = run(args.messages, args.batch, with_schema, step, batches, mean_size)
            results.append(r)
            print(f"{label:22s} {r['rate']:>9,.0f} msg/s ({r['cpu_rate']:,.0f} per CPU s)  "
                  f"mean value {r['bytes']:,} B  wall {r['wall']:.2f} s  CPU {r['cpu']:.2f} s")
        if len(results) > 1:
            cpu = statistics.median(r["cpu"] for r in results)
            wall = statistics.median(r["wall"] for r in results)
            print(f"{label:22s} median of {len(results)}: CPU {cpu:.2f} s "
                  f"({args.messages / cpu:,.0f} msg per CPU s, {cpu / args.messages * 1e6:.1f} "
                  f"µs each), wall {wall:.2f} s")
    print(f"peak RSS {peak_rss_mb():.0f} MB (includes the {POOL:,} generated messages)")


if __name__ == "__main__":
    main()
