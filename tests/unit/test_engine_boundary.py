"""The Flink engine's boundary: it reads Kafka sources only, and says so before anything runs.

``cdcflow validate --engine flink``, ``cdcflow run --engine flink`` and ``cdcflow submit`` refuse
any other source with a located configuration error (exit code 2) naming the boundary and the
engine that runs the source; plain ``validate`` warns when a pipeline sets ``engine.flink`` for a
source only Beam runs (docs/flink.md, "Which engine runs which source").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main
from cdcflow.cli.exit_codes import EXIT_OK, EXIT_USAGE
from cdcflow.errors import ConfigError
from cdcflow.flink.plan import (
    FLINK_SOURCE_TYPES,
    check_flink_sources,
    flink_source_problem,
    prepare_job,
)
from cdcflow.pipelines.config import parse_pipeline

FILE_SOURCE = "source: {type: file, path: changes.jsonl}\n"
SINKS = "sinks: [{name: mirror, type: sqlite, path: out/mirror.sqlite}]\n"
ENGINE = "engine: {flink: {parallelism: 2}}\n"


def _pipeline(tmp_path: Path, source: str = FILE_SOURCE, extra: str = "") -> Path:
    (tmp_path / "changes.jsonl").write_text("")
    path = tmp_path / "pipeline.yaml"
    path.write_text("pipeline: shop\n" + source + SINKS + extra)
    return path


def test_validate_for_flink_refuses_a_file_source_as_a_configuration_error(
    tmp_path: Path,
) -> None:
    path = _pipeline(tmp_path)
    result = CliRunner().invoke(main, ["validate", "--engine", "flink", str(path)])
    assert result.exit_code == EXIT_USAGE, result.output
    message = result.stderr
    assert f"{path}:2: source.type" in message
    assert "the Flink engine reads Kafka sources only" in message
    assert "'file'" in message and "Beam engine" in message
    assert "is valid" not in result.stdout


def test_validate_for_beam_accepts_it_and_warns_only_when_engine_flink_is_set(
    tmp_path: Path,
) -> None:
    plain = CliRunner().invoke(main, ["validate", str(_pipeline(tmp_path))])
    assert plain.exit_code == EXIT_OK, plain.output
    assert "warning" not in plain.stderr
    path = _pipeline(tmp_path, extra=ENGINE)
    warned = CliRunner().invoke(main, ["validate", str(path)])
    assert warned.exit_code == EXIT_OK, warned.output
    assert "is valid" in warned.stdout
    assert "warning:" in warned.stderr and "reads Kafka sources only" in warned.stderr
    assert "engine.flink" in warned.stderr


def test_run_on_flink_refuses_a_file_source_before_starting_anything(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, extra=ENGINE)
    result = CliRunner().invoke(main, ["run", str(path), "--engine", "flink"])
    assert result.exit_code == EXIT_USAGE
    assert "source.type" in result.stderr and "reads Kafka sources only" in result.stderr
    assert not (tmp_path / "out").exists()  # no sink was opened


def test_the_boundary_is_checked_on_the_configuration_alone(tmp_path: Path) -> None:
    # The file does not exist: building the source would fail; the boundary is found first.
    text = "pipeline: shop\nsources:\n  - {type: file, path: missing.jsonl}\n" + SINKS
    config = parse_pipeline(text, tmp_path / "p.yaml", env={})
    problem = flink_source_problem(config)
    assert problem is not None and "sources[0].type" in problem
    with pytest.raises(ConfigError, match="reads Kafka sources only"):
        check_flink_sources(config)
    with pytest.raises(ConfigError, match=r"sources\[0\]\.type"):
        prepare_job(config, connect=False)


def test_kafka_sources_are_inside_the_boundary(tmp_path: Path) -> None:
    source = "source: {type: kafka, bootstrap_servers: '127.0.0.1:9', topics: [t]}\n"
    config = parse_pipeline("pipeline: shop\n" + source + SINKS, tmp_path / "p.yaml", env={})
    assert flink_source_problem(config) is None
    check_flink_sources(config)
    assert FLINK_SOURCE_TYPES == frozenset({"kafka"})


def test_several_kafka_sources_are_outside_the_boundary(tmp_path: Path) -> None:
    sources = (
        "sources:\n"
        "  - {name: a, type: kafka, bootstrap_servers: '127.0.0.1:9', topics: [t]}\n"
        "  - {name: b, type: kafka, bootstrap_servers: '127.0.0.1:9', topics: [u]}\n"
    )
    config = parse_pipeline("pipeline: shop\n" + sources + SINKS, tmp_path / "p.yaml", env={})
    problem = flink_source_problem(config)
    assert problem is not None and "reads one source per pipeline (got 2)" in problem
    with pytest.raises(ConfigError, match="several sources run on the Beam engine"):
        check_flink_sources(config)


def test_flink_docs_state_which_engine_runs_which_source() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "flink.md").read_text()
    assert "## Which engine runs which source" in docs
    section = docs.split("## Which engine runs which source", 1)[1].split("\n## ", 1)[0]
    for name in ("kafka", "file", "kinesis", "dynamodb", "validate --engine flink"):
        assert name in section
