"""Kafka -> decode -> PostgreSQL upsert on the local Flink engine, next to Beam and a plain loop.

The workload of ``benchmarks/postgres_sink.py`` (the warehouse-sinks benchmark): ``--events``
schemaless Debezium JSON events over ``--keys`` ids on a one-partition topic of a Tansu broker,
upserted into PostgreSQL. Three runs, each in its own process tree, one after the other:

1. **Flink**: ``.venv-flink/bin/cdcflow run --engine flink --until-caught-up`` (a local mini
   cluster: Flink's Kafka source, window batches, the decode step and the PostgreSQL writer in
   a thread-mode Python operator);
2. **Beam**: ``.venv/bin/cdcflow run --until-caught-up`` (DirectRunner);
3. **hand-written loop**: the loop of ``postgres_sink.py`` (confluent-kafka, msgspec, COPY).

For each: events/s over the whole run (start-up included), events/s from the first stored
position to the last (steady state, polled from the offsets table), the CPU microseconds per
event spent between those two points (the tree's CPU read from ``/proc``), CPU seconds and peak RSS
summed over the process tree (the Flink CLI's JVM and the Beam workers included), and a check
that the table holds the expected final state.

Run: ``.venv/bin/python benchmarks/flink_engine.py [--events 300000] [--keys 50000]`` after
``make venv-flink``. Not part of the test suite; the numbers go in docs/flink.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import (  # noqa: E402
    kafka_and_postgres,
    kafka_postgres_pipeline,
    proc_memory_mb,
    table_state,
)
from postgres_sink import LOOP  # noqa: E402

from tests.integration.sinks.events import generate_changelog  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402
from tests.servers.tansu import create_topic, produce  # noqa: E402

TOPIC = "shop.public.items"
FLINK_VENV = Path(os.environ.get("CDCFLOW_FLINK_VENV", REPO / ".venv-flink"))


def _tree(root: int) -> list[int]:
    """``root`` and every descendant process alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _become_subreaper() -> None:
    """Orphaned descendants (the Flink CLI's JVM) get reparented to us, so we can reap them
    and their CPU time lands in ``RUSAGE_CHILDREN``."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _reap(pids: set[int], timeout: float = 60.0) -> None:
    """Wait for the measured tree's leftover processes (now our children) to exit."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by its own parent, or not ours
                if not Path(f"/proc/{pid}").exists():
                    pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        time.sleep(0.05)


_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system, every thread) used so far by the live processes ``pids``."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _offset(dsn: str, table: str, where: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(f'SELECT max("offset") FROM {table} WHERE {where}').fetchone()
    except psycopg.Error:
        return None
    return None if row is None or row[0] is None else int(row[0])


def measure(argv: list[str], env: dict[str, str], dsn: str, table: str, where: str, last: int
            ) -> dict[str, Any]:
    """Run ``argv``: wall time, steady-state rate, CPU seconds and peak RSS of its whole tree.

    CPU is the ``RUSAGE_CHILDREN`` difference once the process and every descendant have
    exited and been reaped (we are a child subreaper); RSS is the peak of the tree's summed
    VmRSS, sampled every 50 ms.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = tempfile.TemporaryFile()
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    seen: set[int] = set()
    pids: list[int] = [process.pid]
    peak = 0.0
    first_write = done_at = None
    cpu_first = cpu_done = 0.0
    next_poll = next_scan = 0.0
    while process.poll() is None:
        now = time.monotonic()
        if now >= next_scan:
            next_scan = now + 0.2
            pids = _tree(process.pid)
            seen.update(pids)
        peak = max(peak, sum(proc_memory_mb(pid, "VmRSS") or 0.0 for pid in pids))
        if done_at is None and now >= next_poll:
            next_poll = now + 0.25
            offset = _offset(dsn, table, where)
            if offset is not None and first_write is None:
                first_write = (now, offset)
                cpu_first = _tree_cpu(_tree(process.pid))
            if offset is not None and offset >= last:
                done_at = now
                cpu_done = _tree_cpu(_tree(process.pid))
        time.sleep(0.05)
    wall = time.monotonic() - started
    if done_at is None and (_offset(dsn, table, where) or -1) >= last:
        done_at = started + wall  # finished between two polls
    _reap(seen - {process.pid})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.seek(0)
    text = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed:\n{text[-4000:]}")
    steady = steady_us = None
    if first_write is not None and done_at is not None and done_at > first_write[0]:
        steady = (last - first_write[1]) / (done_at - first_write[0])
        if cpu_done > cpu_first:
            steady_us = (cpu_done - cpu_first) / (last - first_write[1]) * 1e6
    return {"wall": wall, "cpu": cpu, "rss_mb": peak, "steady": steady, "steady_us": steady_us}


def _compare(
    args: argparse.Namespace, work: Path, bootstrap: str, pg: PostgresServer, jars: list[Path]
) -> None:
    """Run Flink, Beam and the loop one after the other; print the table of results."""
    log = generate_changelog(args.events, args.keys, seed=42, with_schema=False)
    create_topic(bootstrap, TOPIC, partitions=1)
    produce(bootstrap, TOPIC, log.messages)
    last = args.events - 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDCFLOW_FLINK")}
    env["PYTHONPATH"] = str(REPO)
    expected = dict(log.final.items())
    results: dict[str, dict[str, Any]] = {}

    def check(dsn: str, table: str) -> None:
        got = table_state(dsn, table)
        assert got == expected, f"{table}: differs from the expected final state"

    def pipeline(name: str, dsn: str, engine: dict[str, Any] | None) -> Path:
        return kafka_postgres_pipeline(
            work, name, bootstrap, TOPIC, dsn, args.batch, engine=engine
        )

    dsn = pg.create_database("flink")
    flink_options: dict[str, Any] = {
        "jars": [str(j) for j in jars], "batch_interval_ms": args.batch_interval_ms}
    if args.flink_config:
        flink_options["config"] = dict(kv.split("=", 1) for kv in args.flink_config)
    flink_yaml = pipeline("flink", dsn, {"flink": flink_options})
    results["cdcflow on Flink (local)"] = measure(
        [str(FLINK_VENV / "bin" / "cdcflow"), "run", str(flink_yaml), "--engine", "flink",
         "--until-caught-up"], env, dsn, "cdcflow_offsets", "pipeline = 'flink'", last)
    check(dsn, "items")

    if "beam" not in args.skip:
        dsn = pg.create_database("beam")
        beam_yaml = pipeline("beam", dsn, None)
        results["cdcflow on Beam (Direct)"] = measure(
            [str(REPO / ".venv" / "bin" / "cdcflow"), "run", str(beam_yaml),
             "--until-caught-up"], env, dsn, "cdcflow_offsets", "pipeline = 'beam'", last)
        check(dsn, "items")

    if "loop" not in args.skip:
        dsn = pg.create_database("loop")
        results["hand-written loop"] = measure(
            [str(REPO / ".venv" / "bin" / "python"), "-c", LOOP, bootstrap, TOPIC, dsn,
             str(args.events), str(args.batch)], env, dsn, "loop_offsets", "true", last)
        check(dsn, "items_loop")

    print(f"{args.events} events over {args.keys} keys, one partition; "
          f"{os.cpu_count()} CPUs")
    print(f"\n{'':<26}{'events/s':>10}{'steady/s':>10}{'wall s':>8}{'CPU s':>8}"
          f"{'steady us/ev':>14}{'peak RSS MB':>13}")
    for name, r in results.items():
        steady = f"{r['steady']:.0f}" if r["steady"] else "-"
        steady_us = f"{r['steady_us']:.1f}" if r["steady_us"] else "-"
        print(f"{name:<26}{args.events / r['wall']:>10.0f}{steady:>10}{r['wall']:>8.1f}"
              f"{r['cpu']:>8.1f}{steady_us:>14}{r['rss_mb']:>13.0f}")
    loop = results.get("hand-written loop")
    flink = results["cdcflow on Flink (local)"]
    if loop:
        print(f"\nFlink / loop rate (wall): {loop['wall'] / flink['wall']:.0%}")
        print(f"Flink / loop CPU: {flink['cpu'] / loop['cpu']:.1f}x")
        if loop["steady_us"] and flink["steady_us"]:
            print(f"Flink / loop steady CPU per event: "
                  f"{flink['steady_us'] / loop['steady_us']:.1f}x")
        if loop["steady"] and flink["steady"]:
            print(f"Flink / loop rate (steady): {flink['steady'] / loop['steady']:.0%}")
    print(f"every table equals the expected final state ({len(expected)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--batch-interval-ms", type=int, default=200)
    parser.add_argument(
        "--flink-config", action="append", default=[], metavar="KEY=VALUE",
        help="extra engine.flink.config entry for the Flink run (repeatable)")
    parser.add_argument("--skip", choices=["beam", "loop"], action="append", default=[])
    args = parser.parse_args()
    _become_subreaper()

    jars = [FLINK_VENV / "jars" / "flink-connector-kafka-4.0.1-2.0.jar",
            FLINK_VENV / "jars" / "kafka-clients-3.9.1.jar"]
    if not all(j.exists() for j in jars):
        sys.exit("run 'make venv-flink' first")
    work = Path(tempfile.mkdtemp(prefix="cdcflow-bench-flink-"))
    with kafka_and_postgres(work) as (bootstrap, pg):
        _compare(args, work, bootstrap, pg, jars)


if __name__ == "__main__":
    main()
