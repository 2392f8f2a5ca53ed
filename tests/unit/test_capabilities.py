"""Declared writer capabilities, and the plan refusing what a sink cannot do (issue 11, 3).

The plan (``plan_pipeline``, run by ``cdcflow validate`` and ``run``) checks each sink's
``capabilities`` against what the pipeline asks: docs/architecture.md, "Capabilities".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main
from cdcflow.cli.exit_codes import EXIT_OK, EXIT_USAGE
from cdcflow.core.writer import MIRROR, Capabilities
from cdcflow.errors import ConfigError
from cdcflow.io.clickhouse import ClickHouseWriter
from cdcflow.io.null import NullWriter
from cdcflow.io.postgres import PostgresWriter
from cdcflow.io.sink_common import APPEND
from cdcflow.io.sqlite import SqliteWriter
from cdcflow.pipelines import registry
from cdcflow.pipelines.config import load_pipeline
from cdcflow.pipelines.plan import plan_pipeline
from cdcflow.testing import FaultyWriter, MemoryWriter

DSN = "postgresql://u@127.0.0.1:1/db"


def test_every_writer_declares_what_it_can_do(tmp_path: Path) -> None:
    assert SqliteWriter("s", tmp_path / "x.sqlite", pipeline="p").capabilities == MIRROR
    assert PostgresWriter("pg", DSN, pipeline="p").capabilities == MIRROR
    for mode in ("append", "timescaledb"):
        history = PostgresWriter("pg", DSN, pipeline="p", mode=mode)  # type: ignore[arg-type]
        assert history.capabilities == APPEND
        assert not history.capabilities.upsert and not history.capabilities.idempotent
    assert ClickHouseWriter("ch", "clickhouse://127.0.0.1/db", pipeline="p").capabilities == (
        MIRROR
    )
    assert NullWriter("n").capabilities == Capabilities(idempotent=True)
    assert MemoryWriter().capabilities == MIRROR
    limited = MemoryWriter(capabilities=Capabilities(upsert=True))
    assert FaultyWriter(limited).capabilities == Capabilities(upsert=True)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_extra", {})
    registry.register("sink", "no-truncate", "tests.unit.plugins.sinks:NoTruncateSinkConfig")
    registry.register("sink", "webhook", "tests.unit.plugins.sinks:WebhookSinkConfig")


def _project(tmp_path: Path, sink: str, source: str = "{type: file, path: data.jsonl}") -> Path:
    (tmp_path / "data.jsonl").write_text("")
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"pipeline: p\nsource: {source}\nsinks:\n  - {sink}\n")
    return path


def _validate(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(path), *args])
    return result.exit_code, result.stderr


@pytest.mark.usefixtures("plugins")
def test_truncate_apply_needs_a_sink_that_can_truncate(tmp_path: Path) -> None:
    path = _project(tmp_path, "{name: mirror, type: no-truncate}")
    code, stderr = _validate(path)
    assert code == EXIT_USAGE
    assert f"{path}:4: sinks[0].truncate: the pipeline asks sink 'mirror' (no-truncate)" in stderr
    assert "truncate: apply, the default" in stderr and "cannot truncate" in stderr
    assert "set truncate: ignore" in stderr
    fixed = _project(tmp_path, "{name: mirror, type: no-truncate, truncate: ignore}")
    assert _validate(fixed) == (EXIT_OK, "")


def test_an_append_mode_records_truncates_instead(tmp_path: Path) -> None:
    # APPEND declares no truncate, but a history table is not a mirror: nothing to refuse.
    path = _project(tmp_path, f"{{name: h, type: postgres, dsn: '{DSN}', mode: append}}")
    plan = plan_pipeline(load_pipeline(path))
    assert plan.writers[0].capabilities == APPEND


@pytest.mark.usefixtures("plugins")
def test_a_positionless_sink_that_is_not_idempotent_cannot_resume_from_a_file(
    tmp_path: Path,
) -> None:
    path = _project(tmp_path, "{name: hook, type: webhook}")
    code, stderr = _validate(path)
    assert code == EXIT_USAGE
    assert f"{path}:4: sinks[0]: sink 'hook' (webhook) keeps no positions and is not " in stderr
    assert "the 'file' source does not commit offsets for it either" in stderr
    idempotent = _project(tmp_path, "{name: hook, type: webhook, idempotent: true}")
    assert _validate(idempotent)[0] == EXIT_OK
    # a file source is outside the Flink engine's boundary, whatever the sink can do
    code, stderr = _validate(idempotent, "--engine", "flink")
    assert code == EXIT_USAGE and "the Flink engine reads Kafka sources only" in stderr


KAFKA = "{{type: kafka, bootstrap_servers: '127.0.0.1:1', topics: [t], group_id: g{extra}}}"


@pytest.mark.usefixtures("plugins")
def test_with_kafka_a_positionless_sink_resumes_from_the_group_on_beam_only(
    tmp_path: Path,
) -> None:
    committing = _project(tmp_path, "{name: hook, type: webhook}", KAFKA.format(extra=""))
    plan_pipeline(load_pipeline(committing), check_tables=False)  # at least once: allowed
    with pytest.raises(ConfigError, match="on engine flink a restore from a checkpoint replays"):
        plan_pipeline(load_pipeline(committing), check_tables=False, engine="flink")
    silent = _project(
        tmp_path, "{name: hook, type: webhook}", KAFKA.format(extra=", commit_offsets: false")
    )
    with pytest.raises(ConfigError, match="'kafka' source does not commit offsets for it"):
        plan_pipeline(load_pipeline(silent), check_tables=False)
