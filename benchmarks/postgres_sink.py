"""Kafka -> decode -> PostgreSQL upsert: cdcflow against a hand-written loop, in one run.

Starts a Tansu broker and a PostgreSQL server (the test fixtures' classes, on free ports),
produces ``--events`` schemaless Debezium JSON events over ``--keys`` ids (60% creates, 35%
updates, 5% deletes, seeded; the price a decimal string, so both tables store it as text) to a
one-partition topic, then:

1. **cdcflow**: ``cdcflow run --until-caught-up`` of a pipeline ``type: kafka`` ->
   ``type: postgres`` (upsert), in a subprocess;
2. **hand-written loop**: confluent-kafka consumer, msgspec decoding into typed structs, and per
   poll one transaction doing ``COPY`` into a staging table, ``DELETE``, ``INSERT ... ON CONFLICT
   DO UPDATE`` and the offset upsert, in a subprocess.

For each it prints events/s (wall clock of the whole process, start-up included), CPU seconds
(user + system) and peak RSS, and checks both tables hold the expected final state.

Run: ``.venv/bin/python benchmarks/postgres_sink.py [--events 300000] [--keys 50000]``.
Not part of the test suite; the numbers go in docs/sinks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import (  # noqa: E402
    Stopwatch,
    kafka_and_postgres,
    kafka_postgres_pipeline,
    proc_memory_mb,
    table_state,
)

from tests.integration.sinks.events import generate_changelog  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402
from tests.servers.tansu import create_topic, produce  # noqa: E402

TOPIC = "shop.public.items"

LOOP = r"""
import sys, time
import msgspec, psycopg
from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, dsn = sys.argv[1:4]
total, batch = int(sys.argv[4]), int(sys.argv[5])

class Row(msgspec.Struct):
    id: int
    name: str | None = None
    qty: int | None = None
    price: str | None = None
    updated_at: int | None = None

class Source(msgspec.Struct):
    ts_ms: int | None = None

class Envelope(msgspec.Struct):
    op: str
    before: Row | None = None
    after: Row | None = None
    source: Source | None = None

decode = msgspec.json.Decoder(Envelope).decode
conn = psycopg.connect(dsn, autocommit=True)
conn.execute("CREATE TABLE IF NOT EXISTS items_loop (id bigint PRIMARY KEY, name text, "
             "qty integer, price text, updated_at bigint)")
conn.execute('CREATE TABLE IF NOT EXISTS loop_offsets (topic text, part int, "offset" bigint, '
             "PRIMARY KEY (topic, part))")
conn.execute("CREATE TEMP TABLE stage (LIKE items_loop) ON COMMIT DELETE ROWS")
conn.execute("CREATE TEMP TABLE stage_del (id bigint) ON COMMIT DELETE ROWS")
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-loop",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
consumer.assign([TopicPartition(topic, 0, 0)])
seen = 0
while seen < total:
    messages = consumer.consume(batch, 1.0)
    if not messages:
        continue
    state = {}
    last = -1
    for message in messages:
        if message.error() is not None:
            raise RuntimeError(message.error())
        env = decode(message.value())
        row = env.after if env.op != "d" else env.before
        state[row.id] = None if env.op == "d" else row
        last = message.offset()
    seen += len(messages)
    with conn.transaction():
        with conn.cursor() as cur:
            deletes = [k for k, v in state.items() if v is None]
            if deletes:
                with cur.copy("COPY stage_del (id) FROM STDIN") as copy:
                    for k in deletes:
                        copy.write_row((k,))
                cur.execute("DELETE FROM items_loop t USING stage_del s WHERE t.id = s.id")
            with cur.copy("COPY stage (id, name, qty, price, updated_at) FROM STDIN") as copy:
                for v in state.values():
                    if v is not None:
                        copy.write_row((v.id, v.name, v.qty, v.price, v.updated_at))
            cur.execute("INSERT INTO items_loop SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET "
                        "name = EXCLUDED.name, qty = EXCLUDED.qty, price = EXCLUDED.price, "
                        "updated_at = EXCLUDED.updated_at")
            cur.execute('INSERT INTO loop_offsets VALUES (%s, 0, %s) ON CONFLICT (topic, part) '
                        'DO UPDATE SET "offset" = EXCLUDED."offset"', (topic, last))
consumer.close()
conn.close()
"""


def _measure(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv``; wall seconds, CPU seconds and peak RSS (MB) of that process.

    Peak RSS is polled from /proc (VmHWM resets at exec, unlike ``ru_maxrss``, which would
    report this benchmark's own memory at fork time).
    """
    started = time.monotonic()
    out_file = tempfile.TemporaryFile()
    err_file = tempfile.TemporaryFile()
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out_file, stderr=err_file)
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = proc_memory_mb(process.pid, "VmHWM")  # the peak so far; None once it has exited
        if rss is not None:
            peak = max(peak, rss)
        time.sleep(0.02)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    err_file.seek(0)
    out = out_file.read().decode()
    err = err_file.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed:\n{out}\n{err[-3000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": peak,
        "stdout": out,
    }


def _writer_only(messages: list[tuple[str, str]], dsn: str, batch: int) -> dict[str, float]:
    """Time :class:`PostgresWriter` alone on pre-decoded events (no Kafka, no Beam)."""
    from cdcflow.io.postgres import PostgresWriter
    from cdcflow.schemas.debezium import DebeziumJsonDecoder
    from cdcflow.schemas.model import ChangeEvent, EventBatch, Position

    decoder = DebeziumJsonDecoder()
    events: list[ChangeEvent] = []
    for offset, (key, value) in enumerate(messages):
        item = decoder.decode(value.encode(), Position(TOPIC, 0, offset), key=key.encode())
        assert isinstance(item, ChangeEvent)
        events.append(item)
    batches = [
        EventBatch(
            stream=TOPIC,
            partition=0,
            last_offset=min(start + batch, len(events)) - 1,
            events=events[start : start + batch],
        )
        for start in range(0, len(events), batch)
    ]
    writer = PostgresWriter(name="wh", dsn=dsn, pipeline="bench")
    writer.open()
    with Stopwatch() as watch:
        for item in batches:
            writer.write(item)
    writer.close()
    return {"wall": watch.wall, "cpu": watch.cpu}


def _compare(args: argparse.Namespace, work: Path, bootstrap: str, pg: PostgresServer) -> None:
    """Run cdcflow, the loop and the writer alone; print the table of results."""
    log = generate_changelog(args.events, args.keys, seed=42, with_schema=False)
    create_topic(bootstrap, TOPIC, partitions=1)
    t0 = time.monotonic()
    produce(bootstrap, TOPIC, log.messages)
    print(
        f"produced {args.events} events over {args.keys} keys in {time.monotonic() - t0:.1f}s "
        f"({sum(len(v) for _, v in log.messages) / args.events:.0f} bytes/value)"
    )
    dsn = pg.create_database("bench")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    pipeline = kafka_postgres_pipeline(
        work, "bench", bootstrap, TOPIC, dsn, args.batch, group_id="bench-cdcflow"
    )
    cdcflow = _measure(
        [
            sys.executable,
            "-c",
            "from cdcflow.cli.app import main; main()",
            "run",
            str(pipeline),
            "--until-caught-up",
        ],
        env,
    )
    loop = _measure(
        [sys.executable, "-c", LOOP, bootstrap, TOPIC, dsn, str(args.events), str(args.batch)],
        env,
    )

    writer_only = _writer_only(log.messages, pg.create_database("bench_writer"), args.batch)

    mine = table_state(dsn, "items")
    theirs = table_state(dsn, "items_loop")
    expected = {k: (n, q, p) for k, (n, q, p) in log.final.items()}
    assert mine == expected, "cdcflow's table differs from the expected state"
    assert theirs == expected, "the loop's table differs from the expected state"

    inner = next((line for line in cdcflow["stdout"].splitlines() if "finished in" in line), "")
    print(f"\n{'':<22}{'events/s':>10}{'wall s':>9}{'CPU s':>8}{'peak RSS MB':>13}")
    for name, result in (("cdcflow (Beam)", cdcflow), ("hand-written loop", loop)):
        print(
            f"{name:<22}{args.events / result['wall']:>10.0f}{result['wall']:>9.1f}"
            f"{result['cpu']:>8.1f}{result['rss_mb']:>13.0f}"
        )
    print(f"\ncdcflow / loop rate: {loop['wall'] / cdcflow['wall']:.0%}")
    print(
        f"PostgreSQL writer alone (Writer API, decoded events, batches of {args.batch}): "
        f"{args.events / writer_only['wall']:.0f} events/s, "
        f"{writer_only['cpu']:.1f} CPU s in this process"
    )
    print(f"cdcflow summary: {inner.strip()}")
    print(f"both tables equal the expected final state ({len(expected)} rows)")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cdcflow-bench-"))
    try:
        with kafka_and_postgres(work) as (bootstrap, pg):
            _compare(args, work, bootstrap, pg)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
