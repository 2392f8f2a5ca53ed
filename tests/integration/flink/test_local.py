"""``cdcflow run --engine flink``: the same pipeline on a local Flink mini cluster."""

from __future__ import annotations

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
from tests.servers.tansu import create_topic

pytestmark = pytest.mark.integration


def test_run_until_caught_up_on_a_local_mini_cluster_with_parallelism_two(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_broker, topic_name, partitions=3)
    changes = change_stream(300, keys=25)
    produce_changes(kafka_broker, topic_name, changes)
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-local", kafka_broker, topic_name, pg_database,
        flink_venv, flink={"parallelism": 2},
    )
    result = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "local Flink mini cluster" in result.stdout
    assert mirror_state(pg_database) == expected_state(changes)
    assert history_count(pg_database) == 300
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
