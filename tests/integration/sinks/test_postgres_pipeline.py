"""PostgreSQL sinks through ``cdcflow validate`` / ``cdcflow run`` with the file source, and
fan-out: several sinks at different positions resume together."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.integration.sinks.events import Changelog, generate_changelog, run_cli

pytestmark = pytest.mark.integration


def _pipeline(directory: Path, sinks: list[dict[str, Any]], name: str = "items-cdc") -> Path:
    config = {
        "pipeline": name,
        "source": {
            "type": "file",
            "path": "items.jsonl",
            "key_separator": "\t",
            "batch_size": 500,
        },
        "sinks": sinks,
        "dead_letter": {"type": "file", "path": "dead.jsonl"},
    }
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _mirror(dsn: str, table: str = "items") -> dict[int, tuple[str, int, str]]:
    with psycopg.connect(dsn) as conn:
        return {
            row[0]: (row[1], row[2], f"{row[3]:.2f}")
            for row in conn.execute(f"SELECT id, name, qty, price FROM {table}")
        }


def _history(dsn: str, table: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        return [
            (row[0], row[1])
            for row in conn.execute(f"SELECT _cdc_op, id FROM {table} ORDER BY _cdc_offset")
        ]


def _offsets(dsn: str, *schemas: str) -> dict[str, int]:
    found: dict[str, int] = {}
    with psycopg.connect(dsn) as conn:
        for schema in schemas or ("public",):
            rows = conn.execute(f'SELECT sink, "offset" FROM {schema}.cdcflow_offsets').fetchall()
            found.update(dict(rows))
    return found


def _write(directory: Path, log: Changelog, upto: int) -> None:
    (directory / "items.jsonl").write_text("".join(f"{k}\t{v}\n" for k, v in log.messages[:upto]))


def test_run_mirror_and_history_then_rerun_changes_nothing(
    tmp_path: Path, pg_database: str
) -> None:
    log = generate_changelog(3000, 400, seed=11)
    _write(tmp_path, log, len(log.messages))
    pipeline = _pipeline(
        tmp_path,
        [
            {"name": "mirror", "type": "postgres", "dsn": pg_database, "tables": "shop.public.*"},
            {
                "name": "history",
                "type": "postgres",
                "dsn": pg_database,
                "mode": "append",
                "table_map": {"shop.public.items": "items_history"},
            },
        ],
    )
    validated = run_cli("validate", str(pipeline))
    assert validated.returncode == 0, validated.stderr
    assert "is valid (2 sinks" in validated.stdout
    first = run_cli("run", str(pipeline))
    assert first.returncode == 0, first.stderr
    assert "sink 'mirror': PostgreSQL" in first.stdout
    assert f"items: {len(log.final)} rows" in first.stdout
    assert _mirror(pg_database) == log.final
    assert _history(pg_database, "items_history") == log.ops
    assert _offsets(pg_database) == {"mirror": 2999, "history": 2999}
    with psycopg.connect(pg_database) as conn:
        price_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'items'::regclass AND attname = 'price'"
        ).fetchone()
        ts = conn.execute("SELECT pg_typeof(updated_at)::text FROM items LIMIT 1").fetchone()
    assert price_type == ("numeric(12,2)",)
    assert ts == ("timestamp without time zone",)
    again = run_cli("run", str(pipeline))
    assert again.returncode == 0, again.stderr
    assert _mirror(pg_database) == log.final
    assert _history(pg_database, "items_history") == log.ops
    assert not (tmp_path / "dead.jsonl").exists() or (tmp_path / "dead.jsonl").read_text() == ""


def test_fan_out_resumes_from_the_lowest_position_and_each_sink_skips(
    tmp_path: Path, pg_database: str
) -> None:
    log = generate_changelog(2400, 300, seed=5)

    def mirror(schema: str) -> dict[str, Any]:
        return {"name": schema, "type": "postgres", "dsn": pg_database, "schema": schema}

    def history(schema: str) -> dict[str, Any]:
        """An append-mode sink ``<schema>_hist`` into ``<schema>.history``."""
        return {
            **mirror(schema),
            "name": f"{schema}_hist",
            "mode": "append",
            "table_map": {"shop.public.items": "history"},
        }

    a_mirror, a_history, b_mirror, b_history = mirror("a"), history("a"), mirror("b"), history("b")
    # 1. every sink writes the first 600 events
    _write(tmp_path, log, 600)
    run = run_cli("run", str(_pipeline(tmp_path, [a_mirror, a_history, b_mirror, b_history])))
    assert run.returncode == 0, run.stderr
    # 2. only the "a" sinks see up to 1500
    _write(tmp_path, log, 1500)
    run = run_cli("run", str(_pipeline(tmp_path, [a_mirror, a_history])))
    assert run.returncode == 0, run.stderr
    assert _offsets(pg_database, "a", "b") == {"a": 1499, "a_hist": 1499, "b": 599, "b_hist": 599}
    # 3. all sinks again, over everything: the source restarts at 600, "a" skips up to 1499
    _write(tmp_path, log, len(log.messages))
    run = run_cli("run", str(_pipeline(tmp_path, [a_mirror, a_history, b_mirror, b_history])))
    assert run.returncode == 0, run.stderr
    assert "records read: 1800" in run.stdout  # resumed at 600, the lowest position
    assert _offsets(pg_database, "a", "b") == {"a": 2399, "a_hist": 2399, "b": 2399, "b_hist": 2399}
    for schema in ("a", "b"):
        assert _mirror(pg_database, f"{schema}.items") == log.final
        assert _history(pg_database, f"{schema}.history") == log.ops


def test_validate_reports_an_unreachable_server_and_a_missing_timescaledb(
    tmp_path: Path, pg_database: str
) -> None:
    (tmp_path / "items.jsonl").write_text("")
    pipeline = _pipeline(
        tmp_path,
        [
            {"name": "ts", "type": "postgres", "dsn": pg_database, "mode": "timescaledb"},
            {
                "name": "gone",
                "type": "postgres",
                "dsn": "postgresql://u:hunter2@127.0.0.1:1/db",
                "connect_timeout_s": 2,
            },
        ],
    )
    result = run_cli("validate", str(pipeline))
    assert result.returncode == 1
    assert "sink 'ts': mode 'timescaledb' needs the TimescaleDB extension" in result.stderr
    assert "sink 'gone': cannot connect to PostgreSQL at 127.0.0.1:1/db" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    run = run_cli("run", str(pipeline))
    assert run.returncode == 1
    assert "TimescaleDB extension" in run.stderr


def test_persistent_transient_failure_stops_the_run_with_nothing_committed(
    tmp_path: Path, pg_database: str
) -> None:
    log = generate_changelog(1200, 200, seed=9)
    _write(tmp_path, log, 600)
    sink = {
        "name": "mirror",
        "type": "postgres",
        "dsn": pg_database + "?options=-c%20lock_timeout%3D100",
        "retry": {"max_attempts": 3, "initial_backoff_s": 0.05},
    }
    pipeline = _pipeline(tmp_path, [sink])
    assert run_cli("run", str(pipeline)).returncode == 0
    _write(tmp_path, log, len(log.messages))
    with psycopg.connect(pg_database) as blocker:
        blocker.execute("SELECT * FROM cdcflow_offsets FOR UPDATE")  # held until the end
        failed = run_cli("run", str(pipeline))
        assert failed.returncode == 1
        assert "sink 'mirror': write of items.jsonl/0 up to offset" in failed.stderr
        assert "giving up after 3 attempts" in failed.stderr
        assert "LockNotAvailable" in failed.stderr
    assert _offsets(pg_database) == {"mirror": 599}
    expected_then = generate_changelog(600, 200, seed=9).final
    assert _mirror(pg_database) == expected_then
    resumed = run_cli("run", str(pipeline))
    assert resumed.returncode == 0, resumed.stderr
    assert _mirror(pg_database) == log.final


def test_connections_killed_mid_run_are_retried_and_the_result_is_exact(
    tmp_path: Path, pg_database: str
) -> None:
    log = generate_changelog(20_000, 2_000, seed=13)
    _write(tmp_path, log, len(log.messages))
    retry = {"max_attempts": 10, "initial_backoff_s": 0.05, "max_backoff_s": 0.5}
    pipeline = _pipeline(
        tmp_path,
        [
            {"name": "mirror", "type": "postgres", "dsn": pg_database, "retry": retry},
            {
                "name": "history",
                "type": "postgres",
                "dsn": pg_database,
                "mode": "append",
                "table_map": {"shop.public.items": "items_history"},
                "retry": retry,
            },
        ],
    )
    text = pipeline.read_text().replace("batch_size: 500", "batch_size: 100")
    pipeline.write_text(text)
    killed: list[int] = []
    done = threading.Event()

    def terminate_backends() -> None:
        with psycopg.connect(pg_database, autocommit=True) as admin:
            while not done.is_set() and len(killed) < 6:
                time.sleep(0.25)
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'cdcflow:items-cdc:%%'"
                ).fetchall()
                killed.extend(1 for (ok,) in rows if ok)

    killer = threading.Thread(target=terminate_backends)
    killer.start()
    try:
        result = run_cli("--log-level", "warning", "run", str(pipeline))
    finally:
        done.set()
        killer.join()
    assert result.returncode == 0, result.stderr
    assert killed, "no backend was terminated while the pipeline ran"
    assert "transient failure" in result.stderr  # the retries are logged
    assert _mirror(pg_database) == log.final
    assert _history(pg_database, "items_history") == log.ops
