"""Property tests over ``cdcflow validate`` (issue 9, "Deliver").

Valid pipeline files are generated from the built-in components that need no server (``file``
source, ``redact`` transform, ``sqlite`` and ``null`` sinks, ``file`` dead letters), then
mutated: wrong types, unknown keys, truncation, byte flips, deep nesting, huge values and
planted ``${...}`` secrets. Whatever the mutation, ``validate``:

* never lets an exception or traceback out;
* exits 0 (still valid) or 2 (invalid): never 1, since no server check can fail here;
* names ``FILE:LINE`` in its error for an invalid file;
* never prints a planted secret.

Components with servers (postgres, clickhouse, kafka) are covered for secrets by
``test_secrets_in_output.py``; their checks would make exit code 1 legitimate here.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdcflow.cli.app import main

SECRET_VAR = "CDCFLOW_HYPOTHESIS_SECRET"

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
table_patterns = st.sampled_from(["*", "shop.public.*", "shop.public.order[s_]*", "a.b.c"])


@st.composite
def sinks(draw: st.DrawFn) -> list[dict[str, Any]]:
    chosen = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    out: list[dict[str, Any]] = []
    for index, name in enumerate(chosen):
        if draw(st.booleans()):
            out.append({"name": name, "type": "null"})
            continue
        sink: dict[str, Any] = {"name": name, "type": "sqlite", "path": f"out/db{index}.sqlite"}
        if draw(st.booleans()):
            sink["tables"] = draw(st.one_of(table_patterns, st.lists(table_patterns, min_size=1)))
        if draw(st.booleans()):
            sink["naming"] = draw(st.sampled_from(["table", "qualified"]))
        if draw(st.booleans()):
            sink["truncate"] = draw(st.sampled_from(["apply", "ignore"]))
        if draw(st.booleans()):
            sink["table_map"] = {"shop.public.orders": draw(names)}
        out.append(sink)
    return out


@st.composite
def pipelines(draw: st.DrawFn) -> dict[str, Any]:
    source: dict[str, Any] = {"type": "file", "path": "in.jsonl"}
    if draw(st.booleans()):
        source["batch_size"] = draw(st.integers(1, 1_000_000))
    if draw(st.booleans()):
        source["key_separator"] = "\t"
    if draw(st.booleans()):
        source["key_columns"] = {"shop.public.*": ["id"]}
    pipeline: dict[str, Any] = {"pipeline": draw(names), "source": source, "sinks": draw(sinks())}
    if draw(st.booleans()):
        strategy = draw(st.sampled_from(["null", "redact", "drop", "mask", "hmac-sha256"]))
        pipeline["transforms"] = [
            {
                "type": "redact",
                "key": "a-test-key-of-enough-length",
                "rules": [{"strategy": strategy, "columns": ["email"]}],
            }
        ]
    if draw(st.booleans()):
        pipeline["dead_letter"] = {"type": "file", "path": "out/dead.jsonl"}
    return pipeline


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in ``value`` (mappings and lists), the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    _get(value, path[:-1])[path[-1]] = new


MUTATIONS = ["none", "type", "unknown", "truncate", "flip", "nest", "huge", "secret"]


def _mutate(data: st.DataObject, pipeline: dict[str, Any], secret: str) -> bytes:
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    leaves = [p for p in _paths(pipeline) if p and not isinstance(_get(pipeline, p), dict | list)]
    mappings = [p for p in _paths(pipeline) if isinstance(_get(pipeline, p), dict)]
    if kind == "type":
        path = data.draw(st.sampled_from(leaves), label="leaf")
        _set(pipeline, path, data.draw(st.sampled_from([[1, 2], {"a": 1}, 7, 2.5, True, None])))
    elif kind == "unknown":
        path = data.draw(st.sampled_from(mappings), label="mapping")
        _get(pipeline, path)[data.draw(st.sampled_from(["tabels", "pth", "x", "nmae"]))] = 1
    elif kind == "nest":
        path = data.draw(st.sampled_from(leaves), label="leaf")
        depth = data.draw(st.integers(2, 3000), label="depth")
        nested: Any = "x"
        for _ in range(min(depth, 200)):
            nested = [nested]
        _set(pipeline, path, nested)
        if depth > 200:
            text = yaml.safe_dump(pipeline).encode()
            return text + b"deep: " + b"[" * depth + b"]" * depth + b"\n"
    elif kind == "huge":
        # Not file paths: a name longer than the file system allows is found by the checks
        # (exit 1, test_dead_letter_path_too_long_is_a_check_problem), not by validation.
        targets = [p for p in leaves if p[-1] != "path"]
        path = data.draw(st.sampled_from(targets), label="leaf")
        digits = data.draw(st.integers(20, 4000), label="digits")
        _set(pipeline, path, data.draw(st.sampled_from([10**digits, "y" * 5_000])))
    elif kind == "secret":
        strings = [p for p in leaves if isinstance(_get(pipeline, p), str)]
        path = data.draw(st.sampled_from(strings), label="string leaf")
        _set(pipeline, path, "${" + SECRET_VAR + "}")
    text = yaml.safe_dump(pipeline, width=200).encode()
    if kind == "truncate":
        return text[: data.draw(st.integers(0, len(text)), label="cut")]
    if kind == "flip":
        raw = bytearray(text)
        for _ in range(data.draw(st.integers(1, 3), label="flips")):
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        return bytes(raw)
    return text


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pipeline=pipelines(), data=st.data())
def test_validate_never_crashes_and_locates_every_problem(
    pipeline: dict[str, Any], data: st.DataObject
) -> None:
    secret = f"Hy{secrets.token_hex(8)}Sx"
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "in.jsonl").write_text('{"op":"c","after":{"id":1}}\n')
        path = root / "pipeline.yaml"
        path.write_bytes(_mutate(data, pipeline, secret))
        os.environ[SECRET_VAR] = secret
        try:
            result = CliRunner().invoke(main, ["validate", str(path)])
        finally:
            del os.environ[SECRET_VAR]
    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    assert result.exit_code in (0, 2), output
    assert secret not in output
    if result.exit_code == 0:
        assert "is valid" in result.stdout
    else:
        assert result.stderr.startswith("error: ")
        assert re.search(re.escape(str(path.resolve())) + r":\d+: ", result.stderr), output


@given(pipeline=pipelines())
@settings(max_examples=50, deadline=None)
def test_generated_pipelines_are_valid(pipeline: dict[str, Any]) -> None:
    """The generator's output is valid as it stands (so the mutations are what fail)."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "in.jsonl").write_text('{"op":"c","after":{"id":1}}\n')
        path = root / "pipeline.yaml"
        path.write_text(yaml.safe_dump(pipeline))
        result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.stderr
