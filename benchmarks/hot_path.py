"""Issue 12's hot path, like with like: Kafka -> decode -> hash an e-mail -> PostgreSQL upsert.

Starts a Tansu broker and a PostgreSQL server (the test fixtures' classes, see ``harness.py``),
produces the seeded workload of ``hot_path_workload.py`` (default 300k Debezium JSON events over
50k keys, 60 % creates / 35 % updates / 5 % deletes, 3 partitions, ``amount`` a Connect Decimal,
``created_at`` a MicroTimestamp; ``--schema-block`` adds the JSON converter's schema wrapper),
then runs, alternating, ``--runs`` times each:

* **loop**: ``hot_path_loop.py`` (confluent-kafka, msgspec typed structs, the same hash, binary
  COPY, deletes/upserts/offsets in one transaction, a writer thread overlapping decode of batch
  k+1 with the round trip of batch k; with the schema block it parses the block and decodes the
  decimal and the timestamp);
* **cdcflow**: ``cdcflow run --until-caught-up`` of ``kafka`` -> ``redact`` (``hash-sha256`` on
  ``email``) -> ``postgres`` (upsert), in a subprocess.

``--tables N`` spreads the workload over N tables, one topic each with ``--partitions``
partitions (``orders_00``... on ``shop.public.orders_00``...; one table keeps ``orders`` on
``shop.public.orders``), the ids split by ``id % N`` so the total stays ``--events``; the redact
rule and the sink cover every table, the loop reads every topic with one consumer and writes
every table in one transaction per batch. ``--systems`` runs only some of the two.
``--consumer-config KEY=VALUE`` (repeatable) adds a librdkafka setting to cdcflow's source
``consumer_config`` (for trying consumer settings).

Each run gets a fresh database with the same pre-created tables; every table is compared with
the state computed from the generator after every run (a difference stops the benchmark). Measured
per run, from outside the measured process: wall seconds to exit; the time of the first
committed write (this process polls the system's positions table every 10 ms over one
connection until a row appears, then disconnects; that backend's CPU is left out of the
PostgreSQL figure); client CPU (user + system of the process and the children it waited for,
from ``wait4``); PostgreSQL CPU (user + system of the postmaster and all its processes,
including exited backends, from ``/proc``); the broker's CPU (Tansu's, from ``/proc``: idle
consumers that keep fetching show up here); peak RSS (``VmHWM``, polled); the transactions
committed in the run's database (``xact_commit`` of ``pg_stat_database``, less the poller's
queries: the write transactions plus a few of start-up). The summary is the median over the
runs and the ratios cdcflow / loop against issue 12's targets.

``--profile FILE`` adds one untimed cdcflow run under ``py-spy record --format raw`` (collapsed
stacks, for ``profile_summary.py``); ``--profile-gil`` samples only the thread holding the GIL
(Beam's worker threads otherwise add samples of threads waiting for it).

Run: ``.venv/bin/python benchmarks/hot_path.py --runs 3 [--schema-block]``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from harness import kafka_and_postgres, proc_memory_mb  # noqa: E402
from hot_path_workload import (  # noqa: E402
    Workload,
    expected_state,
    generate,
    table_ddl,
    table_names,
    topics,
)

#: The CLI's module in the tree under test (``cdcflow.pipelines.cli`` before issue 11's move,
#: so that the same script measures an older checkout with its benchmarks copied in).
CLI_MODULE = (
    "cdcflow.cli.app" if (REPO / "cdcflow" / "cli" / "app.py").exists() else "cdcflow.pipelines.cli"
)
SALT = "bench-salt-0123456789abcdef"  # a benchmark constant, not a secret
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Issue 12 item 3: (label, metric, bound, "max" = cdcflow/loop must be <= bound, "min" >=).
TARGETS = (
    ("client CPU per event", "cpu_per_event", 1.25, "max"),
    ("events/s after first write", "rate_after_first", 0.8, "min"),
    ("PostgreSQL CPU", "pg_cpu", 1.1, "max"),
)


def tree_cpu_seconds(root: int) -> float:
    """User + system seconds of ``root`` and its live descendants, plus their reaped children.

    A process's ``cutime``/``cstime`` hold the children it has waited for (exited backends end
    up in the postmaster's), live processes are counted once each: nothing is counted twice.
    """
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        stats[int(entry.name)] = (ppid, ticks / CLK_TCK)
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(stats[pid][1] for pid in tree if pid in stats)


def broker_pid(bootstrap: str) -> int | None:
    """The pid of the Tansu broker listening on ``bootstrap`` (found by its command line)."""
    url = f"tcp://{bootstrap}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tansu") and url in argv:
            return int(entry.name)
    return None


def postmaster_pid(pg: Any) -> int:
    """The postmaster's pid (first line of ``postmaster.pid``)."""
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


class FirstWritePoller:
    """Polls a positions table over one connection until it holds a row.

    The poller's own server process is measured and its CPU seconds reported (``cpu``) so the
    PostgreSQL CPU of the run can exclude it; it disconnects as soon as it has seen a row.
    """

    def __init__(self, dsn: str, table: str) -> None:
        import psycopg

        self._conn: Any = psycopg.connect(dsn, autocommit=True)
        self._query = f'SELECT count(*), sum("offset" + 1) FROM {table}'
        row = self._conn.execute("SELECT pg_backend_pid()").fetchone()
        self._backend = int(row[0])
        self._cpu0 = self._backend_cpu()
        self.cpu = 0.0
        #: Transactions this poller committed in the database (left out of the run's count).
        self.commits = 1

    def _backend_cpu(self) -> float:
        fields = Path(f"/proc/{self._backend}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:13]) / CLK_TCK

    def committed_events(self) -> int | None:
        """Events committed so far (None before the table exists or has a row)."""
        import psycopg

        try:
            row = self._conn.execute(self._query).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        self.commits += 1
        if row is None or not row[0]:
            return None
        return int(row[1])

    def close(self) -> None:
        """Record the poller backend's CPU seconds and disconnect."""
        if self._conn is not None:
            self.cpu = self._backend_cpu() - self._cpu0
            self._conn.close()
            self._conn = None


def commits(admin_dsn: str, database: str) -> int:
    """Transactions committed in ``database`` so far, once none of its backends is left.

    A backend reports its counts when it exits, so this waits (at most 5 s) for the
    database's sessions to end first.
    """
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()
            if not row or not row[0]:
                break
            time.sleep(0.02)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    return int(row[0]) if row else 0


def measure(
    argv: list[str],
    env: dict[str, str],
    dsn: str,
    offsets: str,
    ctx: dict[str, Any],
    database: str,
) -> dict[str, Any]:
    """Run ``argv`` to completion and measure it (see the module docstring)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    pg_root, admin, broker = ctx["pg_root"], ctx["pg"].dsn, ctx["broker_pid"]
    commits0 = commits(admin, database)
    poller = FirstWritePoller(dsn, offsets)
    pg0 = tree_cpu_seconds(pg_root)
    broker0 = tree_cpu_seconds(broker) if broker else 0.0
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err)
    peak = 0.0
    first: float | None = None
    first_events = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = proc_memory_mb(process.pid, "VmHWM")
        if rss is not None:
            peak = max(peak, rss)
        if first is None:
            done = poller.committed_events()
            if done is not None:
                first, first_events = time.monotonic(), done
                poller.close()
        time.sleep(0.01)
    ended = time.monotonic()
    if first is None:  # finished between two polls
        first, first_events = ended, poller.committed_events() or 0
    poller.close()
    pg_cpu = tree_cpu_seconds(pg_root) - pg0 - poller.cpu
    broker_cpu = tree_cpu_seconds(broker) - broker0 if broker else float("nan")
    code = os.waitstatus_to_exitcode(status)
    transactions = commits(admin, database) - commits0 - poller.commits
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{argv[:4]} exited {code}:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return {
        "wall": ended - started,
        "startup": first - started,
        "after_first_s": max(ended - first, 1e-9),
        "first_events": first_events,
        "cpu": usage.ru_utime + usage.ru_stime,
        "pg_cpu": pg_cpu,
        "broker_cpu": broker_cpu,
        "rss_mb": peak,
        "transactions": transactions,
        "stdout": stdout,
    }


def pipeline_file(
    work: Path, name: str, bootstrap: str, dsn: str, args: argparse.Namespace
) -> Path:
    """``kafka`` -> ``redact`` (hash-sha256 on email) -> ``postgres`` upsert, every table."""
    source: dict[str, Any] = {
        "type": "kafka",
        "bootstrap_servers": bootstrap,
        "topics": topics(args.tables),
        "group_id": f"bench-{name}",
        "start": "earliest",
        "max_batch_size": args.batch,
    }
    if args.consumer_config:
        source["consumer_config"] = dict(args.consumer_config)
    tables = "shop.public.orders" if args.tables == 1 else "shop.public.orders_*"
    document = {
        "pipeline": name,
        "source": source,
        "transforms": [
            {
                "type": "redact",
                "salt": "${BENCH_REDACT_SALT}",
                "rules": [{"table": tables, "columns": ["email"], "strategy": "hash-sha256"}],
            }
        ],
        "sinks": [{"name": "wh", "type": "postgres", "dsn": dsn}],
        "dead_letter": {"type": "file", "path": str(work / f"{name}-dead.jsonl")},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def table_state(dsn: str, table: str) -> dict[int, tuple[Any, ...]]:
    """``{id: (customer, email, qty, amount, created_at)}`` of ``table``."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT id, customer, email, qty, amount, created_at FROM {table}"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def check_state(
    system: str, table: str, actual: dict[int, tuple[Any, ...]], expected: dict[int, Any]
) -> None:
    """Raise, naming a few differences, unless ``actual`` equals ``expected``."""
    if actual == expected:
        return
    missing = sorted(set(expected) - set(actual))[:3]
    extra = sorted(set(actual) - set(expected))[:3]
    wrong = [k for k in sorted(set(actual) & set(expected)) if actual[k] != expected[k]][:3]
    detail = "; ".join(f"id {k}: got {actual[k]!r}, expected {expected[k]!r}" for k in wrong)
    raise SystemExit(
        f"FAIL: {system}'s table {table} differs from the expected state ({len(actual)} rows, "
        f"expected {len(expected)}; missing ids {missing}, unexpected ids {extra}; {detail})"
    )


def produce_workload(bootstrap: str, work: Workload, partitions: int) -> None:
    """Create the topics and produce every message to its topic's partition."""
    from confluent_kafka import Producer

    from tests.servers.tansu import create_topic

    names = topics(work.tables)
    for topic in names:
        create_topic(bootstrap, topic, partitions=partitions)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    errors: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    for count, (table, partition, key, value) in enumerate(work.messages, 1):
        while True:
            try:
                producer.produce(
                    names[table], value, key, partition=partition, on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.1)
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) or errors:
        raise RuntimeError(f"producing failed: {errors[:3]}")


def run_once(
    system: str, index: int, args: argparse.Namespace, ctx: dict[str, Any]
) -> dict[str, Any]:
    """One measured run of ``system`` on a fresh database; checks the final table."""
    pg = ctx["pg"]
    database = f"bench_{system}_{index}"
    dsn = pg.create_database(database)
    import psycopg

    names = table_names(args.tables)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in names:
            conn.execute(table_ddl(table, args.schema_block))
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_REDACT_SALT": SALT}
    if system == "loop":
        argv = [
            sys.executable,
            str(Path(__file__).resolve().parent / "hot_path_loop.py"),
            "--bootstrap", ctx["bootstrap"], "--topics", ",".join(topics(args.tables)),
            "--tables", ",".join(names), "--dsn", dsn,
            "--ends", ",".join(f"{t}:{p}:{n - 1}" for (t, p), n in ctx["sizes"].items()),
            "--batch", str(args.batch), "--salt", SALT,
        ]  # fmt: skip
        if args.schema_block:
            argv.append("--schema-block")
        offsets = "loop_offsets"
    else:
        path = pipeline_file(ctx["work"], f"cdcflow-{index}", ctx["bootstrap"], dsn, args)
        argv = [
            sys.executable, "-c", f"from {CLI_MODULE} import main; main()",
            "run", str(path), "--until-caught-up",
        ]  # fmt: skip
        if index < 0:  # the profiled run
            argv = [
                str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                "--rate", "250", "--subprocesses", "-o", str(args.profile),
                *(["--gil"] if args.profile_gil else []), "--", *argv,
            ]  # fmt: skip
        offsets = "cdcflow_offsets"
    result = measure(argv, env, dsn, offsets, ctx, database)
    for table in names:
        check_state(system, table, table_state(dsn, table), ctx["expected"][table])
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{database}"')
    events = args.events
    result["rate"] = events / result["wall"]
    after = events - result["first_events"]
    # NaN when the first commit held every event (a run too small to have a steady part)
    result["rate_after_first"] = after / result["after_first_s"] if after else float("nan")
    result["cpu_per_event"] = result["cpu"] / events
    return result


def summarise(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """Print the per-run lines, the medians and the ratios against the targets."""
    keys = (
        "rate", "rate_after_first", "cpu", "cpu_per_event", "pg_cpu", "broker_cpu", "rss_mb",
        "startup", "transactions",
    )  # fmt: skip
    medians = {
        s: {k: statistics.median(r[k] for r in runs) for k in keys} for s, runs in results.items()
    }
    header = (
        f"{'system':<10}{'events/s':>10}{'after 1st':>11}{'client CPU s':>14}{'µs/event':>10}"
        f"{'PG CPU s':>10}{'Tansu CPU s':>13}{'peak RSS MB':>13}{'start-up s':>12}"
        f"{'PG commits':>12}"
    )

    def line(name: str, m: dict[str, float]) -> str:
        return (
            f"{name:<10}{m['rate']:>10.0f}{m['rate_after_first']:>11.0f}{m['cpu']:>14.2f}"
            f"{m['cpu_per_event'] * 1e6:>10.1f}{m['pg_cpu']:>10.2f}"
            f"{m['broker_cpu']:>13.2f}{m['rss_mb']:>13.0f}"
            f"{m['startup']:>12.2f}{m['transactions']:>12.0f}"
        )

    print("\nper run (in order):")
    print(header)
    for index in range(args.runs):
        for system in args.systems:
            print(line(f"{system}#{index + 1}", results[system][index]))
    variant = "with the schema block" if args.schema_block else "schemaless"
    print(
        f"\nmedian of {args.runs} ({args.events} events, {args.keys} keys, {args.tables} "
        f"table(s) x {args.partitions} partitions, {variant}):"
    )
    print(header)
    for system in args.systems:
        print(line(system, medians[system]))
    if len(args.systems) < 2:
        print(f"{args.systems[0]}'s tables equaled the expected state after every run")
        return
    mine, theirs = medians["cdcflow"], medians["loop"]
    print("\ncdcflow / loop (issue 12 targets):")
    for label, metric, bound, kind in TARGETS:
        ratio = mine[metric] / theirs[metric] if theirs[metric] else float("nan")
        met = ratio <= bound if kind == "max" else ratio >= bound
        sign = "<=" if kind == "max" else ">="
        print(
            f"  {label:<28}{ratio:>6.2f}x  (target {sign} {bound}x: {'met' if met else 'NOT met'})"
        )
    print(f"  {'events/s end to end':<28}{mine['rate'] / theirs['rate']:>6.2f}x")
    rss_ok = "met" if mine["rss_mb"] < 400 else "NOT met"
    start_ok = "met" if mine["startup"] < 1.5 else "NOT met"
    print(f"  {'cdcflow peak RSS':<28}{mine['rss_mb']:>6.0f} MB (target < 400 MB: {rss_ok})")
    startup = f"{mine['startup']:>6.2f} s  (target < 1.5 s: {start_ok})"
    print(f"  {'cdcflow start-up to 1st write':<28}{startup}")
    runs = args.runs
    print(f"both systems' tables equaled the expected state after every run ({runs} x 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3, help="per topic")
    parser.add_argument("--tables", type=int, default=1, help="tables, one topic each")
    parser.add_argument(
        "--systems",
        type=lambda text: [s for s in ("loop", "cdcflow") if s in text.split(",")],
        default=["loop", "cdcflow"],
        help="comma-separated: loop, cdcflow (default both)",
    )
    parser.add_argument(
        "--consumer-config",
        action="append",
        type=lambda text: tuple(text.split("=", 1)),
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting for cdcflow's source consumer_config (repeatable)",
    )
    parser.add_argument("--batch", type=int, default=10_000, help="max records per batch (both)")
    parser.add_argument("--runs", type=int, default=3, help="0: only the --profile run")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--schema-block", action="store_true", help="wrap keys and values")
    parser.add_argument("--profile", type=Path, help="py-spy raw output of one extra cdcflow run")
    parser.add_argument(
        "--profile-gil", action="store_true", help="sample only the thread holding the GIL"
    )
    args = parser.parse_args()
    if not args.systems:
        parser.error("--systems names neither loop nor cdcflow")
    if args.tables < 1 or args.tables > 100:
        parser.error(f"--tables must be 1..100 (got {args.tables})")

    started = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="cdcflow-hotpath-"))
    workload = generate(
        args.events, args.keys, args.partitions, args.schema_block, args.seed, args.tables
    )
    sizes = workload.per_partition(args.partitions)
    size = sum(len(v) for _, _, _, v in workload.messages) / args.events
    shown = (
        list(sizes.values())
        if len(sizes) <= 12
        else f"{min(sizes.values())}..{max(sizes.values())} events each"
    )
    print(
        f"generated {args.events} events ({workload.counts}), {args.keys} keys, {args.tables} "
        f"table(s) x {args.partitions} partitions {shown}, {size:.0f} bytes/value, "
        f"{len(workload.live)} live rows at the end"
    )
    try:
        with kafka_and_postgres(work_dir) as (bootstrap, pg):
            produce_workload(bootstrap, workload, args.partitions)
            ctx = {
                "pg": pg,
                "pg_root": postmaster_pid(pg),
                "broker_pid": broker_pid(bootstrap),
                "bootstrap": bootstrap,
                "work": work_dir,
                "sizes": sizes,
                "expected": expected_state(workload, SALT, args.schema_block),
            }
            del workload
            results: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
            for index in range(args.runs):
                for system in args.systems:
                    result = run_once(system, index, args, ctx)
                    results[system].append(result)
                    print(
                        f"run {index + 1} {system}: {result['rate']:.0f} events/s, "
                        f"{result['cpu']:.2f} CPU s, PG {result['pg_cpu']:.2f} s, "
                        f"{result['rss_mb']:.0f} MB, {result['transactions']} PG commits",
                        flush=True,
                    )
            if args.runs:
                summarise(results, args)
            if args.profile:
                run_once("cdcflow", -1, args, ctx)
                print(f"py-spy profile of one more cdcflow run: {args.profile}")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"total benchmark time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
