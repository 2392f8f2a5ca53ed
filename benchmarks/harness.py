"""Measurement helpers shared by the benchmark scripts in this folder (not part of the tests).

:class:`Stopwatch` times a block of this process (wall and CPU seconds), :func:`peak_rss_mb`
is this process's peak RSS and :func:`proc_memory_mb` reads a memory field of another process
from ``/proc``. For the Kafka -> PostgreSQL benchmarks, :func:`kafka_and_postgres` starts the
tests' Tansu broker and PostgreSQL server, :func:`kafka_postgres_pipeline` writes a pipeline
file and :func:`table_state` reads the target table back for the final-state check.

The scripts put the repository on ``sys.path`` before they call the helpers that import
``tests.servers`` (those imports are made on use, so the in-process benchmarks need no server
packages).
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tests.servers.postgres import PostgresServer


class Stopwatch:
    """Wall-clock and CPU seconds (user + system, every thread) of this process in a block.

    ``with Stopwatch(collect=True) as watch: ...`` runs a full garbage collection first, so
    garbage of the set-up is not collected inside the measured block.
    """

    def __init__(self, collect: bool = False) -> None:
        self.collect = collect
        self.wall = 0.0
        self.cpu = 0.0
        self._wall0 = self._cpu0 = 0.0

    def __enter__(self) -> Stopwatch:
        if self.collect:
            gc.collect()
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB (``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_memory_mb(pid: int, field: str) -> float | None:
    """A memory field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``...) in MB.

    None when the process has gone or has no such field.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def kafka_and_postgres(work: Path) -> Iterator[tuple[str, PostgresServer]]:
    """A Tansu broker (data in ``work``) and a PostgreSQL server; yields ``(bootstrap, pg)``.

    Both are stopped, and the PostgreSQL cluster removed, when the block ends.
    """
    import tempfile

    from tests.servers.postgres import PostgresServer
    from tests.servers.tansu import start_broker

    broker, bootstrap = start_broker(work)
    try:
        pg = PostgresServer(Path(tempfile.mkdtemp(prefix="cdcflow-pg-")), work)
        pg.init()
        pg.start()
        try:
            yield bootstrap, pg
        finally:
            pg.stop()
            pg.remove()
    finally:
        broker.stop()


def kafka_postgres_pipeline(
    work: Path,
    name: str,
    bootstrap: str,
    topic: str,
    dsn: str,
    batch: int,
    group_id: str | None = None,
    engine: dict[str, Any] | None = None,
) -> Path:
    """Write ``<work>/<name>.yaml``: ``type: kafka`` (from the earliest offset) -> ``postgres``.

    The sink is named ``wh`` (upsert mode); dead letters go to ``<work>/<name>-dead.jsonl``.
    """
    document: dict[str, Any] = {
        "pipeline": name,
        "source": {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": group_id or f"bench-{name}",
            "start": "earliest",
            "max_batch_size": batch,
        },
        "sinks": [{"name": "wh", "type": "postgres", "dsn": dsn}],
        "dead_letter": {"type": "file", "path": str(work / f"{name}-dead.jsonl")},
    }
    if engine:
        document["engine"] = engine
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def table_state(dsn: str, table: str) -> dict[Any, tuple[Any, ...]]:
    """``{id: (name, qty, price)}`` of a table of the generated changelog."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT id, name, qty, price FROM {table}").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}
