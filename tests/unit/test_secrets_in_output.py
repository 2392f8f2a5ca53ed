"""No ``${...}`` value and no DSN password in any output (issue 9 item 11).

Secrets are planted, as environment references, in every string field of every built-in
component (found from the registry, so new components are covered), then ``validate`` and
``run`` are run with the installed console script, as a user would, on failing and succeeding
paths; stdout, stderr, log output and every file the run wrote except the input and the
mirror database are searched for each secret.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdcflow import scrub
from cdcflow.logs import JsonFormatter, TextFormatter
from tests.console import cdcflow_script
from tests.unit.planting import Planter, builtin_components, pipelines

INPUT = (
    '{"op":"c","after":{"id":1,"email":"ada@example.com"},'
    '"source":{"db":"shop","schema":"public","table":"orders"}}\n'
    "not json at all\n"
    '{"op":"c","after":{"id":2,"email":"bob@example.com"},'
    '"source":{"db":"shop","schema":"public","table":"orders"}}\n'
)


def _cli(
    directory: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cdcflow_script()), *args],
        cwd=directory,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _written_text(directory: Path) -> str:
    """Every file the command wrote, except the input and SQLite databases (row data)."""
    parts = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name not in ("in.jsonl", "pipeline.yaml"):
            data = path.read_bytes()
            if data.startswith(b"SQLite format 3") or path.name.endswith(("-wal", "-shm")):
                continue  # the mirror: rows and positions, which are data
            parts.append(path.read_text(errors="replace"))  # contents (names are the user's)
    return "\n".join(parts)


def _leaks(secrets: list[str], *texts: str) -> list[str]:
    return [s for s in secrets if any(s in text for text in texts)]


def test_every_builtin_component_gets_secrets() -> None:
    """The planter reaches every built-in component, and each has a string field planted."""
    components = builtin_components()
    assert {f"{k}.{t}" for k, t, _ in components} == {
        label for label, _, _ in pipelines(everything=False)
    }
    for kind, type_name, model in components:
        planter = Planter()
        planter.model(model, everything=False)
        assert planter.secrets, f"{kind}.{type_name} has no string field to plant"


CASES = [
    pytest.param(
        everything, label, pipeline, planter, id=f"{label}-{'all' if everything else 'strings'}"
    )
    for everything in (False, True)
    for label, pipeline, planter in pipelines(everything)
]


@pytest.mark.parametrize(("everything", "label", "pipeline", "planter"), CASES)
def test_planted_secrets_never_printed(
    tmp_path: Path, everything: bool, label: str, pipeline: dict[str, object], planter: Planter
) -> None:
    (tmp_path / "in.jsonl").write_text(INPUT)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    checked = _cli(tmp_path, planter.env, "--log-format", "json", "validate", "pipeline.yaml")
    results = [checked]
    if not everything:  # with every field planted the run stops at the same config errors
        results.append(_cli(tmp_path, planter.env, "--log-level", "info", "run", "pipeline.yaml"))
    outputs = [text for r in results for text in (r.stdout, r.stderr)]
    outputs.append(_written_text(tmp_path))
    assert _leaks(planter.secrets, *outputs) == [], "\n".join(outputs)
    for result in results:
        assert result.returncode in (0, 1, 2)
        assert "Traceback" not in result.stderr
    if checked.returncode != 0:
        assert checked.stderr.strip(), "a failure must say why"
        for line in checked.stderr.splitlines():
            json.loads(line)  # --log-format json: every stderr line is a JSON object


def test_succeeding_run_masks_every_planted_value(tmp_path: Path) -> None:
    """A valid pipeline whose names, paths and keys all come from the environment."""
    planter = Planter()
    refs = {name: planter.ref() for name in ("pipeline", "file", "sink", "db", "table", "dl")}
    refs["key"], refs["salt"] = planter.ref(), planter.ref()
    env = planter.env
    values = {name: env[ref[2:-1]] for name, ref in refs.items()}
    # The directory, not the file name: a file's name is its stream, which positions (in dead
    # letters and the sinks' offset tables) keep as the record's identifier.
    (tmp_path / values["file"]).mkdir()
    (tmp_path / values["file"] / "in.jsonl").write_text(INPUT)
    pipeline = {
        "pipeline": refs["pipeline"],
        "source": {
            "type": "file",
            "path": refs["file"] + "/in.jsonl",
            "key_columns": {"shop.public.*": ["id"]},
        },
        "transforms": [
            {
                "type": "redact",
                "key": refs["key"],
                "salt": refs["salt"],
                "rules": [{"strategy": "hmac-sha256", "columns": ["email"]}],
            }
        ],
        "sinks": [
            {
                "name": refs["sink"],
                "type": "sqlite",
                "path": "out/" + refs["db"] + ".sqlite",
                "table_map": {"shop.public.orders": refs["table"]},
            }
        ],
        "dead_letter": {"type": "file", "path": "out/" + refs["dl"] + ".jsonl"},
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    checked = _cli(tmp_path, env, "validate", "pipeline.yaml")
    assert checked.returncode == 0, checked.stderr
    ran = _cli(tmp_path, env, "--log-level", "info", "run", "pipeline.yaml")
    assert ran.returncode == 0, ran.stderr
    assert "records read: 3" in ran.stdout
    assert f"events written to {scrub.MASK}: 2" in ran.stdout
    dead = (tmp_path / "out" / f"{values['dl']}.jsonl").read_text()
    assert len(dead.splitlines()) == 1
    outputs = [checked.stdout, checked.stderr, ran.stdout, ran.stderr, dead]
    assert _leaks(planter.secrets, *outputs) == [], "\n".join(outputs)


def test_literal_dsn_password_is_scrubbed_from_connection_errors(tmp_path: Path) -> None:
    """A malformed DSN typed into the file: psycopg echoes it; the password must not print."""
    (tmp_path / "in.jsonl").write_text(INPUT)
    (tmp_path / "pipeline.yaml").write_text(
        "pipeline: p\nsource: {type: file, path: in.jsonl}\n"
        "sinks:\n  - {name: pg, type: postgres, dsn: 'postgresq://app:Sup3r-S3cret-pw@localhost/db'}\n"
    )
    checked = _cli(tmp_path, {}, "validate", "pipeline.yaml")
    ran = _cli(tmp_path, {}, "run", "pipeline.yaml")
    assert checked.returncode == 1
    assert ran.returncode == 1
    for result in (checked, ran):
        assert "Sup3r-S3cret-pw" not in result.stdout + result.stderr
        assert "sink 'pg'" in result.stderr
        assert "Traceback" not in result.stderr
    assert "postgresq://app:***@localhost/db" in checked.stderr


# -- the shared helper -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'missing "=" after "postgresq://app:Sup3r@localhost/db" in connection info string',
            'missing "=" after "postgresq://app:***@localhost/db" in connection info string',
        ),
        ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("host=db password=hunter22 port=5432", "host=db password=*** port=5432"),
        ("host=db password = 'a b\\'c' user=x", "host=db password = *** user=x"),
        ("https://h/x?user=u&password=hunter22&x=1", "https://h/x?user=u&password=***&x=1"),
        ("{'sasl.password': 'hunter22'}", "{'sasl.password': ***}"),
        ('password authentication failed for "app"', 'password authentication failed for "app"'),
        ("clickhouse://default@h:9000/db", "clickhouse://default@h:9000/db"),
    ],
)
def test_scrub_masks_connection_string_passwords(text: str, expected: str) -> None:
    assert scrub.scrub(text) == expected


def test_registered_values_are_masked_and_plain_values_are_not() -> None:
    scrub.register(["Wq7-registered-secret", "500", "true", "abc"])
    assert scrub.scrub("got 'Wq7-registered-secret' at line 500") == "got '***' at line 500"
    assert "Wq7-registered-secret" in scrub.registered()
    assert not {"500", "true", "abc"} & scrub.registered()


def test_log_formatters_scrub_messages_and_tracebacks() -> None:
    scrub.register(["Lg9-secret-in-a-log"])
    try:
        raise ValueError("bad value Lg9-secret-in-a-log in postgresql://u:pw123@h/db")
    except ValueError:
        record = logging.LogRecord(
            "cdcflow.test", logging.ERROR, __file__, 1, "saw %s", ("Lg9-secret-in-a-log",),
            sys.exc_info(),
        )
    for formatter in (TextFormatter(), JsonFormatter()):
        text = formatter.format(record)
        assert "Lg9-secret-in-a-log" not in text
        assert "pw123" not in text
        assert "saw ***" in text


def test_metric_labels_are_scrubbed() -> None:
    from cdcflow.metrics import Counters, prometheus_text

    scrub.register(["Mt3-secret-table-name"])
    counters = Counters()
    counters.inc("rows", {"table": "shop.Mt3-secret-table-name", "dsn": "pg://u:pw9@h/db"})
    text = prometheus_text(counters)
    assert "Mt3-secret-table-name" not in text and "pw9" not in text
    assert 'table="shop.***"' in text
