"""``cdcflow run --engine flink`` as a newcomer uses it: default jars, a sink added later, a plugin.

* The pipeline files here have no ``engine.flink.jars``: the jars ``make venv-flink`` put in
  ``.venv-flink/jars/`` are found by default (the README's command works as printed).
* A sink added to a pipeline that already ran is backfilled from ``start:`` while the old sink
  skips what it has (no duplicate in its append table); the run summary reports the records
  read and the dead letters, as on Beam.
* A custom transform installed with ``pip install -e`` (a real package made in a temporary
  directory, installed into the Flink environment and removed afterwards) runs on Flink; and
  when its module cannot be imported the run fails fast with the Python error in its message.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.flink.conftest import (
    cdcflow,
    change_stream,
    expected_state,
    history_count,
    mirror_state,
    produce_changes,
    query,
)
from tests.servers.flink import FlinkVenv
from tests.servers.tansu import create_topic, produce

pytestmark = pytest.mark.integration

PLUGIN = "cdcflow-upper-note-test"


def _pipeline(
    path: Path,
    name: str,
    bootstrap: str,
    topic: str,
    sinks: list[dict[str, Any]],
    transforms: list[dict[str, Any]] | None = None,
    flink: dict[str, Any] | None = None,
) -> Path:
    document: dict[str, Any] = {
        "pipeline": name,
        "source": {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": f"{name}-group",
        },
        "transforms": transforms or [],
        "sinks": sinks,
        "dead_letter": {"type": "file", "path": "dead-letters.jsonl"},
        # no jars: they come from .venv-flink/jars/
        "engine": {"flink": {"checkpoint_interval_ms": 1000, **(flink or {})}},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _summary(stdout: str, label: str) -> int:
    for line in stdout.splitlines():
        if line.strip().startswith(f"{label}:"):
            return int(line.split(":", 1)[1].split()[0])
    raise AssertionError(f"no {label!r} line in:\n{stdout}")


def test_a_sink_added_later_is_backfilled_on_flink_with_default_jars(
    flink_venv: FlinkVenv, kafka_broker: str, pg_database: str, topic_name: str, tmp_path: Path
) -> None:
    create_topic(kafka_broker, topic_name, partitions=2)
    changes = change_stream(120, keys=30)
    produce_changes(kafka_broker, topic_name, changes[:80])
    produce(kafka_broker, topic_name, [(b'{"id": 1}', b"not json")])
    history = {
        "name": "history",
        "type": "postgres",
        "dsn": pg_database,
        "mode": "append",
        "table_map": {"shop.public.orders": "orders_history"},
    }
    first = _pipeline(tmp_path / "one.yaml", "flink-add", kafka_broker, topic_name, [history])
    result = cdcflow(flink_venv, "run", str(first), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    assert history_count(pg_database) == 80
    assert _summary(result.stdout, "records read") == 81
    assert _summary(result.stdout, "dead letters this run") == 1
    assert _summary(result.stdout, "dead letters") == 1  # the file's line count
    assert _summary(result.stdout, "events written to history") == 80

    produce_changes(kafka_broker, topic_name, changes[80:])
    mirror = {"name": "mirror", "type": "postgres", "dsn": pg_database}
    second = _pipeline(
        tmp_path / "two.yaml", "flink-add", kafka_broker, topic_name, [history, mirror]
    )
    result = cdcflow(flink_venv, "run", str(second), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    # The mirror had no positions: both partitions were read from the start ...
    assert _summary(result.stdout, "records read") == 121
    assert mirror_state(pg_database) == expected_state(changes)
    # ... and the history skipped what it had: 120 rows, each position once.
    rows = query(pg_database, "SELECT _cdc_partition, _cdc_offset FROM orders_history")
    assert len(rows) == 120
    assert len(set(rows)) == 120
    assert _summary(result.stdout, "events written to history") == 40
    assert _summary(result.stdout, "events written to mirror") == 120
    # The undecodable record was read again and went to the dead letters again.
    assert _summary(result.stdout, "dead letters this run") == 1
    assert _summary(result.stdout, "dead letters") == 2


@pytest.fixture
def editable_plugin(
    flink_venv: FlinkVenv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A real plugin package (a transform upper-casing ``note``), ``pip install -e``'d."""
    root = tmp_path_factory.mktemp("plugin")
    package = root / "src" / "upper_note_test"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{PLUGIN}"
            version = "0.1.0"

            [project.entry-points."cdcflow.connectors"]
            "transform.upper_note_test" = "upper_note_test:UpperNoteConfig"

            [tool.setuptools.packages.find]
            where = ["src"]
            """
        )
    )
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            import importlib
            from typing import Any, Literal

            import msgspec

            from cdcflow.core.components import BuildContext, ComponentConfig
            from cdcflow.core.step import Step, StepResult


            class UpperNote(Step):
                name = "upper_note"

                def __init__(self, needs: str) -> None:
                    self.needs = needs

                def setup(self) -> None:
                    if self.needs:  # a dependency the step loads on the worker only
                        importlib.import_module(self.needs)

                def process(self, batch: Any) -> StepResult:
                    events = []
                    for event in batch.events:
                        after = event.after
                        if after and isinstance(after.get("note"), str):
                            after = {**after, "note": after["note"].upper()}
                            event = msgspec.structs.replace(event, after=after)
                        events.append(event)
                    batch = msgspec.structs.replace(batch, events=events)
                    return StepResult(batch=batch, dead_letters=[])


            class UpperNoteConfig(ComponentConfig):
                type: Literal["upper_note_test"]
                needs: str = ""

                def build(self, context: BuildContext) -> UpperNote:
                    return UpperNote(self.needs)
            """
        )
    )
    pip = [str(flink_venv.python), "-m", "pip"]
    install = subprocess.run(
        [*pip, "install", "-q", "-e", str(root)], capture_output=True, text=True, check=False
    )
    assert install.returncode == 0, install.stderr[-3000:]
    try:
        yield package
    finally:
        subprocess.run([*pip, "uninstall", "-q", "-y", PLUGIN], capture_output=True, check=False)


def test_an_editable_plugin_transform_runs_on_flink_and_a_broken_one_fails_fast(
    flink_venv: FlinkVenv,
    kafka_broker: str,
    pg_database: str,
    topic_name: str,
    tmp_path: Path,
    editable_plugin: Path,
) -> None:
    create_topic(kafka_broker, topic_name, partitions=1)
    changes = change_stream(30, keys=10)
    produce_changes(kafka_broker, topic_name, changes)
    mirror = {"name": "mirror", "type": "postgres", "dsn": pg_database}
    pipeline = _pipeline(
        tmp_path / "plugin.yaml", "flink-plugin", kafka_broker, topic_name, [mirror],
        transforms=[{"type": "upper_note_test"}],
    )
    result = cdcflow(flink_venv, "run", str(pipeline), "--engine", "flink", "--until-caught-up")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {k: (qty, note.upper()) for k, (qty, note) in expected_state(changes).items()}
    assert mirror_state(pg_database) == expected

    # The same step needing a module that is missing on the worker: it fails in the Python
    # operator's open. The run must stop at the first failure (not after every restart) and
    # say what Python said, without a traceback.
    broken = _pipeline(
        tmp_path / "broken.yaml", "flink-plugin-broken", kafka_broker, topic_name,
        [{**mirror, "name": "mirror2", "table_map": {"shop.public.orders": "orders2"}}],
        transforms=[{"type": "upper_note_test", "needs": "upper_note_missing_dependency"}],
        flink={"restart_attempts": 1000, "restart_delay_ms": 1000},
    )
    result = cdcflow(
        flink_venv, "run", str(broken), "--engine", "flink", "--until-caught-up", timeout=120
    )
    assert result.returncode != 0
    assert "No module named 'upper_note_missing_dependency'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "MiniCluster" not in result.stderr
