"""Where the hot path's CPU goes, component by component, next to the hand-written loop's.

The profile that explains the gap ``hot_path.py`` measures. It starts the same Tansu broker and
PostgreSQL server, produces the same seeded workload (``hot_path_workload.py``), reads every
record once, and then, for each of ``--reps`` repetitions on a fresh database, times in this
process (CPU seconds of the process, one thread, no Beam):

* **cdcflow**: the planned pipeline's own components, batch by batch as ``cdcflow run`` feeds
  them: ``read`` (``KafkaSource.read``: the consumer and one ``RawRecord`` per message),
  ``decode`` (the plan's decode step), ``redact`` (the ``redact`` step), ``write`` (the
  ``postgres`` writer: net change, COPY, positions; the server's CPU is not in it);
* **loop**: ``hot_path_loop.py``'s per-message work on the same records (msgspec typed
  structs, the same hash of the e-mail, the net change per key) and its transaction per
  batch (``DELETE ... = ANY``, binary COPY into a staging table, ``INSERT ... ON CONFLICT``,
  the offsets), without its writer thread;
* **imports**: a fresh interpreter importing what ``cdcflow run`` imports (Beam included),
  and what the loop imports.

Each run's final table is checked against the generator's expected state. What this leaves
out: Beam's runner work per bundle (small at 10,000-record batches; ``hot_path.py``'s
end-to-end CPU minus these parts bounds it) and the loop's consume call (inside its ``read``
here it is the same ``confluent-kafka`` consume).

Run: ``.venv/bin/python benchmarks/hot_path_budget.py [--reps 3] [--schema-block]``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gc
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec  # noqa: E402
import psycopg  # noqa: E402
from harness import kafka_and_postgres  # noqa: E402
from hot_path import SALT, check_state, pipeline_file, produce_workload, table_state  # noqa: E402
from hot_path_loop import Envelope, Wrapped, write_table  # noqa: E402
from hot_path_workload import TOPIC, expected_state, generate, table_ddl  # noqa: E402

EPOCH = dt.datetime(1970, 1, 1)


def cpu() -> float:
    """CPU seconds of this process so far."""
    return time.process_time()


def import_seconds(modules: str) -> float:
    """User + system CPU seconds of a fresh interpreter importing ``modules``, median of 3."""
    runs = []
    for _ in range(3):
        before = os.times()
        subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
        after = os.times()
        runs.append(
            (after.children_user - before.children_user)
            + (after.children_system - before.children_system)
        )
    return statistics.median(runs)


def cdcflow_parts(path: Path, raws: list[Any]) -> dict[str, float]:
    """CPU seconds of decode, redact and write over ``raws`` (the planned components)."""
    from cdcflow.pipelines.config import load_pipeline
    from cdcflow.pipelines.plan import plan_pipeline

    plan = plan_pipeline(load_pipeline(path))
    decode = plan.decode
    decode.setup()
    (redact,) = plan.steps
    redact.setup()
    (writer,) = plan.writers
    writer.open()
    parts = {"decode": 0.0, "redact": 0.0, "write": 0.0}
    try:
        for raw in raws:
            start = cpu()
            batch = decode.process(raw).batch
            decoded = cpu()
            batch = redact.process(batch).batch
            redacted = cpu()
            writer.write(batch)
            parts["decode"] += decoded - start
            parts["redact"] += redacted - decoded
            parts["write"] += cpu() - redacted
    finally:
        writer.close()
    return parts


def loop_parts(dsn: str, raws: list[Any], schema_block: bool) -> dict[str, float]:
    """CPU seconds of the loop's decode + hash + net change, and of its transactions."""
    base = hashlib.sha256(SALT.encode() + b"\x00")
    plain = msgspec.json.Decoder(Envelope).decode
    wrapped = msgspec.json.Decoder(Wrapped).decode
    types = (
        ["int8", "text", "text", "int4", "numeric", "timestamp"]
        if schema_block
        else ["int8", "text", "text", "int8", "text", "int8"]
    )

    def amount_of(value: Any) -> Any:
        raw = base64.b64decode(value)
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-2)

    def created_of(value: Any) -> Any:
        return EPOCH + dt.timedelta(microseconds=value)

    convert: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = (
        (amount_of, created_of) if schema_block else None
    )
    parts = {"decode": 0.0, "write": 0.0}
    with psycopg.connect(dsn) as conn:
        conn.execute(
            'CREATE TABLE IF NOT EXISTS loop_offsets (topic text, part int, "offset" bigint, '
            "PRIMARY KEY (topic, part))"
        )
        conn.execute("CREATE TEMP TABLE stage_orders (LIKE orders) ON COMMIT DELETE ROWS")
        conn.commit()
        for raw in raws:
            start = cpu()
            state: dict[int, Any] = {}
            for record in raw.records:
                envelope = wrapped(record.value).payload if schema_block else plain(record.value)
                if envelope.op == "d":
                    state[envelope.before.id] = None
                    continue
                a = envelope.after
                digest = base.copy()
                digest.update(a.email.encode("utf-8", "surrogatepass"))
                amount, created = a.amount, a.created_at
                if convert is not None:
                    amount, created = convert[0](amount), convert[1](created)
                state[a.id] = (a.id, a.customer, digest.hexdigest(), a.qty, amount, created)
            decoded = cpu()
            with conn.transaction(), conn.cursor() as cur:
                write_table(cur, "orders", state, types)
                cur.execute(
                    'INSERT INTO loop_offsets (topic, part, "offset") VALUES (%s, %s, %s) '
                    'ON CONFLICT (topic, part) DO UPDATE SET "offset" = EXCLUDED."offset"',
                    (TOPIC, raw.partition, raw.last_offset),
                )
            parts["decode"] += decoded - start
            parts["write"] += cpu() - decoded
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--schema-block", action="store_true")
    args = parser.parse_args()
    args.tables, args.consumer_config = 1, []  # what pipeline_file reads: one table, defaults
    os.environ["BENCH_REDACT_SALT"] = SALT
    work = Path(tempfile.mkdtemp(prefix="cdcflow-budget-"))
    workload = generate(args.events, args.keys, args.partitions, args.schema_block, args.seed)
    expected = expected_state(workload, SALT, args.schema_block)
    results: dict[str, list[float]] = {}
    try:
        with kafka_and_postgres(work) as (bootstrap, pg):
            produce_workload(bootstrap, workload, args.partitions)
            del workload
            from cdcflow.pipelines.config import load_pipeline
            from cdcflow.pipelines.plan import plan_pipeline

            for rep in range(args.reps):
                for system in ("loop", "cdcflow"):
                    dsn = pg.create_database(f"budget_{system}_{rep}")
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute(table_ddl("orders", args.schema_block))
                    path = pipeline_file(work, f"budget-{rep}", bootstrap, dsn, args)
                    source = plan_pipeline(load_pipeline(path)).inputs[0].source
                    gc.collect()
                    start = cpu()
                    raws = [
                        batch
                        for stream, part in source.partitions()
                        for batch in source.read(stream, part, 0)
                    ]
                    read = cpu() - start
                    # The records stay alive for the whole run: keep the collector off them,
                    # as cdcflow run's runner does with its long-lived objects.
                    gc.collect()
                    gc.freeze()
                    if system == "cdcflow":
                        parts = {"read": read, **cdcflow_parts(path, raws)}
                    else:
                        parts = {"read": read, **loop_parts(dsn, raws, args.schema_block)}
                    gc.unfreeze()
                    del raws
                    check_state(system, "orders", table_state(dsn, "orders"), expected["orders"])
                    for name, seconds in parts.items():
                        results.setdefault(f"{system} {name}", []).append(seconds)
                    shown = ", ".join(f"{n} {s:.2f}" for n, s in parts.items())
                    print(f"rep {rep + 1} {system}: {shown} CPU s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    imports = {
        "cdcflow": import_seconds(
            "cdcflow.cli.app, cdcflow.beam.runner, cdcflow.beam.kafka, cdcflow.io.postgres, "
            "cdcflow.transforms.redact, psycopg, confluent_kafka"
        ),
        "loop": import_seconds("msgspec, psycopg, confluent_kafka, hashlib, base64, decimal"),
    }
    events = args.events
    variant = "with the schema block" if args.schema_block else "schemaless"
    print(f"\nmedian of {args.reps} ({events} events, {variant}); µs of CPU per event:")
    print(f"{'part':<22}{'cdcflow':>10}{'loop':>10}{'ratio':>8}")
    rows = [("read", "read", "read"), ("decode (+ hash, loop)", "decode", "decode")]
    rows += [("redact", "redact", None), ("write", "write", "write")]
    total = {"cdcflow": 0.0, "loop": 0.0}
    for label, mine, theirs in rows:
        ours = statistics.median(results[f"cdcflow {mine}"]) / events * 1e6
        total["cdcflow"] += ours
        loop = statistics.median(results[f"loop {theirs}"]) / events * 1e6 if theirs else 0.0
        total["loop"] += loop
        ratio = f"{ours / loop:.2f}x" if loop else ""
        shown = f"{loop:.2f}" if theirs else "(in decode)"
        print(f"{label:<22}{ours:>10.2f}{shown:>10}{ratio:>8}")
    print(
        f"{'all parts':<22}{total['cdcflow']:>10.2f}{total['loop']:>10.2f}"
        f"{total['cdcflow'] / total['loop']:>7.2f}x"
    )
    print(
        f"imports (CPU s, once): cdcflow {imports['cdcflow']:.2f}, loop {imports['loop']:.2f} "
        f"(= {imports['cdcflow'] / events * 1e6:.2f} / {imports['loop'] / events * 1e6:.2f} µs "
        f"per event over {events} events)"
    )


if __name__ == "__main__":
    main()
