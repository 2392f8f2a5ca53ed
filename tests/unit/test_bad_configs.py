"""Bad pipeline files (issue 2, ARCHITECTURE §6).

Every error names the file, the line and the key, and says what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cdcflow.errors import ConfigError
from cdcflow.pipelines.config import load_pipeline
from cdcflow.pipelines.plan import plan_pipeline

SOURCE = """\
source:
  type: file
  path: data.jsonl
"""
SINKS = """\
sinks:
  - name: mirror
    type: sqlite
    path: out.sqlite
"""


@dataclass(frozen=True)
class Bad:
    """One bad pipeline file and what its error message must say."""

    id: str
    text: str
    line: int
    key: str
    expected: tuple[str, ...]


CASES = [
    Bad(
        "unknown-top-level-key",
        "pipeline: p\nsorce:\n  type: file\n" + SOURCE + SINKS,
        2,
        "sorce",
        ("is not a known key", "did you mean 'source'", "expected one of: pipeline, source"),
    ),
    Bad(
        "unknown-source-type",
        "pipeline: p\nsource:\n  type: kafak\n  path: x\n" + SINKS,
        3,
        "source.type",
        ("unknown source type 'kafak'", "expected one of:", "file"),
    ),
    Bad(
        "missing-required-field",
        "pipeline: p\nsource:\n  type: file\n" + SINKS,
        2,
        "source.path",
        ("is required but missing", "expected a string"),
    ),
    Bad(
        "wrong-value-type",
        "pipeline: p\n" + SOURCE + "  batch_size: lots\n" + SINKS,
        5,
        "source.batch_size",
        ("valid integer", "got 'lots'"),
    ),
    Bad(
        "value-out-of-range",
        "pipeline: p\n" + SOURCE + "  batch_size: 0\n" + SINKS,
        5,
        "source.batch_size",
        ("greater than or equal to 1", "got 0"),
    ),
    Bad(
        "undefined-env-var",
        "pipeline: p\nsource:\n  type: file\n  path: ${CDCFLOW_TEST_UNSET}\n" + SINKS,
        4,
        "source.path",
        (
            "environment variable CDCFLOW_TEST_UNSET is not set",
            "${CDCFLOW_TEST_UNSET:-default}",
        ),
    ),
    Bad(
        "bad-env-reference",
        "pipeline: p\nsource:\n  type: file\n  path: ${1BAD}\n" + SINKS,
        4,
        "source.path",
        ("bad reference ${1BAD}", "expected ${NAME} or ${NAME:-default}"),
    ),
    Bad(
        "duplicate-sink-names",
        "pipeline: p\n" + SOURCE + SINKS + "  - name: mirror\n    type: null\n",
        9,
        "sinks[1].name",
        ("'mirror' is already used by sinks[0]", "expected a unique name"),
    ),
    Bad(
        "unknown-transform-type",
        "pipeline: p\n" + SOURCE + "transforms:\n  - type: redcat\n" + SINKS,
        6,
        "transforms[0].type",
        ("unknown transform type 'redcat'", "expected one of:"),
    ),
    Bad(
        "bad-table-glob",
        "pipeline: p\n" + SOURCE + SINKS + "    tables: 'shop.[public.*'\n",
        9,
        "sinks[0].tables",
        ("unclosed '['", "expected a glob"),
    ),
    Bad(
        "empty-sinks-list",
        "pipeline: p\n" + SOURCE + "sinks: []\n",
        5,
        "sinks",
        ("needs at least one sink",),
    ),
    Bad(
        "sinks-not-a-list",
        "pipeline: p\n" + SOURCE + "sinks: mirror\n",
        5,
        "sinks",
        ("valid list", "got 'mirror'"),
    ),
    Bad(
        "vault-reference-without-vault",
        "pipeline: p\n" + SOURCE + SINKS.replace("out.sqlite", "${vault:secret/cdc#db}"),
        8,
        "sinks[0].path",
        ("${vault:secret/cdc#db}", "environment variable"),
    ),
    Bad(
        "duplicate-yaml-key",
        "pipeline: p\npipeline: q\n" + SOURCE + SINKS,
        2,
        "pipeline",
        ("appears twice", "lines 1 and 2", "expected each key once"),
    ),
    Bad(
        "bad-enum-value",
        "pipeline: p\n" + SOURCE + SINKS + "    truncate: maybe\n",
        9,
        "sinks[0].truncate",
        ("'apply' or 'ignore'", "got 'maybe'"),
    ),
    Bad(
        "misspelt-component-key",
        "pipeline: p\n" + SOURCE + SINKS + "    tabels: 'shop.*'\n",
        9,
        "sinks[0].tabels",
        ("did you mean 'tables'", "expected one of: name, tables, table_map, truncate, path"),
    ),
    Bad(
        "bad-pipeline-name",
        "pipeline: 'shop cdc!'\n" + SOURCE + SINKS,
        1,
        "pipeline",
        ("letters, digits", "got 'shop cdc!'"),
    ),
    Bad(
        "sink-without-type",
        "pipeline: p\n" + SOURCE + "sinks:\n  - name: mirror\n    path: x.sqlite\n",
        6,
        "sinks[0].type",
        ("is required", "which kind of component"),
    ),
    Bad(
        "source-and-sources",
        "pipeline: p\n" + SOURCE + "sources:\n  - type: file\n    path: data.jsonl\n" + SINKS,
        5,
        "sources",
        ("either 'source' or 'sources', not both",),
    ),
    Bad(
        "unknown-dead-letter-type",
        "pipeline: p\n" + SOURCE + SINKS + "dead_letter:\n  type: s3\n",
        10,
        "dead_letter.type",
        ("unknown dead letter type 's3'", "expected one of:", "file"),
    ),
    Bad(
        "file-tombstones-as-deletes",
        "pipeline: p\n" + SOURCE + "  tombstones: delete\n" + SINKS,
        5,
        "source.tombstones",
        ("needs the table name from a Kafka topic", "expected 'marker'"),
    ),
    Bad(
        "component-not-a-mapping",
        "pipeline: p\nsource:\n  - file\n" + SINKS,
        2,
        "source",
        ("expected a mapping of keys to values, got list",),
    ),
]


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data.jsonl").write_text("")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_is_located_and_explained(
    case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDCFLOW_TEST_UNSET", raising=False)
    path = _write(tmp_path, case.text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert f"{path}:{case.line}: {case.key}: " in message, message
    for phrase in case.expected:
        assert phrase in message, f"{phrase!r} not in {message!r}"


def test_at_least_ten_distinct_cases() -> None:
    assert len({c.id for c in CASES}) >= 10
    assert len({c.key for c in CASES}) >= 10


def test_one_problem_per_mistake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unresolved reference is reported once, not again as an empty value."""
    monkeypatch.delenv("CDCFLOW_TEST_UNSET", raising=False)
    text = "pipeline: p\nsource:\n  type: file\n  path: ${CDCFLOW_TEST_UNSET}\n" + SINKS
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert message.startswith(f"1 problem in {path}:")
    assert message.count("\n") == 1


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        "pipeline: p\n"
        "source:\n  type: file\n  path: data.jsonl\n  batch_size: -1\n"
        "sinks:\n  - name: a\n    type: sqlite\n    path: a.sqlite\n    naming: fancy\n"
        "  - name: b\n    type: nul\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"3 problems in {path}:"
    assert any(f"{path}:5: source.batch_size:" in line for line in lines)
    assert any(f"{path}:10: sinks[0].naming:" in line for line in lines)
    assert any(f"{path}:12: sinks[1].type: unknown sink type 'nul'" in line for line in lines)


def test_problems_are_listed_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDCFLOW_TEST_UNSET", raising=False)
    text = (
        "pipeline: p\n"
        "source:\n  type: file\n  path: ${CDCFLOW_TEST_UNSET}\n"
        "sinks:\n  - name: m\n    type: sqlite\n    path: a.sqlite\n"
        "    tabels: x\n    truncate: maybe\n"
        "  - name: m\n    type: 'null'\n"
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    keys = [line.split(": ")[1] for line in str(info.value).splitlines()[1:]]
    assert keys == ["source.path", "sinks[0].tabels", "sinks[0].truncate", "sinks[1].name"]


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "pipeline: p\nsource:\n  type: file\n   path: x\n" + SINKS)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: column 8: invalid YAML: ")
    assert "check the indentation" in message


def test_unclosed_quote_is_a_yaml_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "pipeline: 'p\nsource: {}\n")
    with pytest.raises(ConfigError, match=r"invalid YAML"):
        load_pipeline(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_file_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert str(path) in message
    assert "a pipeline file must be a mapping with 'pipeline', 'source' and 'sinks'" in message


def test_missing_source(tmp_path: Path) -> None:
    path = _write(tmp_path, "pipeline: p\n" + SINKS)
    with pytest.raises(ConfigError, match=r"needs a 'source' \(or a list of 'sources'\)"):
        load_pipeline(path)


def test_missing_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such pipeline file"):
        load_pipeline(tmp_path / "nope.yaml")


def test_glob_matching_nothing_is_located_at_plan_time(tmp_path: Path) -> None:
    """Problems found while building components still name the file, line and key."""
    path = _write(
        tmp_path, "pipeline: p\nsource:\n  type: file\n  path: 'missing/*.jsonl'\n" + SINKS
    )
    config = load_pipeline(path)
    with pytest.raises(ConfigError) as info:
        plan_pipeline(config)
    message = str(info.value)
    assert message.startswith(f"{path}:4: source.path: no file matches ")
    assert "expected a file or glob relative to the pipeline file" in message
