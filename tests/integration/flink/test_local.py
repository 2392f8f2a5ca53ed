"""``cdcflow run --engine flink``: the same pipeline on a local Flink mini cluster."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.integration.flink.conftest import (
    cdcflow,
    change_stream,
    expected_state,
    history_count,
    mirror_state,
    produce_changes,
    query,
    write_pipeline,
)
from tests.servers.flink import FlinkVenv
from tests.servers.tansu import create_topic, produce

pytestmark = pytest.mark.integration


def test_run_until_caught_up_on_a_local_mini_cluster_with_parallelism_two(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_broker, topic_name, partitions=3)
    changes = change_stream(300, keys=25)
    produce_changes(kafka_broker, topic_name, changes[:150])
    produce(kafka_broker, topic_name, [(b'{"id": 3}', b'{"op": "c", "after": {"id": 3')])
    produce_changes(kafka_broker, topic_name, changes[150:])
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-local", kafka_broker, topic_name, pg_database,
        flink_venv, flink={"parallelism": 2},
    )
    result = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "local Flink mini cluster" in result.stdout
    assert mirror_state(pg_database) == expected_state(changes)
    assert history_count(pg_database) == 300
    # The undecodable record went to the configured dead-letter sink with its original bytes.
    dead = (tmp_path / "dead-letters.jsonl").read_text().splitlines()
    letters = [json.loads(line) for line in dead]
    assert len(letters) == 1
    assert letters[0]["step"] == "decode"
    assert base64.b64decode(letters[0]["value_b64"]) == b'{"op": "c", "after": {"id": 3'
    positions = query(
        pg_database,
        "SELECT sink, stream, partition, \"offset\" FROM cdcflow_offsets ORDER BY 1, 3",
    )
    assert {(row[0], row[2]) for row in positions} == {
        (sink, str(p)) for sink in ("history", "mirror") for p in range(3)
    }
    # Every partition's last record is stored as that partition's position.
    per_partition = query(
        pg_database,
        "SELECT _cdc_partition, max(_cdc_offset) FROM orders_history GROUP BY 1",
    )
    assert {(str(p), o) for p, o in per_partition} == {(row[2], row[3]) for row in positions}

    # A second run resumes from the sinks' positions: nothing new, nothing duplicated.
    again = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert again.returncode == 0, again.stderr[-3000:]
    assert history_count(pg_database) == 300


def test_flinks_plan_keeps_each_partition_on_one_subtask(
    flink_venv: FlinkVenv, tmp_path: Path
) -> None:
    # The job forwards window batches to the writers without a key_by only when Flink's
    # plan hashes by (topic, partition); this pins that on the installed Flink version.
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-explain", "127.0.0.1:9", "shop.orders",
        "postgresql://x@127.0.0.1:1/x", flink_venv,
    )
    script = f"""
from pyflink.table import EnvironmentSettings, TableEnvironment
from cdcflow.flink.plan import (
    TopicSpec, batch_query_sql, partitioned_by_partition, prepare_job, source_table_ddl)
from cdcflow.pipelines.config import load_pipeline
spec = prepare_job(load_pipeline({str(pipeline)!r}), connect=False)
t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
t_env.get_config().set("pipeline.jars", ";".join(spec.jars))
for name, topic in (("a", "x"), ("b", "y")):
    t_env.execute_sql(source_table_ddl(name, TopicSpec(topic, {{0: 0}}), spec))
print("HASHED", partitioned_by_partition(t_env.explain_sql(batch_query_sql(["a", "b"], 200)), 2))
"""
    import subprocess

    result = subprocess.run(
        [str(flink_venv.python), "-c", script], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HASHED True" in result.stdout


def test_streaming_run_stops_cleanly_on_sigterm_and_resumes(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess

    from tests.integration.flink.conftest import wait_for

    create_topic(kafka_broker, topic_name, partitions=1)
    first, second = change_stream(40, keys=10), change_stream(40, keys=10, start=40)
    produce_changes(kafka_broker, topic_name, first)
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-stream", kafka_broker, topic_name, pg_database,
        flink_venv,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDCFLOW_FLINK")}
    process = subprocess.Popen(
        [str(flink_venv.cdcflow), "run", str(pipeline), "--engine", "flink"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        wait_for(lambda: history_count(pg_database) == 40, 120,
                 lambda: f"history {history_count(pg_database)} of 40")
        produce_changes(kafka_broker, topic_name, second)  # arrives while streaming
        wait_for(lambda: history_count(pg_database) == 80, 60,
                 lambda: f"history {history_count(pg_database)} of 80")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, err[-3000:]
    assert "interrupted: cancelling the job" in err
    assert "stopped after" in out
    assert mirror_state(pg_database) == expected_state(first + second)
    again = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert again.returncode == 0, again.stderr[-3000:]
    assert history_count(pg_database) == 80


def test_redaction_runs_on_the_flink_engine(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path
) -> None:
    # The same redact transform as on Beam, in the Flink Python operator; its counters go to
    # the operator's metric group (created on first use), which must not break the job.
    import yaml

    create_topic(kafka_broker, topic_name, partitions=1)
    changes = change_stream(40, keys=10)
    produce_changes(kafka_broker, topic_name, changes)
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-redact", kafka_broker, topic_name, pg_database,
        flink_venv,
    )
    document = yaml.safe_load(pipeline.read_text())
    document["transforms"] = [
        {
            "type": "redact",
            "rules": [
                {"table": "shop.public.orders", "columns": ["note"], "strategy": "redact"}
            ],
        }
    ]
    pipeline.write_text(yaml.safe_dump(document, sort_keys=False))
    result = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = expected_state(changes)
    mirror = mirror_state(pg_database)
    assert {k: qty for k, (qty, _) in mirror.items()} == {k: q for k, (q, _) in expected.items()}
    notes = {row[0] for row in query(pg_database, "SELECT DISTINCT note FROM orders")}
    assert notes == {"[REDACTED]"}
    assert history_count(pg_database) == 40
