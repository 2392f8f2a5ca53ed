"""``cdcflow produce`` against the real (Tansu) broker: bytes, keys, tombstones, exit codes.

Run as a user runs it: the console script of ``.venv`` in a subprocess.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.console import cdcflow_script
from tests.servers.tansu import consume_all, create_topic, unique_topic

pytestmark = pytest.mark.integration

LINES = (
    b'{"id":1}\t{"op":"c","after":{"id":1}}\n'
    b"\n"  # blank: skipped
    b'{"status":"BEGIN","id":"tx-1"}\n'  # no tab: a value without a key
    b'{"id":1}\tnull\n'  # a tombstone
    b'{"id":2}\t\n'  # an empty value: a tombstone too
    b'{"id":3}\t{"text":"a\\tb","n":3}\r\n'  # CRLF line end; an escaped tab inside the JSON
)


def produce_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(cdcflow_script()), "produce", *args],
        input=stdin, capture_output=True, timeout=120, check=False,
    )


def _messages(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes | None, ...]]:
    found = consume_all(bootstrap, topic, expected=expected)
    return [(m.key(), m.value()) for m in sorted(found, key=lambda m: m.offset())]


def test_produce_sends_each_line_with_its_key(kafka_broker: str, tmp_path: Path) -> None:
    topic = unique_topic("produce")
    source = tmp_path / "lines.txt"
    source.write_bytes(LINES)
    result = produce_cli("--bootstrap-servers", kafka_broker, "--topic", topic,
                         "--create-partitions", "1", str(source))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"produced 5 messages to {topic} (2 tombstones)"
    assert _messages(kafka_broker, topic, 5) == [
        (b'{"id":1}', b'{"op":"c","after":{"id":1}}'),
        (None, b'{"status":"BEGIN","id":"tx-1"}'),
        (b'{"id":1}', None),
        (b'{"id":2}', None),
        (b'{"id":3}', b'{"text":"a\\tb","n":3}'),
    ]


def test_produce_from_stdin_without_keys_and_null_as_text(kafka_broker: str) -> None:
    topic = unique_topic("produce")
    create_topic(kafka_broker, topic, partitions=2)
    result = produce_cli("-b", kafka_broker, "-t", topic, "--no-keys", "--null-as-text",
                         "--partition", "1", stdin=b"a\tb\nnull\n")
    assert result.returncode == 0, result.stderr
    assert b"(0 tombstones)" in result.stdout
    found = consume_all(kafka_broker, topic, expected=2)
    assert sorted((m.partition(), m.key(), m.value()) for m in found) == [
        (1, None, b"a\tb"), (1, None, b"null")
    ]


def test_produce_help_and_usage_errors(kafka_broker: str, tmp_path: Path) -> None:
    help_run = produce_cli("--help")
    assert help_run.returncode == 0 and b"KEY<TAB>VALUE" in help_run.stdout
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    missing_topic = unique_topic("absent")
    cases = {
        "no topic option": (["-b", kafka_broker, str(empty)], b"Missing option '--topic'"),
        "no such file": (["-b", kafka_broker, "-t", "x", str(tmp_path / "nope")],
                         b"No such file"),
        "topic missing": (["-b", kafka_broker, "-t", missing_topic, str(empty)],
                          b"--create-partitions N"),
        "bad config": (["-b", kafka_broker, "-t", "x", "--producer-config", "acks", str(empty)],
                       b"expects KEY=VALUE"),
        "managed config": (["-b", kafka_broker, "-t", "x", "--producer-config",
                            "enable.idempotence=false", str(empty)], b"managed by cdcflow"),
        "unknown setting": (["-b", kafka_broker, "-t", "x", "--producer-config", "no.such=1",
                             str(empty)], b'No such configuration property: "no.such"'),
        # librdkafka echoes the refused value; it is also the password, which must not show.
        "refused value": (["-b", kafka_broker, "-t", "x", "--producer-config",
                           "sasl.password=hunter2-secret", "--producer-config",
                           "security.protocol=hunter2-secret", str(empty)],
                          b'"security.protocol"'),
    }
    for name, (args, message) in cases.items():
        result = produce_cli(*args)
        assert result.returncode == 2, (name, result.stderr)
        assert message in result.stderr, (name, result.stderr)
        assert b"Traceback" not in result.stderr and b"hunter2" not in result.stderr
    # The missing topic was not created behind the user's back.
    again = produce_cli("-b", kafka_broker, "-t", missing_topic, str(empty))
    assert again.returncode == 2
    topic = unique_topic("produce")
    create_topic(kafka_broker, topic, partitions=1)
    out_of_range = produce_cli("-b", kafka_broker, "-t", topic, "--partition", "4", str(empty))
    assert out_of_range.returncode == 2
    assert b"has 1 partition(s)" in out_of_range.stderr


def test_produce_to_an_unreachable_broker_fails_with_exit_1(tmp_path: Path) -> None:
    source = tmp_path / "lines.txt"
    source.write_bytes(LINES)
    result = produce_cli("-b", "127.0.0.1:9", "-t", "x", "--timeout", "2", str(source))
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("error: cannot reach Kafka at 127.0.0.1:9 within 2s")
    assert b"Traceback" not in result.stderr
