"""Pipeline YAML: typed models, ``${ENV}`` interpolation and ``cdcflow validate``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdcflow.cli.app import main
from cdcflow.errors import ConfigError
from cdcflow.io.files import DeadLetterFileConfig, FileSource, FileSourceConfig
from cdcflow.io.null import NullSinkConfig
from cdcflow.io.sqlite import SqliteSinkConfig
from cdcflow.pipelines.config import PipelineConfig, load_pipeline, parse_pipeline

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
# a comment
pipeline: shop-cdc
source:
  type: file
  path: data/*.jsonl
  key_separator: "\\t"
  batch_size: 250
sinks:
  - name: mirror
    type: sqlite
    path: out/shop.sqlite
    tables: ["shop.public.*", "shop.audit.log"]
    naming: qualified
    table_map: {"shop.public.orders": purchase_orders}
    truncate: ignore
  - name: devnull
    type: "null"
dead_letter:
  type: file
  path: out/dlq.jsonl
"""


def _project(tmp_path: Path, text: str = GOOD) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "orders.jsonl").write_text("")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def _parse(text: str, env: dict[str, str] | None = None) -> PipelineConfig:
    return parse_pipeline(text, Path("/pipelines/p.yaml"), env={} if env is None else env)


def _source_path(text_value: str, env: dict[str, str]) -> str:
    config = _parse(
        f"pipeline: p\nsource:\n  type: file\n  path: {text_value}\n"
        "sinks:\n  - {name: n, type: 'null'}\n",
        env,
    )
    assert isinstance(config.source, FileSourceConfig)
    return config.source.path


# -- typed models --------------------------------------------------------------------------


def test_good_file_gives_typed_models(tmp_path: Path) -> None:
    config = load_pipeline(_project(tmp_path))
    assert config.pipeline == "shop-cdc"
    assert config.path == tmp_path / "pipeline.yaml"
    source = config.source
    assert isinstance(source, FileSourceConfig)
    assert (source.path, source.key_separator, source.batch_size) == ("data/*.jsonl", "\t", 250)
    assert (source.format, source.tombstones, source.key_columns) == (
        "debezium-json",
        "marker",
        {},
    )
    mirror, devnull = config.sinks
    assert isinstance(mirror, SqliteSinkConfig)
    assert mirror.tables == ["shop.public.*", "shop.audit.log"]
    assert (mirror.naming, mirror.truncate) == ("qualified", "ignore")
    assert mirror.table_map == {"shop.public.orders": "purchase_orders"}
    assert isinstance(devnull, NullSinkConfig)
    assert devnull.name == "devnull"
    assert isinstance(config.dead_letter, DeadLetterFileConfig)
    assert config.transforms == []
    assert config.all_sources == [source]


def test_defaults(tmp_path: Path) -> None:
    config = _parse(
        "pipeline: p\nsource: {type: file, path: x.jsonl}\n"
        "sinks: [{name: m, type: sqlite, path: m.sqlite}]\n"
    )
    assert isinstance(config.source, FileSourceConfig)
    assert config.source.batch_size == 1000
    assert config.source.key_separator is None
    sink = config.sinks[0]
    assert isinstance(sink, SqliteSinkConfig)
    assert (sink.tables, sink.naming, sink.truncate, sink.table_map) == ("*", "table", "apply", {})
    assert config.dead_letter is None


def test_models_are_frozen() -> None:
    config = _parse("pipeline: p\nsource: {type: file, path: x}\nsinks: [{name: n, type: 'null'}]")
    with pytest.raises(Exception, match="frozen"):
        config.pipeline = "other"  # type: ignore[misc]


def test_sources_list_is_accepted() -> None:
    config = _parse(
        "pipeline: p\nsources:\n  - {type: file, path: a.jsonl}\n  - {type: file, path: b.jsonl}\n"
        "sinks: [{name: n, type: 'null'}]\n"
    )
    assert config.source is None
    assert [s.path for s in config.all_sources] == ["a.jsonl", "b.jsonl"]  # type: ignore[attr-defined]


def test_context_resolves_paths_against_the_pipeline_file(tmp_path: Path) -> None:
    config = load_pipeline(_project(tmp_path))
    context = config.context
    assert context.pipeline == "shop-cdc"
    assert context.base_dir == tmp_path
    assert context.resolve("out/x.sqlite") == tmp_path / "out" / "x.sqlite"
    assert context.resolve("/abs/x.sqlite") == Path("/abs/x.sqlite")


def test_relative_pipeline_path_is_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = load_pipeline("pipeline.yaml")
    assert config.path == tmp_path / "pipeline.yaml"
    assert config.path.is_absolute()


def test_locate_names_file_line_and_key(tmp_path: Path) -> None:
    path = _project(tmp_path)
    config = load_pipeline(path)
    assert config.locate(("sinks", 0, "path")) == f"{path}:11: sinks[0].path"
    assert config.locate(("source",)) == f"{path}:3: source"
    assert config.locate(("dead_letter", "path")) == f"{path}:20: dead_letter.path"


def test_interpolated_numbers_are_coerced() -> None:
    config = _parse(
        "pipeline: p\nsource: {type: file, path: x, batch_size: '${SIZE}'}\n"
        "sinks: [{name: n, type: 'null'}]\n",
        {"SIZE": "42"},
    )
    assert config.source.batch_size == 42  # type: ignore[union-attr]


# -- interpolation -------------------------------------------------------------------------


def test_env_reference_is_replaced() -> None:
    assert _source_path("${DATA_DIR}/orders.jsonl", {"DATA_DIR": "/srv/cdc"}) == (
        "/srv/cdc/orders.jsonl"
    )


def test_several_references_in_one_value() -> None:
    env = {"A": "one", "B": "two"}
    assert _source_path("${A}-${B}-${A}.jsonl", env) == "one-two-one.jsonl"


def test_default_used_when_unset() -> None:
    assert _source_path("${DATA_DIR:-/var/lib/cdc}/x.jsonl", {}) == "/var/lib/cdc/x.jsonl"


def test_env_wins_over_default() -> None:
    assert _source_path("${DATA_DIR:-/var/lib/cdc}", {"DATA_DIR": "/data"}) == "/data"


def test_empty_default_and_empty_value() -> None:
    assert _source_path("x${SUFFIX:-}.jsonl", {}) == "x.jsonl"
    assert _source_path("x${SUFFIX:-zzz}.jsonl", {"SUFFIX": ""}) == "x.jsonl"


def test_default_may_contain_colons_and_slashes() -> None:
    assert _source_path("'${URL:-http://h:9/p}'", {}) == "http://h:9/p"


def test_double_dollar_escapes_a_reference() -> None:
    assert _source_path("'$${NOT_A_VAR}/x'", {}) == "${NOT_A_VAR}/x"
    assert _source_path("'$${A}-${A}'", {"A": "v"}) == "${A}-v"


def test_lone_dollar_is_kept() -> None:
    assert _source_path("'cost$5.jsonl'", {}) == "cost$5.jsonl"


def test_interpolation_reaches_lists_and_maps() -> None:
    config = _parse(
        "pipeline: p\nsource: {type: file, path: x}\n"
        "sinks:\n  - name: m\n    type: sqlite\n    path: ${DB}\n"
        "    tables: ['${DB_SCHEMA}.*', other]\n    table_map: {a.b: '${TARGET}'}\n",
        {"DB": "m.sqlite", "DB_SCHEMA": "shop.public", "TARGET": "t1"},
    )
    sink = config.sinks[0]
    assert isinstance(sink, SqliteSinkConfig)
    assert sink.path == "m.sqlite"
    assert sink.tables == ["shop.public.*", "other"]
    assert sink.table_map == {"a.b": "t1"}


def test_reference_in_a_key_is_not_interpolated() -> None:
    config = _parse(
        "pipeline: p\nsource: {type: file, path: x}\n"
        "sinks: [{name: m, type: sqlite, path: m.sqlite, table_map: {'${K}': v}}]\n",
        {"K": "replaced"},
    )
    assert config.sinks[0].table_map == {"${K}": "v"}  # type: ignore[attr-defined]


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDCFLOW_TEST_PATH", "from-env.jsonl")
    config = parse_pipeline(
        "pipeline: p\nsource: {type: file, path: '${CDCFLOW_TEST_PATH}'}\n"
        "sinks: [{name: n, type: 'null'}]\n",
        Path("/p.yaml"),
    )
    assert config.source.path == "from-env.jsonl"  # type: ignore[union-attr]


def test_missing_env_var_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDCFLOW_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError) as info:
        parse_pipeline(
            "pipeline: p\nsource:\n  type: file\n  path: ${CDCFLOW_TEST_MISSING}\n"
            "sinks: [{name: n, type: 'null'}]\n",
            Path("/pipelines/p.yaml"),
        )
    assert str(info.value) == (
        "1 problem in /pipelines/p.yaml:\n  /pipelines/p.yaml:4: source.path: environment "
        "variable CDCFLOW_TEST_MISSING is not set (referenced as ${CDCFLOW_TEST_MISSING}; set it "
        "or write ${CDCFLOW_TEST_MISSING:-default})"
    )


def test_secret_values_do_not_appear_in_errors() -> None:
    """An error about a value that came from the environment shows the key, not the secret."""
    with pytest.raises(ConfigError) as info:
        _parse(
            "pipeline: p\nsource: {type: file, path: x}\n"
            "sinks: [{name: n, type: 'null', password: '${PW}'}]\n",
            {"PW": "s3cr3t-value"},
        )
    assert "sinks[0].password" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


# -- cdcflow validate ----------------------------------------------------------------------


def test_validate_good_file(tmp_path: Path) -> None:
    path = _project(tmp_path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"{path}: pipeline 'shop-cdc' is valid (2 sinks, 0 transforms)"
    )
    assert not (tmp_path / "out").exists(), "validate must not create the sink's files"


def test_validate_bad_config_exits_2(tmp_path: Path) -> None:
    path = _project(tmp_path, GOOD.replace("naming: qualified", "naming: fancy"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: 1 problem in {path}:")
    assert f"{path}:13: sinks[0].naming: Input should be 'table' or 'qualified'" in result.stderr


def test_validate_missing_input_files_exits_2(tmp_path: Path) -> None:
    path = _project(tmp_path, GOOD.replace("data/*.jsonl", "nothing/*.jsonl"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5: source.path: no file matches" in result.stderr


def test_validate_missing_pipeline_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: no such pipeline file" in result.stderr


def test_validate_failed_check_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Config is fine but a component's check fails (unreadable file, unreachable server)."""
    monkeypatch.setattr(FileSource, "check", lambda self: ["cannot read /x/orders.jsonl"])
    result = CliRunner().invoke(main, ["validate", str(_project(tmp_path))])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot read /x/orders.jsonl"


def test_validate_usage_error_exits_2() -> None:
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 2
    assert "Missing argument 'PIPELINE_FILE'" in result.output


def test_validate_help() -> None:
    result = CliRunner().invoke(main, ["validate", "--help"])
    assert result.exit_code == 0
    assert "without moving data" in result.stdout


def test_validate_subprocess(tmp_path: Path) -> None:
    """The installed console script, as a user runs it."""
    cdcflow = Path(sys.executable).parent / "cdcflow"
    if not cdcflow.exists():
        cdcflow = REPO / ".venv" / "bin" / "cdcflow"
    good = _project(tmp_path)
    ok = subprocess.run([str(cdcflow), "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "pipeline 'shop-cdc' is valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("pipeline: shop-cdc", "pipeline: shop-cdc\nsorce: {}"))
    failed = subprocess.run([str(cdcflow), "validate", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert f"{bad}:3: sorce: is not a known key here; did you mean 'source'?" in failed.stderr
    assert failed.stdout == ""


# -- cdcflow run exit codes ------------------------------------------------------------------


def test_run_bad_config_exits_2(tmp_path: Path) -> None:
    path = _project(tmp_path, GOOD.replace("pipeline: shop-cdc", "pipeline: shop cdc"))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2: pipeline: must be 1-100 characters" in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_runtime_failure_exits_1(tmp_path: Path) -> None:
    """The sink's database path is a directory: the run fails and says why."""
    path = _project(tmp_path)
    (tmp_path / "data" / "orders.jsonl").write_text(
        '{"op":"c","after":{"id":1},"source":{"db":"shop","schema":"public","table":"orders"}}\n'
    )
    (tmp_path / "out" / "shop.sqlite").mkdir(parents=True)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert "sink 'mirror': cannot open SQLite database" in result.stderr
