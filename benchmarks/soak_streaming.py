"""Soak run: streaming Kafka -> redact (e-mail HMAC) -> PostgreSQL for a long time.

Starts a Tansu broker and a PostgreSQL server (the test fixtures' classes, on free ports), then
``cdcflow run PIPELINE.yaml`` (streaming, no ``--until-caught-up``) in a subprocess with the
streaming epoch at its default (10 minutes) unless ``--epoch-s`` says otherwise. While it runs, a
producer thread writes ``--rate`` schemaless Debezium events per second (creates, updates and
deletes over ``--keys`` ids, seeded) to a two-partition topic. Every ``--sample-s`` seconds
(default 60) the script samples the cdcflow process: RSS (``VmRSS``), CPU share since the
previous sample (user + system, all threads, of one core), events produced, and the lag (events
produced minus the offsets the sink has stored).

After ``--minutes`` the producer stops; the script waits until the sink's stored offsets reach
the end, sends SIGTERM, expects exit code 0 (``stop_s``: seconds from the signal to the exit;
the tests do not time it), and checks the mirror exactly against the final
state computed here (each row's name, qty, price, and the e-mail as the HMAC-SHA256 hex of the
clear address under the pipeline's key, computed with :mod:`hmac`). It prints one line per
sample and a JSON summary; ``--out FILE`` also writes the samples as JSON.

Run (the numbers in docs/kafka.md):
``.venv/bin/python benchmarks/soak_streaming.py --minutes 45 --rate 2000 --out soak.json``.
Not part of the test suite (``tests/integration/kafka/test_kafka_soak.py`` is the short variant).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from harness import kafka_and_postgres, proc_memory_mb  # noqa: E402

from tests.servers.tansu import create_topic  # noqa: E402

TOPIC = "shop.public.people"
PARTITIONS = 2
KEY = "soak-benchmark-hmac-key-0123456789"


class Changes:
    """A seeded stream of Debezium events over ``keys`` ids and the final state it implies."""

    def __init__(self, keys: int, seed: int = 11) -> None:
        self.keys = keys
        self.rng = random.Random(seed)
        #: id -> (name, qty, price text, clear e-mail) of the live rows.
        self.live: dict[int, tuple[str, int, str, str]] = {}
        self.count = 0

    def next(self) -> tuple[bytes, bytes]:
        """The next ``(key, value)`` message."""
        self.count += 1
        ident = self.rng.randrange(1, self.keys + 1)
        before = self.live.get(ident)
        if before is not None and self.rng.random() < 0.05:
            op, after = "d", None
            del self.live[ident]
        else:
            op = "u" if before is not None else "c"
            qty = self.rng.randrange(0, 1000)
            after = (f"name-{ident}-{self.count}", qty, f"{qty * 3}.{self.count % 100:02d}",
                     f"user{ident}.{self.count}@example.com")
            self.live[ident] = after
        envelope = {
            "before": _row(ident, before),
            "after": _row(ident, after),
            "source": {"connector": "postgresql", "name": "shop", "db": "shop",
                       "schema": "public", "table": "people", "ts_ms": 1_700_000_000_000},
            "op": op,
            "ts_ms": 1_700_000_000_000 + self.count,
        }
        return json.dumps({"id": ident}).encode(), json.dumps(envelope).encode()


def _row(ident: int, values: tuple[str, int, str, str] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    name, qty, price, email = values
    return {"id": ident, "name": name, "qty": qty, "price": price, "email": email}


class Producer(threading.Thread):
    """Produces ``rate`` events per second until stopped; counts deliveries."""

    def __init__(self, bootstrap: str, changes: Changes, rate: int) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Producer as KafkaProducer

        self.producer = KafkaProducer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                                       "enable.idempotence": True})
        self.changes = changes
        self.rate = rate
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        tick = 0.1
        per_tick = max(1, round(self.rate * tick))
        started = time.monotonic()
        ticks = 0
        while not self.stopping.is_set():
            with self.lock:
                for _ in range(per_tick):
                    key, value = self.changes.next()
                    self._send(key, value)
            self.producer.poll(0)
            ticks += 1
            pause = started + ticks * tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        if self.producer.flush(60):
            self.errors.append("messages left undelivered after 60 s")
        del self.producer  # no reconnect attempts (log lines) once the broker is stopped

    def _send(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(TOPIC, key=key, value=value, on_delivery=self._delivered)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))


def _pipeline(work: Path, bootstrap: str, dsn: str) -> Path:
    document = {
        "pipeline": "soak",
        "source": {"type": "kafka", "bootstrap_servers": bootstrap, "topics": [TOPIC],
                   "group_id": "soak", "start": "earliest", "format": "debezium-json"},
        "transforms": [{"type": "redact", "key": KEY, "rules": [
            {"table": "shop.public.people", "columns": ["email"], "strategy": "hmac-sha256"}]}],
        "sinks": [{"name": "wh", "type": "postgres", "dsn": dsn}],
        "dead_letter": {"type": "file", "path": str(work / "soak-dead.jsonl")},
    }
    path = work / "soak.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stored_offsets(dsn: str) -> int:
    """Events the sink has stored positions for (sum of next offsets over partitions)."""
    import psycopg

    try:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute('SELECT "offset" FROM cdcflow_offsets').fetchall()
    except psycopg.Error:
        return 0
    return sum(int(r[0]) + 1 for r in rows)


def _mirror(dsn: str) -> dict[int, tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, name, qty, price, email FROM people").fetchall()
    return {int(r[0]): (r[1], int(r[2]), str(r[3]), r[4]) for r in rows}


def _expected(changes: Changes) -> dict[int, tuple[Any, ...]]:
    def digest(email: str) -> str:
        return hmac.new(KEY.encode(), email.encode(), hashlib.sha256).hexdigest()

    return {i: (n, q, p, digest(e)) for i, (n, q, p, e) in changes.live.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--epoch-s", type=float, default=None,
                        help="CDCFLOW_STREAMING_EPOCH_S (default: cdcflow's own, 600)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cdcflow-soak-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if args.epoch_s is not None:
        env["CDCFLOW_STREAMING_EPOCH_S"] = str(args.epoch_s)
    samples: list[dict[str, Any]] = []
    with kafka_and_postgres(work) as (bootstrap, pg):
        dsn = pg.create_database("soak")
        create_topic(bootstrap, TOPIC, partitions=PARTITIONS)
        changes = Changes(args.keys)
        producer = Producer(bootstrap, changes, args.rate)
        producer.start()
        log = (work / "cdcflow.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-c", "from cdcflow.cli.app import main; main()",
             "--log-level", "info", "run", str(_pipeline(work, bootstrap, dsn))],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=env,
        )
        started = time.monotonic()
        last_cpu, last_t = 0.0, started
        try:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(min(args.sample_s, max(0.0, started + args.minutes * 60
                                                  - time.monotonic())))
                if process.poll() is not None:
                    raise RuntimeError(f"cdcflow exited {process.returncode} early; see {log.name}")
                now, cpu = time.monotonic(), _cpu_seconds(process.pid)
                with producer.lock:
                    produced = changes.count
                sample = {
                    "minute": round((now - started) / 60, 1),
                    "rss_mb": round(proc_memory_mb(process.pid, "VmRSS") or 0, 1),
                    "cpu_pct": round(100 * (cpu - last_cpu) / (now - last_t), 1),
                    "produced": produced,
                    "lag": produced - _stored_offsets(dsn),
                }
                last_cpu, last_t = cpu, now
                samples.append(sample)
                print(json.dumps(sample), flush=True)
            producer.stopping.set()
            producer.join()
            produced = changes.count
            deadline = time.monotonic() + 300
            while _stored_offsets(dsn) < produced and time.monotonic() < deadline:
                time.sleep(1)
            caught_up = _stored_offsets(dsn) >= produced
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=120)
            stop_s = time.monotonic() - stopping
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        errors = (work / "cdcflow.log").read_text()
        restarts = errors.count("streaming epoch ")
        mirror_exact = _mirror(dsn) == _expected(changes)
    summary = {
        "minutes": args.minutes, "rate": args.rate, "produced": produced,
        "producer_errors": producer.errors[:3], "exit_code": process.returncode,
        "epoch_restarts": restarts, "stop_s": round(stop_s, 2), "caught_up": caught_up,
        "mirror_exact": mirror_exact,
        "rss_first_mb": samples[0]["rss_mb"] if samples else None,
        "rss_last_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_max_mb": max((s["rss_mb"] for s in samples), default=None),
        "summary_lines": out.strip().splitlines()[-6:],
        "log": str(work / "cdcflow.log"),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"samples": samples, "summary": summary}, indent=2))
    ok = process.returncode == 0 and caught_up and mirror_exact and not producer.errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
