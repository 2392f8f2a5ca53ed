"""One config base for the table sinks (cdcflow.io.table_sink): same keys, same checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdcflow.errors import ConfigError
from cdcflow.io.clickhouse import ClickHouseSinkConfig
from cdcflow.io.postgres import PostgresSinkConfig
from cdcflow.io.sqlite import SqliteSinkConfig
from cdcflow.io.table_sink import ServerTableSinkConfig, TableSinkConfig
from cdcflow.pipelines.config import load_pipeline

#: Each table sink's required keys besides name and type.
REQUIRED = {
    "sqlite": "path: out.sqlite",
    "postgres": "dsn: postgresql://u:secret@127.0.0.1:5432/db",
    "clickhouse": "dsn: clickhouse://u:secret@127.0.0.1:9000/db",
}


def _pipeline(tmp_path: Path, sink_type: str, extra: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "pipeline: p\n"
        "source: {type: file, path: data.jsonl}\n"
        "sinks:\n"
        f"  - name: mirror\n    type: {sink_type}\n    {REQUIRED[sink_type]}\n{extra}"
    )
    return path


@pytest.mark.parametrize("sink_type", sorted(REQUIRED))
@pytest.mark.parametrize(
    ("tables", "reason"),
    [
        ("'shop.['", "table pattern 'shop.[' has an unclosed '['; expected a glob"),
        ("['shop.public.*', '']", "a table pattern must not be empty"),
    ],
)
def test_every_table_sink_refuses_a_bad_tables_pattern_the_same_way(
    tmp_path: Path, sink_type: str, tables: str, reason: str
) -> None:
    path = _pipeline(tmp_path, sink_type, f"    tables: {tables}\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    message = str(caught.value)
    assert f"{path}:7: sinks[0].tables" in message
    assert reason in message
    assert "secret" not in message


@pytest.mark.parametrize("sink_type", sorted(REQUIRED))
def test_the_shared_keys_keep_their_defaults(tmp_path: Path, sink_type: str) -> None:
    config = load_pipeline(_pipeline(tmp_path, sink_type, "")).sinks[0]
    assert isinstance(config, TableSinkConfig)
    assert (config.name, config.tables, config.table_map, config.truncate) == (
        "mirror", "*", {}, "apply"
    )
    if sink_type != "sqlite":
        assert isinstance(config, ServerTableSinkConfig)
        assert config.connect_timeout_s == 10
        assert config.retry.max_attempts > 1


def test_the_three_configs_derive_from_the_base() -> None:
    assert issubclass(SqliteSinkConfig, TableSinkConfig)
    assert not issubclass(SqliteSinkConfig, ServerTableSinkConfig)
    assert issubclass(PostgresSinkConfig, ServerTableSinkConfig)
    assert issubclass(ClickHouseSinkConfig, ServerTableSinkConfig)
