"""``type: python`` steps on the Flink engine (local mini cluster): function and EventStep class.

The steps live in ``tests.unit.plugins.steps`` and reach the Flink workers' Python through
PYTHONPATH (the repository root), as a user's module on PYTHONPATH would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.console import REPO
from tests.integration.flink.conftest import (
    cdcflow,
    change_stream,
    expected_state,
    produce_changes,
    query,
    write_pipeline,
)
from tests.servers.flink import FlinkVenv
from tests.servers.tansu import create_topic

pytestmark = pytest.mark.integration


def test_function_and_class_steps_run_on_the_flink_engine(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    create_topic(kafka_broker, topic_name, partitions=1)
    changes = change_stream(40, keys=8)
    produce_changes(kafka_broker, topic_name, changes)
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-python-step", kafka_broker, topic_name, pg_database,
        flink_venv,
    )
    document = yaml.safe_load(pipeline.read_text())
    document["transforms"] = [
        {"type": "python", "function": "tests.unit.plugins.steps:add_region",
         "options": {"region": "on-flink"}},
        {"type": "python", "function": "tests.unit.plugins.steps:Upper",
         "options": {"column": "note"}},
    ]
    document["sinks"] = document["sinks"][:1]  # the mirror
    pipeline.write_text(yaml.safe_dump(document, sort_keys=False))
    validated = cdcflow(flink_venv, "validate", str(pipeline))
    assert validated.returncode == 0, validated.stderr[-3000:]
    result = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {
        ident: (qty, note.upper()) for ident, (qty, note) in expected_state(changes).items()
    }
    rows = query(pg_database, "SELECT id, qty, note, region FROM orders")
    assert {r[0]: (r[1], r[2]) for r in rows} == expected
    assert {r[3] for r in rows} == {"on-flink"}


def test_an_entry_point_step_from_an_installed_package_runs_on_the_flink_engine(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """examples/custom-transform's plugin, installed (pip --target) and put on PYTHONPATH."""
    target = tmp_path / "plugin"
    installed = subprocess.run(
        [str(flink_venv.python), "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(REPO / "examples" / "custom-transform" / "plugin")],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    monkeypatch.setenv("PYTHONPATH", str(target))
    create_topic(kafka_broker, topic_name, partitions=1)
    changes = change_stream(20, keys=5)
    produce_changes(kafka_broker, topic_name, changes)
    pipeline = write_pipeline(
        tmp_path / "pipeline.yaml", "flink-plugin-step", kafka_broker, topic_name, pg_database,
        flink_venv,
    )
    document = yaml.safe_load(pipeline.read_text())
    document["transforms"] = [{"type": "drop_table", "tables": "shop.public.orders"}]
    document["sinks"] = document["sinks"][:1]
    pipeline.write_text(yaml.safe_dump(document, sort_keys=False))
    result = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    assert query(pg_database, "SELECT count(*) FROM orders") in ([], [(0,)])  # all dropped
    positions = query(pg_database, 'SELECT "offset" FROM cdcflow_offsets')
    assert positions == [(19,)]  # the dropped events' offsets are still covered
