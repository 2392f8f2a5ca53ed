"""Command-level error handling: no tracebacks, dead_letter checks, hostile YAML, log format.

Issue 9 items 12-14 and issue 10 item 9. CLI behaviour is checked with the installed console
script, as a user runs it; a connector plugin that fails on purpose is installed for the
subprocess through a ``*.dist-info`` entry point on ``PYTHONPATH`` (the real plugin mechanism).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from cdcflow.errors import ConfigError
from cdcflow.pipelines.config import load_pipeline, parse_pipeline
from cdcflow.pipelines.yaml_limits import MAX_ALIASES, MAX_DEPTH
from tests.console import REPO, cdcflow_script

CHANGE = (
    '{"op":"c","after":{"id":1},"source":{"db":"shop","schema":"public","table":"orders"}}\n'
)

PLUGIN = '''
from typing import Literal

from cdcflow.core.writer import Capabilities, Writer
from cdcflow.core.components import ComponentConfig


class BoomWriter(Writer):
    capabilities = Capabilities(idempotent=True)  # no positions: the plan requires this

    def __init__(self, name, where):
        self.name = name
        self.where = where

    def check(self):
        if self.where == "check":
            raise RuntimeError("boom in check")
        return []

    def write(self, batch, reject=None):
        raise RuntimeError("boom in write")


class BoomConfig(ComponentConfig):
    type: Literal["boom"]
    name: str
    where: str = "write"

    def build(self, context):
        return BoomWriter(self.name, self.where)
'''


def _cli(directory: Path, *args: str, plugin: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if plugin:
        plugins = directory / "plugins"
        plugins.mkdir(exist_ok=True)
        (plugins / "boom_plugin.py").write_text(PLUGIN)
        info = plugins / "boom_plugin-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[cdcflow.connectors]\nsink.boom = boom_plugin:BoomConfig\n"
        )
        env["PYTHONPATH"] = str(plugins)
    return subprocess.run(
        [str(cdcflow_script()), *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _project(directory: Path, tail: str) -> Path:
    (directory / "in.jsonl").write_text(CHANGE)
    path = directory / "pipeline.yaml"
    path.write_text("pipeline: p\nsource: {type: file, path: in.jsonl}\n" + tail)
    return path


# -- no traceback, one error line naming the component (issue 9 item 14) -----------------------


def test_unexpected_error_in_a_check_is_one_line_naming_the_sink(tmp_path: Path) -> None:
    _project(tmp_path, "sinks: [{name: loud, type: boom, where: check}]\n")
    result = _cli(tmp_path, "validate", "pipeline.yaml", plugin=True)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: sink 'loud': unexpected error: RuntimeError: boom in check "
        "(traceback with --log-level debug)"
    ]


def test_unexpected_error_in_a_run_is_one_line_and_traceback_only_at_debug(
    tmp_path: Path,
) -> None:
    _project(tmp_path, "sinks: [{name: loud, type: boom}]\n")
    result = _cli(tmp_path, "run", "pipeline.yaml", plugin=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: sink 'loud': unexpected error: RuntimeError: boom in write "
        "(traceback with --log-level debug)"
    ]
    debug = _cli(tmp_path, "--log-level", "debug", "run", "pipeline.yaml", plugin=True)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("error: sink 'loud': unexpected error:")


def test_json_log_format_makes_every_stderr_line_json(tmp_path: Path) -> None:
    _project(tmp_path, "sinks: [{name: loud, type: boom}]\n")
    result = _cli(tmp_path, "--log-format", "json", "run", "pipeline.yaml", plugin=True)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[-1]["level"] == "error"
    assert records[-1]["message"].startswith("sink 'loud': unexpected error: RuntimeError")


def test_json_log_format_for_a_configuration_error(tmp_path: Path) -> None:
    path = _project(tmp_path, "sinks: [{name: m, type: sqlite, path: m.db, naming: fancy}]\n")
    result = _cli(tmp_path, "--log-format", "json", "validate", "pipeline.yaml")
    assert result.returncode == 2
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["level"] == "error"
    assert record["message"].startswith(f"1 problem in {path}:")
    assert f"{path}:3: sinks[0].naming" in record["message"]


def test_json_log_format_for_a_usage_error(tmp_path: Path) -> None:
    result = _cli(tmp_path, "--log-format", "json", "run", "pipeline.yaml", "--runner")
    assert result.returncode == 2
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["level"] == "error"
    assert record["message"] == "Option '--runner' requires an argument."


def test_beam_info_logs_are_quiet_unless_debug(tmp_path: Path) -> None:
    _project(tmp_path, "sinks: [{name: m, type: sqlite, path: out/m.sqlite}]\n")
    info = _cli(tmp_path, "--log-format", "json", "--log-level", "info", "run", "pipeline.yaml")
    assert info.returncode == 0, info.stderr
    records = [json.loads(line) for line in info.stderr.splitlines()]
    beam = [r for r in records if r["logger"].startswith("apache_beam")]
    assert [r for r in beam if r["level"] in ("debug", "info")] == []
    debug = _cli(tmp_path, "--log-format", "json", "--log-level", "debug", "run", "pipeline.yaml")
    assert debug.returncode == 0, debug.stderr
    records = [json.loads(line) for line in debug.stderr.splitlines()]
    assert any(r["logger"].startswith("apache_beam") for r in records)


def test_validate_help_states_the_exit_codes() -> None:
    result = subprocess.run(
        [str(cdcflow_script()), "validate", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "(every problem listed as FILE:LINE: KEY: ...; exit code 2)" in text
    assert "one error line per problem, exit code 1" in text
    assert "Exit code 0 when the pipeline is valid" in text


# -- dead_letter checked like a sink (issue 9 item 12) -----------------------------------------


def test_validate_checks_the_dead_letter_directory(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a directory")
    _project(
        tmp_path,
        "sinks: [{name: m, type: sqlite, path: out/m.sqlite}]\n"
        "dead_letter: {type: file, path: blocker/dl/dead.jsonl}\n",
    )
    result = _cli(tmp_path, "validate", "pipeline.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: dead_letter: cannot create the directory {tmp_path}/blocker/dl for the "
        f"dead-letter file: {tmp_path}/blocker is not a directory"
    ]
    assert not (tmp_path / "out").exists()


def test_validate_refuses_a_dead_letter_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dl").mkdir()
    _project(
        tmp_path,
        "sinks: [{name: m, type: sqlite, path: out/m.sqlite}]\n"
        "dead_letter: {type: file, path: dl}\n",
    )
    result = _cli(tmp_path, "validate", "pipeline.yaml")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: dead_letter: {tmp_path}/dl is a directory; expected a file path"
    )


def test_dead_letter_path_too_long_is_a_check_problem(tmp_path: Path) -> None:
    from cdcflow.io.files import DeadLetterFileWriter

    problems = DeadLetterFileWriter(tmp_path / ("y" * 5000) / "dead.jsonl").check()
    assert len(problems) == 1
    assert problems[0].startswith(f"dead_letter: cannot use {tmp_path}/yyy")
    assert problems[0].endswith("File name too long")


def test_run_error_from_the_dead_letter_sink_names_dead_letter(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file")
    _project(
        tmp_path,
        "sinks: [{name: mirror, type: sqlite, path: out/m.sqlite}]\n"
        "dead_letter: {type: file, path: blocker/dl/dead.jsonl}\n",
    )
    result = _cli(tmp_path, "run", "pipeline.yaml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: dead_letter: cannot create the directory ")
    assert "mirror" not in line and "sink" not in line


# -- hostile YAML (issue 9 item 13) ------------------------------------------------------------


def _located(result: subprocess.CompletedProcess[str], path: Path, line: int, what: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (message,) = result.stderr.splitlines()
    assert re.match(rf"error: {re.escape(str(path))}:{line}: column \d+: invalid YAML: ", message)
    assert what in message


def test_five_thousand_levels_of_flow_nesting(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("pipeline: p\nsource: " + "[" * 5000 + "]" * 5000 + "\n")
    _located(_cli(tmp_path, "validate", "pipeline.yaml"), path, 2, f"deeper than {MAX_DEPTH}")


def test_deep_block_nesting(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "pipeline: p\nsource:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(1500))
    )
    result = _cli(tmp_path, "run", "pipeline.yaml")
    _located(result, path, MAX_DEPTH + 1, f"deeper than {MAX_DEPTH}")


def _bomb(levels: int) -> str:
    lines = ["pipeline: p", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append(f"sinks: [*a{levels - 1}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_with_a_location(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(_bomb(10))
    # a4 is the first level whose expansion passes 100,000 values (10 + 10 * ... per level).
    _located(_cli(tmp_path, "validate", "pipeline.yaml"), path, 6, "alias bomb")


def test_alias_bomb_parsing_uses_bounded_memory() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="alias bomb"):
            parse_pipeline(_bomb(30), Path("/p.yaml"), {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_too_many_alias_uses(tmp_path: Path) -> None:
    text = "pipeline: p\nx: &x 1\nl: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(ConfigError, match=rf"/p.yaml:3: column \d+: .*more than {MAX_ALIASES}"):
        parse_pipeline(text, Path("/p.yaml"), {})


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"/p.yaml:2: column 8: .*recursive structure"):
        parse_pipeline("pipeline: p\nsinks: &s [*s]\n", Path("/p.yaml"), {})


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    config = parse_pipeline(
        textwrap.dedent(
            """\
            pipeline: p
            source: {type: file, path: x}
            sinks:
              - &base {name: a, type: sqlite, path: a.db, naming: qualified}
              - <<: *base
                name: b
            """
        ),
        Path("/p.yaml"),
        {},
    )
    assert [(s.name, s.naming) for s in config.sinks] == [  # type: ignore[attr-defined]
        ("a", "qualified"),
        ("b", "qualified"),
    ]


@pytest.mark.parametrize(
    ("value", "what"),
    [("9" * 5000, "Exceeds the limit"), ("2024-13-45", "month must be in 1..12")],
)
def test_values_python_refuses_are_located(value: str, what: str) -> None:
    text = f"pipeline: p\nsource: {{type: file, path: x, batch_size: {value}}}\n"
    with pytest.raises(ConfigError, match=rf"/p.yaml:2: column \d+: invalid YAML: .*{what}"):
        parse_pipeline(text, Path("/p.yaml"), {})


def test_non_utf8_and_control_characters_are_located(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"pipeline: p\nsource: {type: file, path: \xff}\n")
    with pytest.raises(ConfigError, match=r"binary.yaml:2: column 28: not UTF-8 text \(byte 0xff"):
        load_pipeline(binary)
    bell = tmp_path / "bell.yaml"
    bell.write_bytes(b"pipeline: p\nsource: {type: file, path: a\x07}\n")
    with pytest.raises(ConfigError, match=r"bell.yaml:2: invalid YAML: character U\+0007"):
        load_pipeline(bell)


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("pipeline: p\n# " + "x" * (5 * 1024 * 1024) + "\n")
    result = _cli(tmp_path, "validate", "pipeline.yaml")
    assert result.returncode == 2
    assert "is larger than 4 MiB" in result.stderr


# -- unset variables reported once (issue 10 item 9) -------------------------------------------


def test_unset_variable_used_twice_is_reported_once() -> None:
    text = (REPO / "examples" / "warehouse" / "pipeline.yaml").read_text()
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, Path("/w/pipeline.yaml"), {})
    lines = str(info.value).splitlines()
    assert lines[0] == "2 problems in /w/pipeline.yaml:"
    assert [line for line in lines if "WAREHOUSE_DSN" in line] == [
        "  /w/pipeline.yaml:16: sinks[0].dsn: environment variable WAREHOUSE_DSN is not set "
        "(referenced as ${WAREHOUSE_DSN}; set it or write ${WAREHOUSE_DSN:-default}); also "
        "referenced at sinks[1].dsn (line 21)"
    ]
    # The clickhouse model's own check of the empty replacement is not a second report.
    assert "CLICKHOUSE_DSN is not set" in lines[2]
    assert not any("dsn must be" in line for line in lines)


def test_value_from_the_environment_is_not_shown_in_a_validation_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(
            "pipeline: p\nsource: {type: file, path: x, batch_size: '${SIZE}'}\n"
            "sinks: [{name: n, type: 'null'}]\n",
            Path("/p.yaml"),
            {"SIZE": "hunter2"},
        )
    assert "hunter2" not in str(info.value)
    assert "source.batch_size: Input should be a valid integer" in str(info.value)
    assert "(got the value of ${SIZE}, not shown)" in str(info.value)


# -- naming the component of an unexpected error --------------------------------------------


@pytest.mark.parametrize(
    ("label", "component"),
    [
        ("Write:mirror/ParDo(_WriteFn)", "sink 'mirror'"),
        ("StoreDeadLetters/ParDo(_StoreDeadLettersFn)", "dead_letter"),
        ("Transform0:redact/ParDo(_StepFn)", "transforms[0] (redact)"),
        ("Decode/ParDo(_AheadStepFn)", "decode"),
        ("Read/ParDo(_ReadFn)", "source"),
        ("Something/Else", "pipeline 'p'"),
    ],
)
def test_beam_step_labels_name_the_component(label: str, component: str) -> None:
    from cdcflow.cli.failures import describe_unexpected

    error = ValueError(f"bad col [while running '{label}']")
    assert describe_unexpected(error, "pipeline 'p'") == (
        f"{component}: unexpected error: ValueError: bad col (traceback with --log-level debug)"
    )


def test_the_raising_method_names_the_component_outside_beam() -> None:
    from cdcflow.cli.failures import describe_unexpected
    from cdcflow.core.writer import Writer

    class Broken(Writer):
        name = "warehouse"

        def open(self) -> None:
            raise OSError("disk on fire\nsecond line")

    try:
        Broken().open()
    except OSError as exc:
        wrapped = RuntimeError("outer")
        wrapped.__cause__ = exc
        text = describe_unexpected(wrapped, "cdcflow run")
    assert text == (
        "sink 'warehouse': unexpected error: OSError: disk on fire "
        "(traceback with --log-level debug)"
    )
